"""The trader's dashboard: `make dashboard` (streamlit run dashboard/app.py --server.port 8501).

Configuration from the environment (see dashboard/settings.py). The live panels refresh on their
own every TRADING_DASHBOARD_REFRESH_S seconds (a Streamlit fragment); the controls sit in the
sidebar; the second tab shows any past session recorded in the journal.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run` puts dashboard/ on the path, not the repository
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import controls, panels, runner, settings as settings_mod  # noqa: E402

st.set_page_config(page_title="Intraday trader", page_icon="📈", layout="wide")
settings = settings_mod.load()
first = runner.fetch(settings.runner_url, settings.timeout_s)

with st.sidebar:
    if controls.sidebar(settings, first):  # a command changed the runner: show its new state
        first = runner.fetch(settings.runner_url, settings.timeout_s)
    st.caption(f"Runner {settings.runner_url}; refresh "
               f"{'every %g s' % settings.refresh_s if settings.refresh_s else 'off'}")

st.title("Intraday trader")
live_tab, past_tab = st.tabs(["Today", "Past sessions"])


@st.fragment(run_every=settings.refresh_s or None)
def live_panels() -> None:
    # A fragment rerun fetches anew; the full run reuses the fetch the sidebar used.
    view = first if not st.session_state.get("_live_drawn") else runner.fetch(settings.runner_url,
                                                                              settings.timeout_s)
    st.session_state["_live_drawn"] = True
    panels.live(settings, view)


with live_tab:
    st.session_state["_live_drawn"] = False
    live_panels()

with past_tab:
    template = settings.journal_url or ((first.status or {}).get("journal") or {}).get("url", "")
    panels.past(settings, template)
