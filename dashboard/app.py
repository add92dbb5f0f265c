"""The trader's dashboard: `make dashboard` (streamlit run dashboard/app.py --server.port 8501).

Configuration from the environment (see dashboard/settings.py). The whole page (state banner,
controls, figures, charts, tables) is one Streamlit fragment that refreshes on its own every
TRADING_DASHBOARD_REFRESH_S seconds from one fetch of the runner's /status, so nothing on it is
older than one refresh: when the runner goes down the controls are disabled (with the reason) and
the figures come from the journal within one refresh, and they come back when it answers again.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run` puts dashboard/ on the path, not the repository
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import controls, panels, past, runner, settings as settings_mod  # noqa: E402

st.set_page_config(page_title="Intraday trader", page_icon="📈", layout="wide")
settings = settings_mod.load()
st.markdown(panels.CSS, unsafe_allow_html=True)
with st.sidebar:
    st.caption(f"Runner {settings.runner_url}; refresh "
               f"{'every %g s' % settings.refresh_s if settings.refresh_s else 'off'}; "
               "times in New York time (America/New_York)")


VIEWS = ("Today", "Past sessions")


@st.fragment(run_every=settings.refresh_s or None)
def page() -> None:
    view = runner.fetch(settings.runner_url, settings.timeout_s)
    last = runner.remember(view)
    controls.follow(view)
    with st.sidebar:
        controls.sidebar(settings, view)
    today = panels.today(settings, view, last)
    st.header("Intraday trader", anchor=False)
    panels.banner(view, today)
    # Only the view picked is drawn (a hidden tab would cost a full render on every refresh).
    shown = st.radio("View", VIEWS, key="view", horizontal=True, label_visibility="collapsed")
    if shown == VIEWS[1]:
        past.past(settings, today)
    else:
        panels.live(settings, view, today)


page()
