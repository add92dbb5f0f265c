"""Operator controls in the sidebar: pause, resume, flatten (all / one symbol), emergency stop
(two steps: arm, then confirm). Each is one POST to the runner's /control API with the bearer token
of TRADING_CONTROL_TOKEN; the runner's answer (or why it was not sent) stays shown until the next
command. Without a token, or with the runner down, the buttons are disabled and say why."""

from __future__ import annotations

import streamlit as st

from dashboard import runner as runner_api
from dashboard.runner import ControlResult, RunnerView
from dashboard.settings import Settings

RESULT = "control_result"
ARMED = "estop_armed"


def _send(settings: Settings, command: str, symbol: str = "") -> bool:
    operator = st.session_state.get("operator") or settings.operator
    st.session_state[RESULT] = runner_api.control(settings.runner_url, settings.token, command, symbol,
                                                  operator=operator)
    st.session_state[ARMED] = False
    return True


def sidebar(settings: Settings, runner: RunnerView) -> bool:
    """Draw the controls; True when a command was sent during this run (the state changed)."""
    st.header("Controls")
    sent = False
    disabled_why = ""
    if not settings.token:
        disabled_why = ("Controls disabled: TRADING_CONTROL_TOKEN is not set, so the runner would refuse "
                        "every command. Start the dashboard with the runner's token in that variable.")
    elif not runner.up:
        disabled_why = f"Controls disabled: the runner at {settings.runner_url} is not answering."
    off = bool(disabled_why)
    if off:
        st.warning(disabled_why)
    st.text_input("Operator", value=settings.operator, key="operator", max_chars=64, disabled=off)
    c1, c2 = st.columns(2)
    if c1.button("Pause", key="ctl_pause", disabled=off, help="no new entries; exits still managed"):
        sent = _send(settings, "pause")
    if c2.button("Resume", key="ctl_resume", disabled=off):
        sent = _send(settings, "resume")
    if st.button("Flatten all", key="ctl_flatten_all", disabled=off, help="close every position at market"):
        sent = _send(settings, "flatten")
    held = [p.get("symbol") for p in ((runner.status or {}).get("positions") or [])]
    symbol = st.text_input("Symbol to flatten", key="flatten_symbol", disabled=off,
                           placeholder=", ".join(held[:5]) or "e.g. AAPL")
    if st.button("Flatten symbol", key="ctl_flatten_symbol", disabled=off or not symbol.strip()):
        sent = _send(settings, "flatten", symbol)
    st.divider()
    if not st.session_state.get(ARMED):
        if st.button("Emergency stop…", key="ctl_estop", type="primary", disabled=off,
                     help="halts trading, cancels all orders and flattens everything (asks to confirm)"):
            st.session_state[ARMED] = True
            st.rerun()
    else:
        st.error("Emergency stop: halt trading, cancel every order and flatten every position?")
        a, b = st.columns(2)
        if a.button("Confirm emergency stop", key="ctl_estop_confirm", type="primary", disabled=off):
            _send(settings, "emergency_stop")
            st.rerun()  # redraw without the confirmation step, on the runner's new state
        if b.button("Cancel", key="ctl_estop_cancel"):
            st.session_state[ARMED] = False
            st.rerun()
    result: ControlResult | None = st.session_state.get(RESULT)
    if result is not None:
        (st.success if result.ok else st.error)(result.message)
    return sent
