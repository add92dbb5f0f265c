"""Command line: `python -m live_runner {replay,run,status,control,sample-data,demo}`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from live_runner.core.config import ConfigError, load_config

EXIT_LEASE_HELD = 6  # another runner holds the account's lease: this one did not start
EXIT_LEASE_LOST = 7  # the runner lost its lease mid-session and stopped sending
DEMO_DIR = Path("var/demo")
DEMO_DATE = "2024-11-26"


def _report_failure(bridge: Any, as_json: bool, summary: dict, message: str) -> None:
    """A run that ended in error still reports what it did (Pipes, --json), then says why."""
    bridge.report(summary)
    if as_json:
        print(json.dumps(summary, sort_keys=True))
    print(message, file=sys.stderr)

def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML config file (defaults when omitted)")
    p.add_argument("--journal", help="journal SQLAlchemy URL (default: $TRADING_JOURNAL_URL, else the "
                                     "config's journal.url); a password here is visible in /proc: "
                                     "put such a URL in TRADING_JOURNAL_URL instead")
    p.add_argument("--universe", help="comma-separated session universe (overrides the gap scan)")
    p.add_argument("--daily-bars", type=Path,
                   help="the provider's daily bars (Parquet/CSV: symbol, session, close; Dagster's "
                        "daily_bars): the previous close of a symbol whose bars lack that session")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m live_runner", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rp = sub.add_parser("replay", help="replay a bars file through the whole chain, paper broker")
    rp.add_argument("--bars", type=Path, required=True)
    rp.add_argument("--json", action="store_true", help="print one JSON object")
    _common(rp)
    run = sub.add_parser("run", help="run a live session until it ends or SIGTERM")
    run.add_argument("--mode", choices=["paper", "live"], required=True,
                     help="paper: the paper broker or brokers' paper accounts (live-money endpoints "
                          "refused); live: real money, only with --confirm-live")
    run.add_argument("--confirm-live", action="store_true",
                     help="required with --mode live: this run sends real-money orders")
    run.add_argument("--bars", type=Path, help="replay file used as the feed (default: feed.bars)")
    run.add_argument("--speed", type=float,
                     help="pacing: 1 = real time, 60 = a bar-minute per second (default: feed.speed)")
    run.add_argument("--json", action="store_true")
    run.add_argument("--linger", action="store_true",
                     help="keep the ops server up after the data ends, until SIGTERM")
    _common(run)
    st = sub.add_parser("status", help="show a running runner's state (GET /status of its ops server)")
    st.add_argument("--url", help="the runner's ops server (default: $TRADING_OPS_URL, the config's "
                                  "ops host/port, else http://127.0.0.1:8080)")
    st.add_argument("--config", type=Path, help="take the default URL from this config's ops section")
    st.add_argument("--json", action="store_true", help="print the raw JSON")
    st.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer")
    ct = sub.add_parser(
        "control", help="send an operator command to a running runner (POST /control/...)",
        description="Commands: pause (no new entries, exits still managed), resume, emergency_stop "
                    "(HALTED, cancel open orders, flatten), rebalance (close the newest positions "
                    "beyond max_positions), flatten [--symbol S]. The bearer token is read from the "
                    "environment variable named by the config's ops.token_env "
                    "(default TRADING_CONTROL_TOKEN). Exit: 0 accepted, 1 refused (401/404/400), "
                    "2 usage, 3 runner unreachable.")
    ct.add_argument("cmd", metavar="command", choices=["pause", "resume", "emergency_stop", "rebalance",
                                                        "flatten"],
                    help="pause | resume | emergency_stop | rebalance | flatten")
    ct.add_argument("--symbol", help="flatten only this symbol")
    ct.add_argument("--url", help="the runner's ops server (default as for `status`)")
    ct.add_argument("--config", type=Path, help="take the default URL and ops.token_env from this config")
    ct.add_argument("--operator", help="who is sending the command (journaled; default: the OS user)")
    ct.add_argument("--json", action="store_true", help="print the runner's answer as JSON")
    ct.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer")
    sub.add_parser("sample-data", help="write a deterministic synthetic session (see its --help)")
    cc = sub.add_parser("check-connections",
                        help="report what each configured broker and data adapter can reach")
    cc.add_argument("--config", type=Path)
    cc.add_argument("--json", action="store_true")
    demo = sub.add_parser("demo", help="generate the sample session and replay it")
    demo.add_argument("--json", action="store_true")
    return parser


def _run(args: argparse.Namespace, bars: Path, speed: float | None) -> int:
    from live_runner.live.runs import RunOptions, format_summary, install_sigterm, run_session

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: invalid configuration\n{exc}", file=sys.stderr)
        return 2
    universe = [s.strip() for s in args.universe.split(",")] if getattr(args, "universe", None) else None
    journal_url = _journal_url(args.journal, config.journal.url)
    if journal_url is None:
        return 2
    opts = RunOptions(bars=bars, journal_url=journal_url, universe=universe,
                      daily_bars=getattr(args, "daily_bars", None),
                      progress=not args.json, speed=speed)
    from live_runner.ops import logs

    # `run` also writes the per-session log file; a replay logs to stderr only.
    log_setup = logs.setup_from_config(config, with_file=speed is not None)
    from live_runner.ops import pipes_bridge

    bridge = pipes_bridge.attach()  # a no-op unless started by Dagster Pipes
    opts.journal_observer = bridge.journal_observer  # the session's story, told through Pipes
    if log_setup.file is not None:
        logging.getLogger("live_runner.live.service").info("logging to %s (run %s)", log_setup.file,
                                                      log_setup.run_id)
    install_sigterm(opts.stop_event)
    from live_runner.core.clients import AccountModeError
    from live_runner.adapters.replay import BarFileError
    from live_runner.persistence.journal import JournalDivergence
    from live_runner.live.lease import LeaseHeld
    from live_runner.live.errors import LeaseLostError, RunnerError, ShutdownIncomplete

    try:
        if speed is None:
            summary = run_session(config, opts)
        else:
            from live_runner.live.service import run_live

            opts.linger = bool(getattr(args, "linger", False))
            summary = run_live(config, opts)
    except BarFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"error: invalid configuration\n{exc}", file=sys.stderr)
        return 2
    except JournalDivergence as exc:
        print(f"error: refusing to resume: {exc}", file=sys.stderr)
        return 3
    except LeaseHeld as exc:
        # Another runner trades this account (live_runner/live/lease.py): nothing was started.
        print(f"error: refusing to start: {exc}", file=sys.stderr)
        return EXIT_LEASE_HELD
    except LeaseLostError as exc:
        # Fenced: nothing sent after the loss, resting exits left at the broker; CRITICAL alerted.
        _report_failure(bridge, args.json, exc.summary, f"error: {exc}; stopped sending and exited")
        return EXIT_LEASE_LOST
    except AccountModeError as exc:  # the broker's login does not match --mode: nothing was sent
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ShutdownIncomplete as exc:
        # The day's work was done, but the exit could not be made flat/settled: CRITICAL alerted.
        _report_failure(bridge, args.json, exc.summary, f"error: shutdown incomplete: {exc}")
        return 5
    except RunnerError as exc:
        # The service has alerted, journaled the error and flushed; the summary is what was done.
        _report_failure(bridge, args.json, exc.summary, f"error: the runner failed: {exc}")
        return 4
    bridge.report(summary)
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(format_summary(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sample-data"]:
        from live_runner.data import sample_data

        return sample_data.main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "replay":
        return _run(args, args.bars, None)
    if args.command == "check-connections":
        return _check_connections(args)
    if args.command == "run":
        try:
            feed = load_config(args.config).feed
            if (refusal := _mode_refusal(args, load_config(args.config))) is not None:
                print(f"error: {refusal}", file=sys.stderr)
                return 2
        except ConfigError as exc:
            print(f"error: invalid configuration\n{exc}", file=sys.stderr)
            return 2
        bars = args.bars or (Path(feed.bars) if feed.bars else None)
        live_data = load_config(args.config).primary_data_provider != "replay"
        if bars is None and not live_data:
            print("error: paper mode needs a feed: --bars PATH or feed.bars in the config "
                  "(or primary_data_provider: polygon|yahoo)", file=sys.stderr)
            return 2
        return _run(args, bars, args.speed or feed.speed)  # type: ignore[arg-type]
    if args.command in ("status", "control"):
        return _client(args)
    if args.command == "demo":
        return _demo(args.json)
    return 2


def _client(args: argparse.Namespace) -> int:
    """`status` and `control`: thin clients of the runner's ops HTTP API (see ops_client)."""
    from live_runner.ops import client as ops_client

    ops = None
    if args.config is not None:
        try:
            ops = load_config(args.config).ops
        except ConfigError as exc:
            print(f"error: invalid configuration\n{exc}", file=sys.stderr)
            return 2
    url = args.url or ops_client.default_url(ops)
    if args.command == "status":
        return ops_client.status(url, args.json, sys.stdout, sys.stderr, timeout_s=args.timeout)
    if args.symbol and args.cmd != "flatten":
        print(f"error: --symbol only goes with flatten, not {args.cmd}", file=sys.stderr)
        return 2
    token_env = ops.token_env if ops is not None else ops_client.DEFAULT_TOKEN_ENV
    return ops_client.control(url, args.cmd, args.symbol, args.operator, token_env, sys.stdout,
                              sys.stderr, as_json=args.json, timeout_s=args.timeout)


def _journal_url(arg: str | None, configured: str) -> str | None:
    """--journal, else $TRADING_JOURNAL_URL, else the config's. A password on the command line
    works but is warned about (every local user reads argv in /proc); a `{session}` template is
    the pipeline's, not a journal, and is refused (None)."""
    import os

    from live_runner.ops.redact import JOURNAL_URL_ENV, has_password

    url = arg or os.environ.get(JOURNAL_URL_ENV, "").strip() or configured
    if arg and has_password(arg):
        print(f"warning: --journal carries a password, readable by every local user in "
              f"/proc/<pid>/cmdline; set {JOURNAL_URL_ENV} in the environment instead",
              file=sys.stderr)
    if "{session}" in url:
        print(f"error: the journal URL is a template with {{session}} ({JOURNAL_URL_ENV} of the "
              f"pipeline?): give the runner one session's journal", file=sys.stderr)
        return None
    return url


def _mode_refusal(args: argparse.Namespace, config: object) -> str | None:
    """Real money needs an explicit flag; paper mode refuses live-money endpoints."""
    from live_runner.live.brokers import refuse_live_endpoints, refuse_paper_accounts

    if args.mode == "live":
        if not args.confirm_live:
            return "--mode live trades real money: add --confirm-live to proceed"
        return refuse_paper_accounts(config)  # type: ignore[arg-type]
    return refuse_live_endpoints(config)  # type: ignore[arg-type]


def _check_connections(args: argparse.Namespace) -> int:
    import asyncio

    from live_runner.live.brokers import check_connections

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: invalid configuration\n{exc}", file=sys.stderr)
        return 2
    results = asyncio.run(check_connections(config))
    if args.json:
        print(json.dumps(results, sort_keys=True, default=str))
    else:
        for r in results:
            state = "ok  " if r.get("ok") else "FAIL"
            rest = {k: v for k, v in r.items() if k not in ("role", "adapter", "ok")}
            print(f"{state} {r['role']:<22} {r['adapter']:<8} {rest}")
    return 0 if all(r.get("ok") for r in results) else 1


def _demo(as_json: bool) -> int:
    """Generate (or reuse) the sample session and replay it on a fresh journal."""
    from live_runner.data import sample_data

    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    bars = DEMO_DIR / f"bars_{DEMO_DATE}.parquet"
    if not bars.exists():
        sample_data.main(["--out", str(DEMO_DIR), "--date", DEMO_DATE, "--symbols", "40", "--seed", "7"])
    journal = DEMO_DIR / "journal.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{journal}{suffix}").unlink(missing_ok=True)
    args = argparse.Namespace(config=None, journal=f"sqlite:///{journal}", universe=None, json=as_json)
    print(f"replaying {bars} (sample session {DEMO_DATE}, paper broker)\n", file=sys.stderr)
    return _run(args, bars, None)


if __name__ == "__main__":
    sys.exit(main())
