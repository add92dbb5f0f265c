"""Structured logs: JSON lines or text with session, component and client order id on each line,
a per-session file rotated by size, and no logging on the hot path."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Iterator

import pytest

from live_runner.ops import logs
from live_runner.core.config import ConfigError, load_config, parse_config
from live_runner.persistence.journal import Journal
from live_runner.core.models import OrderEvent, OrderStatus
from live_runner.live.node import TradingNode, config_fingerprint
from tests.kit.sessions import SessionBuilder, gapper_breakout

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    yield buf
    logs.set_session_source(None)


def setup(buf: io.StringIO, fmt: str = "json", **kw: object) -> logs.LogSetup:
    return logs.setup_logging("DEBUG", fmt, stream=buf, run_id="run-1",
                              now=datetime(2024, 3, 15, 9, 0, tzinfo=logs.NY), **kw)  # type: ignore[arg-type]


def lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_json_lines_carry_the_context_fields(stream: io.StringIO) -> None:
    s = setup(stream)
    try:
        logging.getLogger("live_runner.orders").warning("fill for unknown order %s", "LR-1",
                                                        extra={"client_order_id": "LR-1"})
        logging.getLogger("live_runner.data").info("plain", extra={"symbol": "AAPL"})
        logs.set_session_source(lambda: "2024-03-15")
        logging.getLogger("live_runner.ops").error("boom")
    finally:
        s.close()
    a, b, c = lines(stream)
    assert a["level"] == "WARNING" and a["logger"] == "live_runner.orders"
    assert (a["component"], a["client_order_id"], a["run"]) == ("order_manager", "LR-1", "run-1")
    assert a["session"] == "2024-03-15"  # before any trading session: the run's New York date
    assert a["msg"] == "fill for unknown order LR-1" and a["ts"].endswith("+00:00")
    assert b["component"] == "data_manager" and b["client_order_id"] is None and b["symbol"] == "AAPL"
    assert c["component"] == "ops_server" and c["session"] == "2024-03-15"


def test_context_blocks_extra_and_exceptions(stream: io.StringIO) -> None:
    s = setup(stream)
    log = logging.getLogger("live_runner.live.node")
    try:
        logs.set_session_source(lambda: "2024-03-14")
        with logs.log_context(session="2024-03-15", component="risk_manager"):
            with logs.order_context("LR-20240315-GG-AAA-1"):
                log.info("inside")
            log.info("order context gone", extra={"component": "override"})
        log.info("outside")
        logs.set_session_source(lambda: 1 / 0)  # type: ignore[arg-type,return-value]
        try:
            raise ValueError("bad")
        except ValueError:
            log.exception("with traceback")
    finally:
        s.close()
    inside, gone, outside, exc = lines(stream)
    assert (inside["session"], inside["component"], inside["client_order_id"]) == (
        "2024-03-15", "risk_manager", "LR-20240315-GG-AAA-1")
    assert gone["client_order_id"] is None and gone["component"] == "override"
    assert (outside["session"], outside["component"]) == ("2024-03-14", "node")
    assert exc["session"] == "2024-03-15"  # a failing source never breaks a log line
    assert "ValueError: bad" in exc["exc"]


def test_context_is_per_task(stream: io.StringIO) -> None:
    s = setup(stream)
    log = logging.getLogger("live_runner.live.service")

    async def task(cid: str) -> None:
        with logs.order_context(cid):
            await asyncio.sleep(0.01)
            log.info("after await")

    async def both() -> None:
        await asyncio.gather(task("A-1"), task("B-2"))
    try:
        asyncio.run(both())
    finally:
        s.close()
    assert sorted(x["client_order_id"] for x in lines(stream) if x["logger"] == "live_runner.live.service") == [
        "A-1", "B-2"]


def test_text_format(stream: io.StringIO) -> None:
    s = setup(stream, "text")
    try:
        logging.getLogger("live_runner.orders").warning("x %s", 1, extra={"client_order_id": "LR-9"})
        logging.getLogger("something.else").info("y")
    finally:
        s.close()
    first, second = stream.getvalue().splitlines()
    assert first.endswith(" WARNING order_manager [2024-03-15] x 1 cid=LR-9")
    assert second.endswith(" INFO else [2024-03-15] y")


def test_component_names() -> None:
    assert logs.component_for("live_runner.ops.alerts") == "alert_system"
    assert logs.component_for("live_runner.execution.whatever") == "execution_engine"
    assert logs.component_for("live_runner.newthing") == "newthing"
    assert logs.component_for("") == "root"


def test_session_file_is_rotated(tmp_path: Path, stream: io.StringIO) -> None:
    s = setup(stream, log_dir=tmp_path / "logs", max_bytes=2000, backups=2)
    try:
        assert s.file == tmp_path / "logs" / "trading_system_20240315.log"
        log = logging.getLogger("live_runner.live.service")
        for i in range(200):
            log.info("line %03d %s", i, "x" * 40)
    finally:
        s.close()
    files = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert files == ["trading_system_20240315.log", "trading_system_20240315.log.1",
                     "trading_system_20240315.log.2"]
    for name in files:
        text = (tmp_path / "logs" / name).read_text()
        assert len(text) <= 2000 and all(json.loads(x)["run"] == "run-1" for x in text.splitlines())
    assert json.loads((tmp_path / "logs" / files[0]).read_text().splitlines()[-1])["msg"].startswith("line 199")


def test_setup_again_replaces_its_handlers(stream: io.StringIO) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    setup(stream)
    s = setup(stream)
    try:
        assert len(root.handlers) == len(before) + 1
        logging.getLogger("live_runner").info("once")
    finally:
        s.close()
    assert len(lines(stream)) == 1 and root.handlers == before


def test_config_keys_and_fingerprint() -> None:
    cfg = parse_config({})
    assert (cfg.log_format, cfg.log_dir) == ("text", "var/logs")
    with pytest.raises(ConfigError, match="log_format"):
        parse_config({"log_format": "xml"})
    example = load_config(ROOT / "config" / "example.yaml")
    assert example.log_format == "text" and example.log_dir == "var/logs"
    other = parse_config({"log_format": "json", "log_dir": None, "log_file_backups": 1})
    assert config_fingerprint(other) == config_fingerprint(cfg)  # where logs go never blocks a resume
    cfg_from = logs.setup_from_config  # the CLI's entry point exists and takes a SystemConfig
    assert callable(cfg_from)


def test_order_manager_lines_name_the_order(stream: io.StringIO) -> None:
    s = setup(stream)
    try:
        node = TradingNode(parse_config({}), Journal("sqlite://"))
        node.orders.on_order_event(OrderEvent("LR-20240315-GG-ZZZ-7", OrderStatus.ACCEPTED, 0))
    finally:
        s.close()
    [line] = [x for x in lines(stream) if x["logger"] == "live_runner.orders"]
    assert line["client_order_id"] == "LR-20240315-GG-ZZZ-7" and line["component"] == "order_manager"


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_hot_path_makes_no_logging_calls() -> None:
    """A whole session (entries, exits, OCO, EOD) emits no record, even at DEBUG."""
    s = gapper_breakout()
    s.flat("GAPR", "09:32", "15:59", 11.3, 40_000)
    handler = _Count()
    pkg = logging.getLogger("live_runner")
    old = pkg.level
    pkg.addHandler(handler)
    pkg.setLevel(logging.DEBUG)
    try:
        node, summary = s.run(active_strategies=["gap_and_go"])
    finally:
        pkg.removeHandler(handler)
        pkg.setLevel(old)
    assert summary["orders_submitted"] >= 3 and len(summary["trades"]) == 1
    # Only alerts (delivered off the hot path, by the alert worker) may log.
    assert [r.name for r in handler.records if r.name != "live_runner.ops.alerts"] == []
