"""The session's story (live_runner/ops/story.py): what an operator reads in the Dagster run's logs,
told from the journal's events, dated with the session and the market time."""

import logging

from live_runner.persistence.journal import Deferred
from live_runner.ops.story import Story

DAY = "2024-11-26"
T0932 = 1732631520 * 10**9  # 2024-11-26 09:32 ET


def _told(caplog, events, session=DAY):
    story = Story(session)
    with caplog.at_level(logging.INFO, logger="live_runner.ops.story"):
        for event in events:
            story(*event)
    return [(r.session, r.getMessage()) for r in caplog.records if r.name == "live_runner.ops.story"]


def test_entries_exits_denials_and_states_are_told_with_the_session(caplog):
    fill = {"symbol": "SYM011", "side": "buy", "qty": 1021, "price": 19.57, "role": "entry",
            "strategy": "gap_and_go"}
    lines = _told(caplog, [
        (DAY, T0932, "fill", "LR-1", Deferred(lambda a, b: a, fill)),  # built only when told
        (DAY, T0932, "fill", "LR-2", {**fill, "side": "sell", "role": "stop", "price": 19.2}),
        (DAY, T0932, "trade", "SYM011", {"symbol": "SYM011", "strategy": "gap_and_go", "qty": 1021,
                                         "entry_price": 19.57, "exit_price": 19.2,
                                         "exit_reason": "stop", "pnl": "-377.7700"}),
        (DAY, T0932, "denial", "LR-3", {"side": "buy", "qty": 10, "symbol": "SYM026",
                                        "strategy": "gap_and_go", "role": "entry",
                                        "reason": "BUYING_POWER"}),
        (DAY, T0932, "trading_state", "halted", {"from": "active", "reason": "daily loss"}),
        (DAY, T0932, "equity", "", {"equity": "1"}),  # not part of the story
    ])
    assert [s for s, _ in lines] == [DAY] * 5
    text = [m for _, m in lines]
    assert text[0] == "09:32 ET ENTRY SYM011: bought 1021 @ 19.57 (gap_and_go, order LR-1)"
    assert text[1] == "09:32 ET EXIT SYM011: sell 1021 @ 19.2, reason stop hit (gap_and_go, order LR-2)"
    assert text[2].endswith("stop hit, P&L -$377.77")
    assert text[3] == "09:32 ET RISK DENIED buy 10 SYM026 (gap_and_go, entry): BUYING_POWER"
    assert text[4] == "09:32 ET TRADING STATE active -> halted: daily loss"


def test_only_the_launched_session_is_told(caplog):
    """A replay feed's seed bar opens and closes the previous session: no story."""
    start = {"equity": "100000.00", "state": "active", "early_close": True}
    lines = _told(caplog, [("2024-11-25", T0932, "session_start", "", start),
                           (DAY, T0932, "session_start", "", start)])
    assert lines == [(DAY, "09:32 ET session starts: equity $100,000.00, trading state active, "
                           "early close (13:00 ET)")]


def test_a_payload_that_cannot_be_told_never_raises(caplog):
    assert _told(caplog, [(DAY, T0932, "fill", "x", Deferred(lambda a, b: 1 / 0, None))]) == []
