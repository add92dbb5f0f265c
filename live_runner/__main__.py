"""Command line: `python -m live_runner {replay,run,sample-data,demo}`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from live_runner.config import ConfigError, load_config

DEMO_DIR = Path("var/demo")
DEMO_DATE = "2024-11-26"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML config file (defaults when omitted)")
    p.add_argument("--journal", help="journal SQLAlchemy URL (default: the config's journal.url)")
    p.add_argument("--universe", help="comma-separated session universe (overrides the gap scan)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m live_runner", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rp = sub.add_parser("replay", help="replay a bars file through the whole chain, paper broker")
    rp.add_argument("--bars", type=Path, required=True)
    rp.add_argument("--json", action="store_true", help="print one JSON object")
    _common(rp)
    run = sub.add_parser("run", help="run a live session until it ends or SIGTERM")
    run.add_argument("--mode", choices=["paper"], required=True)
    run.add_argument("--bars", type=Path, help="replay file used as the feed (default: feed.bars)")
    run.add_argument("--speed", type=float,
                     help="pacing: 1 = real time, 60 = a bar-minute per second (default: feed.speed)")
    run.add_argument("--json", action="store_true")
    run.add_argument("--linger", action="store_true",
                     help="keep the ops server up after the data ends, until SIGTERM")
    _common(run)
    sub.add_parser("sample-data", help="write a deterministic synthetic session (see its --help)")
    demo = sub.add_parser("demo", help="generate the sample session and replay it")
    demo.add_argument("--json", action="store_true")
    return parser


def _run(args: argparse.Namespace, bars: Path, speed: float | None) -> int:
    from live_runner.runs import RunOptions, format_summary, install_sigterm, run_session

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: invalid configuration\n{exc}", file=sys.stderr)
        return 2
    universe = [s.strip() for s in args.universe.split(",")] if getattr(args, "universe", None) else None
    opts = RunOptions(bars=bars, journal_url=args.journal or config.journal.url, universe=universe,
                      progress=not args.json, speed=speed)
    logging.basicConfig(level=config.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    install_sigterm(opts.stop_event)
    from live_runner import pipes_bridge

    bridge = pipes_bridge.attach()  # a no-op unless started by Dagster Pipes
    from live_runner.adapters.replay import BarFileError
    from live_runner.journal import JournalDivergence

    try:
        if speed is None:
            summary = run_session(config, opts)
        else:
            from live_runner.service import run_live

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
    bridge.report(summary)
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(format_summary(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sample-data"]:
        from live_runner import sample_data

        return sample_data.main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "replay":
        return _run(args, args.bars, None)
    if args.command == "run":
        try:
            feed = load_config(args.config).feed
        except ConfigError as exc:
            print(f"error: invalid configuration\n{exc}", file=sys.stderr)
            return 2
        bars = args.bars or (Path(feed.bars) if feed.bars else None)
        if bars is None:
            print("error: paper mode needs a feed: --bars PATH or feed.bars in the config", file=sys.stderr)
            return 2
        return _run(args, bars, args.speed or feed.speed)
    if args.command == "demo":
        return _demo(args.json)
    return 2


def _demo(as_json: bool) -> int:
    """Generate (or reuse) the sample session and replay it on a fresh journal."""
    from live_runner import sample_data

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
