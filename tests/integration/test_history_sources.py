"""History sources against fakes: local Parquet/CSV (a file per session and a partitioned
dataset), Polygon REST minute aggregates (the fake Polygon on 127.0.0.1) with the on-disk cache,
and Polygon flat files (daily minute-aggregate CSV.gz, Polygon's columns) from a local folder and
from a local HTTP server in S3's key layout. Each gives the runner's feed: a seed bar per symbol
from the previous session, then the session itself; fetched once, then reused."""

import functools
import gzip
import threading
from datetime import date
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from live_runner.core.models import Bar
from live_runner.data import sample_data
from tests.kit.fake_polygon import FakePolygon
from trading_pipeline.bars import read_bars
from trading_pipeline.history_sources import FLAT_PREFIX, HistoryResource, NoHistory
from trading_pipeline.partitions import session_times

pytestmark = pytest.mark.timeout(120)
PREV, DAY = date(2024, 12, 2), date(2024, 12, 3)


@pytest.fixture(scope="module")
def market():
    """Two sessions of 6 symbols (and the regular hours of 11-29 before them), as bar frames."""
    df = sample_data.generate(PREV, 2, 6, 5)
    frame = pd.DataFrame({"symbol": df["symbol"].astype(object), "ts": df["timestamp"].astype(np.int64),
                          **{c: df[c].astype(np.float64) for c in ("open", "high", "low", "close", "volume")}})
    return frame


def session_rows(frame, day, regular_only=False):
    t = session_times(day)
    lo, hi = (t.open, t.close) if regular_only else (t.premarket_open, t.afterhours_close)
    return frame.loc[(frame["ts"] >= lo) & (frame["ts"] < hi)].reset_index(drop=True)


def expected_feed(frame):
    prev = session_rows(frame, PREV, regular_only=True).sort_values(["symbol", "ts"])
    seed = prev.groupby("symbol").tail(1)
    return pd.concat([seed, session_rows(frame, DAY)]).sort_values(["ts", "symbol"], kind="stable") \
        .reset_index(drop=True)


def assert_feed(path, frame):
    got = read_bars(path)
    want = expected_feed(frame)
    assert len(got) == len(want)
    pd.testing.assert_frame_equal(got[["symbol", "ts"]], want[["symbol", "ts"]])
    assert np.allclose(got["close"], want["close"])
    assert (got["ts"] < session_times(DAY).premarket_open).sum() == 6  # one seed per symbol


def write_runner_file(frame, path):
    from trading_pipeline.bars import write_bars
    return write_bars(frame, path)


@pytest.mark.parametrize("layout", ["per_session_parquet", "per_session_csv", "partitioned"])
def test_local_files(tmp_path, market, layout):
    root = tmp_path / "bars"
    for d in (PREV, DAY):
        rows = session_rows(market, d) if d == DAY else market.loc[market["ts"] < session_times(DAY).premarket_open]
        if layout == "per_session_parquet":
            write_runner_file(rows, root / f"{d.isoformat()}.parquet")
        elif layout == "partitioned":
            write_runner_file(rows, root / f"date={d.isoformat()}" / "part-0.parquet")
        else:
            out = rows.rename(columns={"ts": "timestamp"})
            out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
            root.mkdir(exist_ok=True)
            out.to_csv(root / f"{d.isoformat()}.csv", index=False)
    history = HistoryResource(source="files", path=str(root), cache_dir=str(tmp_path / "cache"))
    path, fetched = history.session_feed(DAY)
    assert fetched
    assert_feed(path, market)
    assert history.session_feed(DAY) == (path, False)  # fetched once, then reused
    with pytest.raises(NoHistory, match=r"2024-12-04 session in history source files"):
        history.session_feed(date(2024, 12, 4))


def test_polygon_rest_minute_aggregates_cached_on_disk(tmp_path, market, monkeypatch):
    with FakePolygon() as fake:
        monkeypatch.setenv("POLYGON_API_KEY", fake.api_key)
        fake.clock.set(session_times(DAY).afterhours_close + 86_400 * 10**9)  # history: all complete
        fake.add_bars([Bar(r.symbol, int(r.ts), r.open, r.high, r.low, r.close, r.volume)
                       for r in market.itertuples()])
        symbols = sorted(market["symbol"].unique())
        history = HistoryResource(source="polygon_rest", symbols=symbols, rest_base_url=fake.rest_url,
                                  cache_dir=str(tmp_path / "cache"))
        path, fetched = history.session_feed(DAY)
        asked = len(fake.requests)
        assert fetched and asked >= len(symbols) and all(r["auth_ok"] for r in fake.requests)
        assert_feed(path, market)
        assert history.session_feed(DAY) == (path, False)
        assert len(fake.requests) == asked  # the second time from the disk cache
        with pytest.raises(NoHistory, match="2024-12-05 session in history source polygon_rest"):
            history.session_feed(date(2024, 12, 5))


def write_flat_files(frame, root):
    """Polygon's layout and columns: ticker,volume,open,close,high,low,window_start,transactions."""
    days = pd.to_datetime(frame["ts"], utc=True).dt.tz_convert("America/New_York").dt.date
    for d in sorted(set(days)):
        rows = frame.loc[days == d].sort_values(["symbol", "ts"])
        out = pd.DataFrame({"ticker": rows["symbol"], "volume": rows["volume"].astype(np.int64),
                            "open": rows["open"], "close": rows["close"], "high": rows["high"],
                            "low": rows["low"], "window_start": rows["ts"], "transactions": 7})
        path = root / FLAT_PREFIX / f"{d:%Y}" / f"{d:%m}" / f"{d.isoformat()}.csv.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(path, "wt") as fh:
            out.to_csv(fh, index=False)


def test_polygon_flat_files_from_a_folder(tmp_path, market):
    write_flat_files(market, tmp_path / "flat")
    history = HistoryResource(source="polygon_flat", path=str(tmp_path / "flat"),
                              cache_dir=str(tmp_path / "cache"))
    path, _ = history.session_feed(DAY)
    assert_feed(path, market)
    with pytest.raises(NoHistory, match="2024-12-04 session in history source polygon_flat"):
        history.session_feed(date(2024, 12, 4))


def test_polygon_flat_files_over_http_downloaded_once(tmp_path, market):
    write_flat_files(market, tmp_path / "bucket")
    served: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            served.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(tmp_path / "bucket")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        history = HistoryResource(source="polygon_flat", path=url, cache_dir=str(tmp_path / "cache"))
        path, _ = history.session_feed(DAY)
        assert_feed(path, market)
        assert sorted(served) == [f"/{FLAT_PREFIX}/2024/12/2024-12-02.csv.gz",
                                  f"/{FLAT_PREFIX}/2024/12/2024-12-03.csv.gz"]
        path.unlink()  # the feed again: the downloads are reused, nothing fetched twice
        history.session_feed(DAY)
        assert len(served) == 2
        with pytest.raises(NoHistory, match="2024-12-04"):
            history.session_feed(date(2024, 12, 4))
    finally:
        server.shutdown()
        server.server_close()


def test_feed_builder_matches_the_frame_version_on_messy_bars(market, tmp_path):
    """The column-wise feed (what backfills build) is the frame version's file byte for byte,
    also when the bars are out of order, repeated, or insane: the replay, hence every journal,
    cannot tell which one built its feed."""
    from trading_pipeline.bars import write_bars
    from trading_pipeline.feed_build import Columns, build_feed, write_feed
    from trading_pipeline.history_sources import _windows, feed_frame

    rng = np.random.default_rng(3)
    prev_reg = session_rows(market, PREV, regular_only=True)
    messy = pd.concat([market, prev_reg.tail(9), session_rows(market, DAY).head(40)], ignore_index=True)
    messy.loc[rng.choice(len(messy), 30, replace=False), "low"] = -1.0   # insane prices
    last = prev_reg.groupby("symbol").tail(1).index                       # ...on some seeds too
    messy.loc[last[:2], "high"] = 0.0
    messy = messy.iloc[rng.permutation(len(messy))].reset_index(drop=True)  # out of order
    for name, frame in (("sorted", market), ("messy", messy)):
        old = write_bars(feed_frame(frame, DAY), tmp_path / f"old_{name}.parquet")
        prev, ses = _windows(DAY)
        new = write_feed(build_feed(Columns.of_frame(frame), prev, ses), tmp_path / f"new_{name}.parquet")
        assert old.read_bytes() == new.read_bytes(), name


@pytest.fixture
def moto_s3():
    """moto's S3 in server mode on 127.0.0.1 (what ThreadedMotoServer runs), behind a WSGI layer
    that notes each request's method, path and Authorization header, so a test sees every GET."""
    import urllib.request

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    seen: list[tuple[str, str, str]] = []
    app = DomainDispatcherApplication(create_backend_app)

    def noting(environ, start_response):
        seen.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], environ.get("HTTP_AUTHORIZATION", "")))
        return app(environ, start_response)

    server = make_server("127.0.0.1", 0, noting, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield url, seen
    finally:
        urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10)
        server.shutdown()
        server.server_close()


def test_polygon_flat_files_from_s3_downloaded_once(tmp_path, market, moto_s3, monkeypatch):
    """s3://flatfiles on an S3 endpoint (moto's, speaking S3's wire format; Polygon's in real
    life): keys from the environment, SigV4, each day's file fetched once, the same feed as the
    same files in a folder; a missing day is NoHistory; no keys is a clear error."""
    import boto3

    url, seen = moto_s3
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TRADING_POLYGON_S3_ACCESS_KEY_ID", "polygon-key-id")
    monkeypatch.setenv("TRADING_POLYGON_S3_SECRET_ACCESS_KEY", "polygon-secret")
    write_flat_files(market, tmp_path / "flat")
    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                      aws_access_key_id="setup", aws_secret_access_key="setup")
    s3.create_bucket(Bucket="flatfiles")
    for f in sorted((tmp_path / "flat").rglob("*.csv.gz")):
        s3.upload_file(str(f), "flatfiles", f.relative_to(tmp_path / "flat").as_posix())
    seen.clear()

    history = HistoryResource(source="polygon_flat", path="s3://flatfiles", s3_endpoint_url=url,
                              cache_dir=str(tmp_path / "cache"))
    path, fetched = history.session_feed(DAY)
    folder = HistoryResource(source="polygon_flat", path=str(tmp_path / "flat"),
                             cache_dir=str(tmp_path / "folder_cache"))
    assert fetched and read_bars(path).equals(read_bars(folder.session_feed(DAY)[0]))
    assert_feed(path, market)
    gets = [(m, p) for m, p, _ in seen if m == "GET"]
    assert sorted(gets) == [("GET", f"/flatfiles/{FLAT_PREFIX}/2024/12/2024-12-02.csv.gz"),
                            ("GET", f"/flatfiles/{FLAT_PREFIX}/2024/12/2024-12-03.csv.gz")]
    assert all(a.startswith("AWS4-HMAC-SHA256 Credential=polygon-key-id/") for _, _, a in seen)

    path.unlink()  # the feed again: from the downloads on disk, no new GET
    assert history.session_feed(DAY) == (path, True)
    assert len([m for m, _, _ in seen if m == "GET"]) == 2
    assert history.session_feed(DAY) == (path, False)

    with pytest.raises(NoHistory, match=r"2024-12-04 session in history source polygon_flat s3://flatfiles"):
        history.session_feed(date(2024, 12, 4))

    monkeypatch.delenv("TRADING_POLYGON_S3_ACCESS_KEY_ID")
    with pytest.raises(ValueError, match="TRADING_POLYGON_S3_ACCESS_KEY_ID and "
                                         "TRADING_POLYGON_S3_SECRET_ACCESS_KEY / AWS_ACCESS_KEY_ID"):
        history.session_feed(date(2024, 12, 5))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "aws-key-id")  # the standard variables do as well
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    with pytest.raises(NoHistory, match="2024-12-05"):
        history.session_feed(date(2024, 12, 5))
    assert seen[-1][2].startswith("AWS4-HMAC-SHA256 Credential=aws-key-id/")


def test_polygon_flat_s3_errors_name_the_day_and_the_source(tmp_path, moto_s3, monkeypatch):
    """An S3 failure other than a missing key (here: no such bucket) is not "no data"."""
    url, _ = moto_s3
    monkeypatch.setenv("TRADING_POLYGON_S3_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("TRADING_POLYGON_S3_SECRET_ACCESS_KEY", "s")
    history = HistoryResource(source="polygon_flat", path="s3://nobucket", s3_endpoint_url=url,
                              cache_dir=str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match=r"2024-12-03 session in history source polygon_flat "
                                           r"s3://nobucket: .*NoSuchBucket"):
        history.session_feed(DAY)
