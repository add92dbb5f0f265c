"""The trader's web dashboard (Streamlit): `make dashboard`, http://127.0.0.1:8501.

app.py lays out the page; settings.py reads the environment; runner.py talks to the runner's ops
API (through live_runner.ops.client); sources.py finds the journals (files or schemas per session);
journal_view.py reads one session (through live_runner.persistence.journal and live_runner.persistence.journal_state);
bars.py finds the stored 1-minute bars; fmt.py and tables.py write numbers, times and states;
charts.py, panels.py, past.py and controls.py draw the page.
Nothing here writes to the journal or imports anything the runner needs.
"""
