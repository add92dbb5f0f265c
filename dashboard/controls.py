"""Operator controls in the sidebar: pause, resume, flatten (all / one symbol), emergency stop
(two steps: arm, then confirm). Each is one POST to the runner's /control API with the bearer token
of TRADING_CONTROL_TOKEN. They are drawn on every refresh with the rest of the page, so they follow
the runner: disabled with the reason while it does not answer (or without a token), enabled again
when it does. The runner's answer to the last command stays shown until the next command or until
the runner goes down or comes back (an answer from before that would be stale)."""

from __future__ import annotations

import streamlit as st

from dashboard import runner as runner_api
from dashboard.runner import ControlResult, RunnerView
from dashboard.settings import Settings

RESULT = "control_result"
ARMED = "estop_armed"
WAS_UP = "runner_was_up"


SENT = "_control_sent"


def _send(settings: Settings, command: str, symbol_key: str = "") -> None:
    """A button's callback: runs before the page is drawn again, so the page shows the answer."""
    operator = st.session_state.get("operator") or settings.operator
    symbol = st.session_state.get(symbol_key, "") if symbol_key else ""
    st.session_state[RESULT] = runner_api.control(settings.runner_url, settings.token, command, symbol,
                                                  operator=operator)
    st.session_state[ARMED] = False
    st.session_state[SENT] = True


def _arm(value: bool) -> None:
    st.session_state[ARMED] = value


def follow(runner: RunnerView) -> None:
    """Forget the last command's answer and an armed emergency stop when the runner went down or
    came back since the last refresh."""
    was = st.session_state.get(WAS_UP)
    if was is not None and was != runner.up:
        st.session_state.pop(RESULT, None)
        st.session_state[ARMED] = False
    st.session_state[WAS_UP] = runner.up


def sidebar(settings: Settings, runner: RunnerView) -> bool:
    """Draw the controls; True when a command was sent during this run (the state changed)."""
    st.header("Controls")
    sent = bool(st.session_state.pop(SENT, False))
    disabled_why = ""
    if not settings.token:
        disabled_why = ("Controls disabled: TRADING_CONTROL_TOKEN is not set, so the runner would refuse "
                        "every command. Start the dashboard with the runner's token in that variable.")
    elif not runner.up:
        disabled_why = (f"Controls disabled: the runner at {settings.runner_url} is not answering. "
                        "They come back by themselves when it does.")
    off = bool(disabled_why)
    if off:
        st.warning(disabled_why)
    st.text_input("Operator", value=settings.operator, key="operator", max_chars=64, disabled=off)
    c1, c2 = st.columns(2)
    c1.button("Pause", key="ctl_pause", disabled=off, width="stretch", on_click=_send, args=(settings, "pause"),
              help="no new entries; exits still managed")
    c2.button("Resume", key="ctl_resume", disabled=off, width="stretch", on_click=_send, args=(settings, "resume"))
    st.button("Flatten all", key="ctl_flatten_all", disabled=off, width="stretch", on_click=_send,
              args=(settings, "flatten"), help="close every position at market")
    held = [p.get("symbol") for p in ((runner.status or {}).get("positions") or [])]
    symbol = st.text_input("Symbol to flatten", key="flatten_symbol", disabled=off,
                           placeholder=", ".join(held[:5]) or "e.g. AAPL")
    st.button("Flatten symbol", key="ctl_flatten_symbol", disabled=off or not symbol.strip(), width="stretch",
              on_click=_send, args=(settings, "flatten", "flatten_symbol"))
    st.divider()
    if not st.session_state.get(ARMED) or off:
        st.button("Emergency stop…", key="ctl_estop", type="primary", disabled=off, width="stretch",
                  on_click=_arm, args=(True,),
                  help="halts trading, cancels all orders and flattens everything (asks to confirm)")
    else:
        st.error("Emergency stop: halt trading, cancel every order and flatten every position?")
        st.button("Confirm emergency stop", key="ctl_estop_confirm", type="primary", width="stretch",
                  on_click=_send, args=(settings, "emergency_stop"))
        st.button("Cancel", key="ctl_estop_cancel", width="stretch", on_click=_arm, args=(False,))
    result: ControlResult | None = st.session_state.get(RESULT)
    if result is not None:
        (st.success if result.ok else st.error)(result.message)
    return sent
