"""Responsiveness of `run` with 500 symbols flat out: ops latency while the feed is behind, SIGTERM to exit.

Usage: .venv/bin/python bench/responsiveness.py [--sessions 23] [--stop-at 0.75] [--pause-ms 5]
The real runner is started as a subprocess (`python -m live_runner run --mode paper --speed 1e9`:
the paced feed is always behind, so it runs bar after bar and only the loop's slices,
live_runner/core/clock.py LOOP_SLICE_S, let the ops server in) on 500 symbols x `--sessions`
sessions (the data of `python -m live_runner sample-data --symbols 500 --sessions K --seed 5`,
cached under var/bench and shared with bench/memory.py), with a SQLite journal and the ops
server on an ephemeral port of 127.0.0.1. This process polls GET /health, /status and /metrics
in turn, one request at a time with `--pause-ms` between them, timing each from connect to the
last byte (a fresh connection each: the server answers `Connection: close`).
Once /status shows `--stop-at` of the bars processed it sends SIGTERM and times the process's
exit; the runner's --json summary must show fewer bars than the file holds (it stopped, the
data did not run out).
Lines: one per endpoint (count, p50/p99/max in ms, and the median of the first and last quarter
of its samples with the closed trades and the answer's size at each end: /status and /metrics
cost O(1) in the number of trades, issue 18), then `sigterm_to_exit_s`. A request waits for
several turns of the loop (accept, the connection's task, reading, writing), each behind up to a
slice of bar work, so /health's latency is mostly that wait: compare the other endpoints'
quarters with its own, which moves only with the machine's load. /metrics also carries its
render time on the loop (`trading_metrics_render_seconds`, render_*_quarter_p50 in ms). Targets (issue 18): /health p99 <= 200 ms, SIGTERM
effective within 1 s. Timings are reported, never asserted; /proc/loadavg is printed with them
(this machine is shared).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, emit, sample_file

ENDPOINTS = ("/health", "/status", "/metrics")
TARGETS_MS = {"/health": 200.0}
SIGTERM_TARGET_S = 1.0
RENDER = re.compile(rb"^trading_metrics_render_seconds ([0-9.e+-]+)$", re.MULTILINE)
CONFIG = "log_dir: null\nops:\n  host: 127.0.0.1\n  port: 0\n"  # port 0: the OS picks, read from the log


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def total_bars(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def wait_for_port(proc: subprocess.Popen[bytes], err: Path, timeout_s: float = 120.0) -> int:
    """The ops server's bound port, from the runner's "ops server on http://host:port" log line."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        m = re.search(r"ops server on http://[^:/]+:(\d+)", err.read_text(errors="replace"))
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            raise SystemExit(f"runner exited ({proc.returncode}) before serving:\n{err.read_text()[-2000:]}")
        time.sleep(0.02)
    raise SystemExit("runner's ops server did not start")


def get(port: int, path: str) -> tuple[float, int, bytes]:
    """(seconds from connect to the last byte, status, body)."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    return time.perf_counter() - t0, resp.status, body


def q(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(p * len(s)))] * 1000, 2) if s else float("nan")


def poll(proc: subprocess.Popen[bytes], port: int, total: int, stop_at: float,
         pause_s: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Poll the endpoints in turn until /status shows `stop_at` of the bars, then SIGTERM and time
    the exit. Samples: endpoint, latency_s, status, and the bars and trades last seen on /status."""
    samples: list[dict[str, Any]] = []
    bars = trades = 0
    t_start = time.perf_counter()
    sent = None
    i = 0
    while proc.poll() is None:
        path = ENDPOINTS[i % len(ENDPOINTS)]
        i += 1
        try:
            took, status, body = get(port, path)
        except (OSError, http.client.HTTPException) as exc:
            if proc.poll() is not None:
                break
            samples.append({"endpoint": path, "error": type(exc).__name__})
            time.sleep(pause_s)
            continue
        render = None
        if path == "/status" and status == 200:
            st = json.loads(body)
            bars = int(st.get("bars_processed", 0))
            trades = sum(int(v.get("trades", 0)) for v in (st.get("stats") or {}).values())
        elif path == "/metrics" and (m := RENDER.search(body)):
            render = float(m.group(1))
        samples.append({"endpoint": path, "latency_s": took, "status": status, "bars": bars,
                        "trades": trades, "bytes": len(body), "render_s": render,
                        "t": time.perf_counter() - t_start})
        if bars >= stop_at * total:
            sent = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(pause_s)
    stop: dict[str, Any] = {"bars_at_sigterm": bars if sent else None, "load_at_sigterm": loadavg()}
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        stop["killed_after_120s"] = True
    if sent is not None:
        stop["sigterm_to_exit_s"] = round(time.perf_counter() - sent, 3)
    stop["polled_s"] = round(time.perf_counter() - t_start, 1)
    return samples, stop


def endpoint_lines(samples: list[dict[str, Any]], sessions: int, load: str) -> None:
    for path in ENDPOINTS:
        mine = [s for s in samples if s["endpoint"] == path]
        ok = [s for s in mine if "latency_s" in s]
        lat = [s["latency_s"] for s in ok]
        quarter = max(1, len(ok) // 4)
        first, last = ok[:quarter], ok[-quarter:]
        fields: dict[str, Any] = {
            "bench": "ops_latency_ms", "endpoint": path, "symbols": 500, "sessions": sessions,
            "count": len(lat), "p50": q(lat, 0.50), "p99": q(lat, 0.99),
            "max": round(max(lat) * 1000, 2) if lat else None,
            "errors": len(mine) - len(ok), "non_200": sum(1 for s in ok if s["status"] != 200),
            "first_quarter_p50": q([s["latency_s"] for s in first], 0.5),
            "last_quarter_p50": q([s["latency_s"] for s in last], 0.5),
            "trades_first": ok[0]["trades"] if ok else None, "trades_last": ok[-1]["trades"] if ok else None,
            "bars_first": ok[0]["bars"] if ok else None, "bars_last": ok[-1]["bars"] if ok else None,
            "bytes_first": ok[0]["bytes"] if ok else None, "bytes_last": ok[-1]["bytes"] if ok else None,
            "loadavg": load,
        }
        if path == "/metrics":  # the render's own time on the loop, as the runner exports it
            fields["render_first_quarter_p50"] = q([s["render_s"] for s in first if s["render_s"] is not None], 0.5)
            fields["render_last_quarter_p50"] = q([s["render_s"] for s in last if s["render_s"] is not None], 0.5)
        if path in TARGETS_MS:
            fields["target_p99"] = TARGETS_MS[path]
        emit(**fields)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=23, help="sessions of 500 symbols in the bars file")
    ap.add_argument("--stop-at", type=float, default=0.75,
                    help="send SIGTERM once this fraction of the bars is processed")
    ap.add_argument("--pause-ms", type=float, default=5.0, help="pause between two requests")
    args = ap.parse_args()
    bars_file = sample_file(500, args.sessions, seed=5)
    total = total_bars(bars_file)
    with tempfile.TemporaryDirectory() as tmp:
        cfg, out, err = Path(tmp, "config.yaml"), Path(tmp, "summary.json"), Path(tmp, "stderr.log")
        cfg.write_text(CONFIG)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        load_start = loadavg()
        with out.open("wb") as fout, err.open("wb") as ferr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "live_runner", "run", "--mode", "paper", "--bars", str(bars_file),
                 "--speed", "1e9", "--json", "--config", str(cfg), "--journal", f"sqlite:///{tmp}/j.db"],
                cwd=tmp, env=env, stdout=fout, stderr=ferr)
            try:
                port = wait_for_port(proc, err)
                samples, stop = poll(proc, port, total, args.stop_at, args.pause_ms / 1000)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        text = out.read_text().strip()
        summary = json.loads(text.splitlines()[-1]) if text else {}
        if proc.returncode != 0:
            print(err.read_text()[-3000:], file=sys.stderr)
    endpoint_lines(samples, args.sessions, load_start)
    processed = summary.get("bars_processed")
    emit(bench="sigterm_to_exit", symbols=500, sessions=args.sessions, total_bars=total,
         bars_at_sigterm=stop["bars_at_sigterm"], bars_processed=processed,
         stopped_before_end=processed is not None and processed < total,
         sigterm_to_exit_s=stop.get("sigterm_to_exit_s"), target_s=SIGTERM_TARGET_S,
         exit_code=proc.returncode, trades=len(summary.get("trades", [])),
         runner_elapsed_s=summary.get("elapsed_s"), polled_s=stop["polled_s"],
         loadavg=stop["load_at_sigterm"], runner_error=summary.get("error"), **({"killed": True} if stop.get("killed_after_120s") else {}))


if __name__ == "__main__":
    main()
