"""Dagster definitions for the ``trading_pipeline`` code location.

Placeholder: the session-lifecycle assets (daily_bars, premarket_universe, intraday_bars,
session_journal, daily_report), their checks, the jobs (premarket_prep, live_session,
end_of_day, data_retention), schedules and sensors come next.
"""

import dagster as dg

defs = dg.Definitions(assets=[], jobs=[])
