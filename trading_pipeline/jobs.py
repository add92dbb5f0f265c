"""The asset jobs of the session lifecycle (the op jobs live with their ops)."""


import dagster as dg

from trading_pipeline.market_assets import daily_bars, intraday_bars, premarket_universe
from trading_pipeline.session_assets import daily_report, replay_report, session_journal

premarket_prep = dg.define_asset_job(
    "premarket_prep", selection=dg.AssetSelection.assets(daily_bars, premarket_universe),
    description="Previous closes and the gap scan: the session's universe, before the open.")

end_of_day = dg.define_asset_job(
    "end_of_day",
    selection=dg.AssetSelection.assets(intraday_bars, session_journal, daily_report, replay_report),
    description="After the close: store the session's bars, read the journal, report, replay audit.")
