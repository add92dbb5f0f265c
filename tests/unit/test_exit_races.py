"""The randomized race suite of issue 11, in process: seeded sessions of the real runner (a
TradingNode) against simulated brokers with Alpaca's and IB's real order semantics on one SimClock
(tests/kit/broker_sim), with DESIGN.md's invariants checked after every event (tests/kit/race).

`TRADING_RACE_SESSIONS=20000` runs more sessions per broker (default 1000); `RACE_SEED=<n>`
(with `RACE_BROKER=alpaca|ibkr`) replays one session, whose failure prints its trace;
`RACE_SEED_OFFSET` explores other seeds. Run with `-s` to see the counts printed.
Below the generated sessions: the exact scenarios issue 11 lists (item 3), then the bugs the suite
found in the new exits code (each a scripted session, or a pinned seed, that failed before its fix).
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest

from tests.kit.broker_sim import SimParams
from tests.kit.race import RaceViolation, Session, play
from tests.kit.race.driver import quiet_logs
from tests.kit.race.plan import SETTLE_MINUTES, TICKS_PER_MINUTE, Action, SessionPlan
from tests.kit.sessions import et_ns

SESSIONS = int(os.environ.get("TRADING_RACE_SESSIONS", "1000"))
OFFSET = int(os.environ.get("RACE_SEED_OFFSET", "0"))
ONE_SEED = os.environ.get("RACE_SEED")
# events: every one is followed by the checker; invariant_checks: the full evaluations among them
# (an event that changed nothing at the broker, in the journal or in the alerts, with no grace
# period running, is not evaluated again).
COUNTS = ("sessions", "events", "invariant_checks", "fills", "partial_fills", "fills_during_cancel",
          "cancel_requests", "cancels", "oco_submits", "replace_requests", "replaces", "replace_refused", "rejects",
          "duplicate_reports", "late_acks", "disconnects", "lost_in_disconnect")


@pytest.mark.parametrize("broker", ["alpaca", "ibkr"])
def test_generated_sessions_keep_every_invariant(broker: str, record_property: Any) -> None:
    if ONE_SEED is not None and os.environ.get("RACE_BROKER", broker) != broker:
        pytest.skip(f"RACE_SEED replays one {os.environ['RACE_BROKER']} session")
    seeds = [int(ONE_SEED)] if ONE_SEED is not None else range(OFFSET, OFFSET + SESSIONS)
    total: Counter[str] = Counter()
    broken: list[RaceViolation] = []
    with quiet_logs():
        for seed in seeds:
            stats, violation = play(seed, broker)
            total += stats
            if violation is not None:
                broken.append(violation)
    total["sessions_broken"] = len(broken)
    summary = ", ".join(f"{k}={total[k]}" for k in (*COUNTS, "sessions_broken"))
    print(f"\nrace suite [{broker}]: {summary}")
    for key in (*COUNTS, "sessions_broken"):
        record_property(f"race_{broker}_{key}", total[key])
    if broken:
        by_invariant = Counter(v.invariant for v in broken)
        seeds_of = {inv: [v.seed for v in broken if v.invariant == inv][:10] for inv in by_invariant}
        pytest.fail(f"{len(broken)} of {len(seeds)} {broker} sessions broke an invariant: "
                    f"{dict(by_invariant)}; seeds {seeds_of}\nthe first:\n{broken[0]}", pytrace=False)
    # The races the suite exists for were really run, not only generated.
    if ONE_SEED is None and SESSIONS >= 200:
        for key in ("fills_during_cancel", "partial_fills", "duplicate_reports", "late_acks",
                    "lost_in_disconnect", "cancels", "replace_requests" if broker == "alpaca" else "oco_submits"):
            assert total[key] > 0, f"no {key} in {SESSIONS} {broker} sessions: the generator lost its teeth"
        if broker == "ibkr":  # a pair never grows at IB: partial entry fills get pairs of their own
            assert total["replace_requests"] == 0 and total["oco_submits"] > total["sessions"]


# --- issue 11, item 3: the exact scenarios --------------------------------------------------

SYM = "GAPX"
# At 13.00 with a 2% stop (12.74) the runner buys min(1000 / 0.26, 20000 / 13) = 1538 shares;
# target_r 1: the target is 13.26.
ENTRY = Action(1, "entry", SYM, 0.02, 1.0)
CALM = SimParams(ack_ms=(5, 5), cancel_ms=(15_000, 15_000), replace_ms=(500, 500), market_fill_ms=(1, 1),
                 p_partial=0.0, p_duplicate=0.0, p_late_ack=0.0, p_disconnect=0.0, oca_type=1)


def scripted(broker: str, path: dict[int, float], minutes: int, start: str = "10:00",
             to_close: bool = False, params: SimParams = CALM, actions: tuple[Action, ...] = ()) -> Session:
    """One symbol at 13.00 except the ticks in `path` (tick index -> price, held until the next)."""
    prices, price = [], 13.00
    for i in range((minutes + SETTLE_MINUTES) * TICKS_PER_MINUTE):
        price = path.get(i, price)
        prices.append(price)
    plan = SessionPlan(-1, broker, "2024-03-15", [SYM], et_ns("2024-03-15", start), minutes, to_close,
                       "data_end", params, {SYM: prices},
                       sorted((ENTRY, *actions, *(() if to_close else (Action(minutes * TICKS_PER_MINUTE, "shutdown"),))),
                              key=lambda a: a.tick))
    return Session(plan)


def sells(session: Session) -> list[tuple[str, int, float]]:
    return [(session.node.orders.orders[f.client_order_id].request.role.value, f.qty, f.price)
            for f in session.sim.fills if f.side.value == "sell"]


@pytest.mark.parametrize("broker", ["alpaca", "ibkr"])
def test_target_fill_then_stop_touched_during_the_cancel_sells_once(broker: str) -> None:
    """The target fills at 13.30; 10 s later the price is through the stop while the runner's
    cancel of it would still be pending (15 s): the broker-native pair sold the shares once."""
    session = scripted(broker, {7: 13.30, 8: 12.50}, minutes=4)
    with quiet_logs():
        session.run()
    assert sells(session) == [("target", 1538, 13.26)]
    assert session.sim.positions() == {} and session.node.portfolio.positions == {}


@pytest.mark.parametrize("broker", ["alpaca", "ibkr"])
def test_eod_flatten_waits_for_the_cancels_and_a_stop_filling_meanwhile_shrinks_it(broker: str) -> None:
    """15:55: the runner cancels the pair (confirmed 15 s later); at 15:56:10 the stop fills the
    whole position inside that wait. The flatten then has nothing left to sell: never short."""
    session = scripted(broker, {37: 12.60}, minutes=10, start="15:50", to_close=True)
    with quiet_logs():
        session.run()
    assert session.sim.stats["fills_during_cancel"] == 1
    assert sells(session) == [("stop", 1538, 12.6)]
    assert session.sim.positions() == {} and session.node.portfolio.positions == {}


@pytest.mark.parametrize("broker", ["alpaca", "ibkr"])
def test_partial_entry_fill_grows_the_exits_without_cancel_then_new(broker: str) -> None:
    """The entry fills 1,000 then 538 a second later. At Alpaca the OCO is resized to 1,538 in place
    (no refused order); at IB the first OCA group keeps its 1,000 and the 538 get a group of their
    own (a modify could race a fill of the other leg). Either way the stops sell exactly what is held."""
    params = SimParams(**{**CALM.__dict__, "market_fill_ms": (1000, 1000)})
    session = scripted(broker, {14: 12.70}, minutes=4, params=params)
    session.sim.chunks = [1000, 538]
    with quiet_logs():
        session.run()
    assert session.sim.stats["rejects"] == 0
    if broker == "alpaca":
        assert (session.sim.stats["replaces"], session.sim.stats["oco_submits"]) == (1, 1)
        assert sells(session) == [("stop", 1538, 12.7)]
    else:
        assert (session.sim.stats["replace_requests"], session.sim.stats["oco_submits"]) == (0, 2)
        assert sells(session) == [("stop", 1000, 12.7), ("stop", 538, 12.7)]
    assert session.sim.positions() == {} and session.node.portfolio.positions == {}


@pytest.mark.parametrize("broker", ["alpaca", "ibkr"])
@pytest.mark.parametrize("lost", ["stop", "eod"])
def test_an_order_lost_in_a_disconnect_is_refused_and_the_position_is_not_left_bare(broker: str, lost: str) -> None:
    """The connection drops as the exit pair (or the EOD flatten) is sent and the broker never
    got it: at the reconnect the lookup says so, the runner treats it as refused (it is provably
    not at the broker) and the position ends flat, never without a stop for long."""
    session = scripted(broker, {}, minutes=10, start="15:50", to_close=True)
    session.sim.lose_roles = {lost}
    with quiet_logs():
        session.run()
    assert session.sim.stats["lost_in_disconnect"] >= 1
    assert session.sim.positions() == {} and session.node.portfolio.positions == {}
    assert [qty for _, qty, _ in sells(session)] == [1538]


@pytest.mark.parametrize("broker", ["alpaca", "ibkr"])
def test_a_flatten_during_a_trims_wait_still_sells_everything(broker: str) -> None:
    """A trim starts (the pair's cancel takes 15 s) and a flatten comes in the same moment: the
    flatten waits for the same cancels and then sells the whole position (it used to stop
    waiting, sell nothing and leave the shares with no stop)."""
    session = scripted(broker, {}, minutes=4, actions=(Action(10, "trim", SYM, 0.5), Action(10, "flatten", SYM)))
    with quiet_logs():
        session.run()
    assert sells(session) == [("manual", 1538, 13.0)]
    assert session.sim.positions() == {} and session.node.portfolio.positions == {}


@pytest.mark.parametrize("broker", ["alpaca", "ibkr"])
def test_fills_during_a_resize_are_covered_once_it_is_confirmed(broker: str) -> None:
    """Entry fills 1,000, 300 and 238 a second apart while each resize takes 1.5 s: the fill that
    lands during a resize is covered by another resize once the broker confirms the first (it was
    refused as an oversell and the pair stayed at 1,300 of 1,538). At IB each fill gets a pair of
    its own, at once."""
    params = SimParams(**{**CALM.__dict__, "market_fill_ms": (1000, 1000), "replace_ms": (1500, 1500)})
    session = scripted(broker, {14: 12.70}, minutes=4, params=params)
    session.sim.chunks = [1000, 300, 238]
    with quiet_logs():
        session.run()
    if broker == "alpaca":
        assert session.sim.stats["replaces"] == 2
        assert sells(session) == [("stop", 1538, 12.7)]
    else:
        assert (session.sim.stats["replace_requests"], session.sim.stats["oco_submits"]) == (0, 3)
        assert sells(session) == [("stop", 1000, 12.7), ("stop", 300, 12.7), ("stop", 238, 12.7)]
    assert session.sim.positions() == {} and session.node.portfolio.positions == {}


@pytest.mark.parametrize("broker", ["alpaca", "ibkr"])
def test_a_pair_shared_by_its_legs_is_done_when_its_shares_are(broker: str) -> None:
    """The target sells 1,000 of 1,538, then the stop the other 538: the stop leg is done though
    its own fills are 538 of 1,538 (the legs share the shares). The next trade in the symbol gets
    exits for all its shares (they were sized 1,000 short, as if the old leg still held them)."""
    params = SimParams(**{**CALM.__dict__, "oca_type": 2})
    session = scripted(broker, {7: 13.30, 8: 12.60}, minutes=6, params=params,
                       actions=(Action(16, "entry", SYM, 0.02, 1.0),))
    session.sim.chunks = [1538, 1000]
    with quiet_logs():
        session.run()
    second = [f.qty for f in session.sim.fills if f.side.value == "buy"][1]
    assert sells(session) == [("target", 1000, 13.26), ("stop", 538, 12.6), ("eod", second, 12.6)]
    assert session.sim.positions() == {} and session.node.portfolio.positions == {}


def test_an_ib_oca_type_1_group_cancelling_the_stop_on_a_partial_target_fill_is_re_protected() -> None:
    """IB ocaType 1 cancels the other orders of the group on any fill: the target sells 1,000 of
    1,538 and IB cancels the stop. The runner protects the 538 left with a new pair (they had no
    stop for the rest of the trade); the stop then sells exactly those."""
    session = scripted("ibkr", {7: 13.30, 8: 13.0, 10: 12.60}, minutes=4)
    session.sim.chunks = [1538, 1000]
    with quiet_logs():
        session.run()
    assert sells(session) == [("target", 1000, 13.26), ("stop", 538, 12.6)]
    assert session.sim.positions() == {} and session.node.portfolio.positions == {}


def test_an_ib_fill_of_the_other_leg_never_makes_a_grown_pair_oversell() -> None:
    """Seed 3772 (IB): the entry fills 1,000 then 538, and 8 s later the target sells 900. The pair
    used to be resized to 1,538 by an IB modify (10 s here): IB had shrunk the stop to 100 for the
    target's 900, the modify brought it back to 1,538 against 638 held. Now no pair grows at IB:
    the 538 got an OCA group of their own, each group sells at most its shares, and the two
    together never more than held."""
    params = SimParams(**{**CALM.__dict__, "market_fill_ms": (1000, 1000), "replace_ms": (10_000, 10_000),
                          "oca_type": 2})
    session = scripted("ibkr", {7: 13.30, 8: 13.0}, minutes=4, params=params)
    session.sim.chunks = [1000, 538, 900]
    with quiet_logs():
        session.run()
    assert (session.sim.stats["replace_requests"], session.sim.stats["oco_submits"]) == (0, 2)
    assert sells(session) == [("target", 900, 13.26), ("target", 538, 13.26), ("eod", 100, 13.0)]
    assert session.sim.positions() == {} and session.node.portfolio.positions == {}


# --- seeds the generated sessions broke, pinned (found with more sessions or another offset) --------
# (broker, seed, a count and the least it must be, so that the session keeps hitting its race).
PINNED = [
    # The entry filled in 8 parts and the OCO was resized 3 times; the target sold 306 while the
    # third replace (to 848) travelled, so Alpaca refused it (542 available). The old pair was
    # kept, covering 540 of 542, with no alert, and its stop later sold 281 of them: 2 shares bare
    # for good. Now a refused resize is tried again at the size held once both legs' verdicts are
    # in (refused again: CRITICAL unprotected and flatten).
    ("alpaca", 22443, "replace_refused", 1),
    # IB, one pair per entry fill: an emergency stop cancels every order, then the flatten must wait
    # for the cancels of every pair (it waited for the latest only and sold before the first
    # pair's stop was confirmed cancelled).
    ("ibkr", 1296, "oco_submits", 3),
    # IB: the first pair (419 shares) was lost in a disconnect; pairs for the next 10 and 1 shares
    # were sent meanwhile. At the reconnect the lost pair is refused: CRITICAL unprotected and a
    # flatten (it was ignored, as not the latest pair, and the 419 stayed bare).
    ("ibkr", 3047, "lost_in_disconnect", 1),
]


@pytest.mark.parametrize(("broker", "seed", "race", "least"), PINNED, ids=[f"{b}-{s}" for b, s, _, _ in PINNED])
def test_a_pinned_seed_keeps_every_invariant(broker: str, seed: int, race: str, least: int) -> None:
    with quiet_logs():
        stats, violation = play(seed, broker)
    assert violation is None, str(violation)
    assert stats[race] >= least, f"seed {seed} no longer hits its race ({race} = {stats[race]}): pin another"
