"""User strategies load by import path, get their parameters, and trade through the same chain."""

import pytest

from live_runner.core.config import ConfigError, parse_config
from live_runner.strategies.engine import load_strategy_class
from tests.kit.sessions import SessionBuilder

ORB = "examples.opening_range:OpeningRangeBreakout"


def orb_session() -> SessionBuilder:
    s = SessionBuilder()
    s.flat("ORBX", "09:30", "09:30", 10.0, 5_000)
    s.bar("ORBX", "09:31", 10.0, 10.2, 9.9, 10.1, 5_000)  # range high 10.2, low 9.9
    s.flat("ORBX", "09:32", "09:44", 10.0, 5_000)
    s.bar("ORBX", "09:45", 10.1, 10.3, 10.05, 10.25, 9_000)  # close above the range: signal
    s.bar("ORBX", "09:46", 10.3, 10.4, 10.2, 10.3, 9_000)  # entry fills at 10.30
    s.flat("ORBX", "09:47", "09:50", 10.3, 5_000)
    s.bar("ORBX", "09:51", 10.3, 10.3, 9.8, 9.85, 9_000)   # stop 9.90 hit
    return s


def test_import_path_strategy_trades_with_its_params() -> None:
    s = orb_session()
    node, summary = s.run(active_strategies=[ORB], strategies={"custom": {ORB: {"minutes": 15}}})
    assert summary["signals"] == 1
    [trade] = summary["trades"]
    assert trade["strategy"] == "orb"
    assert trade["entry_price"] == 10.30 and trade["exit_price"] == 9.90
    assert trade["exit_reason"] == "stop"
    assert trade["entry_time"] == "2024-03-15T13:46:00Z"


def test_user_strategy_runs_beside_builtins() -> None:
    cfg = parse_config({"active_strategies": ["gap_and_go", ORB]})
    assert cfg.active_strategies == ["gap_and_go", ORB]


@pytest.mark.parametrize("path, needle", [
    ("examples.nope:Thing", "cannot import 'examples.nope'"),
    ("examples.opening_range:Missing", "is not a subclass"),
    ("live_runner.core.models:Bar", "is not a subclass"),
])
def test_bad_import_paths_are_named(path: str, needle: str) -> None:
    with pytest.raises(ConfigError, match="active_strategies") as err:
        load_strategy_class(path)
    assert needle in str(err.value)


def test_malformed_strategy_name_refused_by_config() -> None:
    with pytest.raises(ConfigError, match="active_strategies") as err:
        parse_config({"active_strategies": ["not a path"]})
    assert "unknown strategy 'not a path'" in str(err.value)
