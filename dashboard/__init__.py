"""The trader's web dashboard (Streamlit): `make dashboard`, http://127.0.0.1:8501.

app.py lays out the page; settings.py reads the environment; runner.py talks to the runner's ops
API (through live_runner.ops_client); journal_view.py reads the journal (through
live_runner.journal and live_runner.journal_state); panels.py and controls.py draw the page.
Nothing here writes to the journal or imports anything the runner needs.
"""
