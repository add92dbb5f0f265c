"""Runner configuration: strict, frozen, and refused at start when wrong.

The field names and defaults of the original sketch's `SystemConfig` are kept. Unknown keys, wrong
types and impossible values are refused with a message naming the key, before anything trades.
Secrets never live here: they come from the environment (see `secret`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
BUILTIN_STRATEGIES = ("gap_and_go", "vwap_reclaim")


def _check_hhmm(v: str) -> str:
    if not isinstance(v, str) or not _HHMM.match(v):
        raise ValueError(f"expected HH:MM, got {v!r}")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, validate_default=True)


class GapAndGoConfig(_Strict):
    gap_pct_min: float = Field(0.04, ge=0)
    premarket_volume_min: float = Field(50_000, ge=0)
    price_min: float = Field(1.0, gt=0)
    price_max: float = Field(20.0, gt=0)
    hold_ratio_min: float = Field(0.9, ge=0, le=1)
    entry_end: str = "10:30"
    target_r: float = Field(2.0, gt=0)

    @field_validator("entry_end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        return _check_hhmm(v)

    @model_validator(mode="after")
    def _band(self) -> "GapAndGoConfig":
        if self.price_min > self.price_max:
            raise ValueError("price_min must not exceed price_max")
        return self


class VwapReclaimConfig(_Strict):
    min_bars_below: int = Field(3, ge=1)
    volume_mult: float = Field(1.5, ge=0)
    volume_lookback: int = Field(20, ge=5)
    min_lookback_bars: int = Field(5, ge=1)
    entry_start: str = "09:45"
    entry_end: str = "15:30"
    target_r: float = Field(2.0, gt=0)
    max_entries_per_symbol: int = Field(2, ge=1)

    @field_validator("entry_start", "entry_end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        return _check_hhmm(v)


class StrategiesConfig(_Strict):
    gap_and_go: GapAndGoConfig = Field(default_factory=GapAndGoConfig)
    vwap_reclaim: VwapReclaimConfig = Field(default_factory=VwapReclaimConfig)
    # Parameters of user strategies, keyed by the import path given in active_strategies.
    custom: dict[str, dict[str, Any]] = Field(default_factory=dict)


class PaperConfig(_Strict):
    slippage_bps: float = Field(0.0, ge=0)
    commission_per_share: float = Field(0.0035, ge=0)
    commission_min: float = Field(0.35, ge=0)
    max_participation: float | None = Field(None, gt=0, le=1)
    # Where the paper broker keeps its own state across crashes (None: in memory only).
    state_url: str | None = None


class IbkrConfig(_Strict):
    """Interactive Brokers (TWS or IB Gateway) for `primary_broker/backup_broker: ibkr`.

    The API itself has no credentials (the Gateway holds the login); the account id is read from
    the environment variable named by `account_env` unless `account` is set here."""

    host: str = "127.0.0.1"
    port: int = Field(4002, ge=1, le=65535)  # Gateway paper 4002, live 4001; TWS 7497 / 7496
    # What the Gateway must be logged in to: true = a paper account (ids starting with "D": DU...,
    # DF... for a paper advisor), false = a live one. Checked against the accounts the Gateway
    # reports at every connect (the port alone proves nothing: ports are remappable); `run --mode
    # paper` refuses paper: false, `run --mode live` refuses paper: true.
    paper: bool = True
    client_id: int = Field(1, ge=0, le=2**31 - 1)
    account: str | None = None
    account_env: str = "IBKR_ACCOUNT"
    connect_timeout_s: float = Field(10.0, gt=0)
    # IB disconnects a client above 50 messages/s; stay below with a margin.
    max_msgs_per_s: int = Field(45, ge=1, le=49)
    reconnect_initial_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(60.0, gt=0)
    # How long a fill waits for its commission report before it is reported without one.
    commission_wait_s: float = Field(2.0, ge=0)
    # Highest IB order id reserved per client id (ids are never reused across sessions).
    order_id_state: str | None = "var/ibkr_order_ids.json"
    # ocaType of a position's stop+target OCA group: 2 = reduce the other leg by the filled shares
    # (a partial target fill leaves the stop covering exactly what is still held); 1 = cancel the
    # other leg on any fill, even a partial one (the rest of the position is then unprotected);
    # 3 = reduce without block (IB may overfill).
    oca_type: int = Field(2, ge=1, le=3)


class RiskConfig(_Strict):
    """Limits beyond the sketch's top-level ones (those stay top-level for compatibility)."""

    max_orders_per_minute: int = Field(60, ge=1)
    price_collar_pct: float = Field(0.10, gt=0)
    flatten_on_daily_loss: bool = False
    # rebalance trims a position only when it exceeds max_position_size_pct by more than this
    # fraction of the cap (an entry filled a little above its sizing estimate is left alone).
    rebalance_tolerance_pct: float = Field(0.05, ge=0, le=1)
    halt_on_backup_data: bool = True
    # A flatten or trim waits for the broker to confirm the cancel of the exits holding the shares
    # before it sells; after this long unconfirmed: CRITICAL alert, cancel asked again, reconcile.
    cancel_confirm_timeout_s: float = Field(10.0, gt=0)
    # Pattern-day-trader rule (rules.pdt_rule_factory), fed by a broker that reports the account's
    # day-trade count (Alpaca): below pdt_min_equity, no entry once pdt_max_day_trades is reached.
    pdt_check: bool = True
    pdt_max_day_trades: int = Field(3, ge=0)
    pdt_min_equity: float = Field(25_000.0, ge=0)


class FeedConfig(_Strict):
    """The paper-mode feed: a bars file replayed at `speed` x real time (60 = a minute a second)."""

    bars: str | None = None
    speed: float = Field(1.0, gt=0)


class OpsConfig(_Strict):
    """The operating surface of `run`: one HTTP server (health, metrics, status, controls)."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    token_env: str = "TRADING_CONTROL_TOKEN"
    feed_stale_after_s: float = Field(120.0, gt=0)
    heartbeat_allowance_s: float = Field(30.0, gt=0)
    alert_repeat_s: float = Field(600.0, gt=0)  # an unhealthy component pages again at most this often
    max_body_bytes: int = Field(4096, ge=64)
    request_timeout_s: float = Field(5.0, gt=0)
    max_connections: int = Field(128, ge=1)
    # An accepted control command is answered only once its journal event is committed durably;
    # past this bound it is answered 503 (applied, not yet durable) with a CRITICAL alert.
    command_commit_timeout_s: float = Field(5.0, gt=0)


class PolygonConfig(_Strict):
    """Polygon (massive) market data: REST for premarket bars, previous closes and backfills, the
    websocket for live minute aggregates. The API key comes only from POLYGON_API_KEY (or
    MASSIVE_API_KEY). Endpoints default to the SDK's own (null)."""

    rest_base_url: str | None = None  # e.g. https://api.massive.com; tests: http://127.0.0.1:PORT
    ws_feed: str | None = None        # host[:port], e.g. socket.massive.com; tests: 127.0.0.1:PORT
    secure: bool = True               # wss:// (false only for a local fake)
    connect_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(10.0, gt=0)
    rest_max_attempts: int = Field(6, ge=1)      # per call, 429/5xx/timeouts included
    rest_backoff_s: float = Field(0.5, ge=0)     # first wait after a 429/5xx, doubled each time
    rest_backoff_max_s: float = Field(8.0, ge=0)
    rest_retry_after_max_s: float = Field(60.0, ge=0)  # a 429's Retry-After is waited, up to this
    reconnect_backoff_s: float = Field(1.0, ge=0)
    reconnect_backoff_max_s: float = Field(30.0, ge=0)
    stale_after_s: float = Field(90.0, gt=0)     # no aggregate this long in regular hours: stale
    queue_size: int = Field(10_000, ge=1)        # ingress queue (bars); the reader waits when full


class YahooConfig(_Strict):
    """Yahoo (yfinance): degraded backup and daily bars when no Polygon key is set."""

    poll_interval_s: float = Field(30.0, gt=0)   # delayed 1-minute bars are polled this often
    timeout_s: float = Field(10.0, gt=0)
    cache_dir: str | None = None                 # yfinance caches (null: a temporary folder)
    queue_size: int = Field(10_000, ge=1)


class DataFailoverConfig(_Strict):
    """Primary -> backup data when the primary is silent in regular hours or disconnected."""

    disconnect_grace_s: float = Field(5.0, ge=0)  # a reconnect shorter than this is no failover
    failback_after_s: float = Field(120.0, ge=0)  # the primary healthy this long: back to it
    check_interval_s: float = Field(0.5, gt=0)


class AlpacaConfig(_Strict):
    """The Alpaca execution client (live_runner/adapters/alpaca). Keys come only from the
    environment: APCA_API_KEY_ID and APCA_API_SECRET_KEY."""

    paper: bool = True
    # None: the SDK's endpoint for `paper` (paper-api / api.alpaca.markets and their /stream).
    base_url: str | None = None
    stream_url: str | None = None
    # Every REST call is bounded by this (the SDK has no timeout of its own).
    request_timeout_s: float = Field(10.0, gt=0)
    # Open orders and no trade update for this long: their state is read over REST, and a stream
    # that missed something is reconnected.
    stale_after_s: float = Field(15.0, gt=0)
    reconnect_min_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    # After an ambiguous submit: wait this long before looking the order up by client id (twice
    # "not found", this far apart, proves it was not accepted); lookups back off up to the max.
    lookup_settle_s: float = Field(1.0, ge=0)
    lookup_retry_max_s: float = Field(30.0, gt=0)
    # A 429 on submit: looked up, then sent again (same client id) at most this many times.
    rate_limit_resends: int = Field(5, ge=0)
    account_refresh_s: float = Field(60.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"expected an http(s):// URL, got {v!r}")
        return v.rstrip("/") if v else v

    @field_validator("stream_url")
    @classmethod
    def _ws(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^wss?://[^/\s]+", v):
            raise ValueError(f"expected a ws(s):// URL, got {v!r}")
        return v

    @model_validator(mode="after")
    def _paper_matches(self) -> "AlpacaConfig":
        for url in (self.base_url, self.stream_url):
            host = (url or "").split("://", 1)[-1].split("/", 1)[0]
            if self.paper and host in ("api.alpaca.markets",):
                raise ValueError(f"paper is true but {url} is the live endpoint")
            if not self.paper and host.startswith("paper-api."):
                raise ValueError(f"paper is false but {url} is the paper endpoint")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        return self


class JournalConfig(_Strict):
    url: str = "sqlite:///var/journal.db"
    batch_size: int = Field(1000, ge=1)
    connect_timeout_s: float = Field(5.0, gt=0)     # PostgreSQL connect (and pool checkout) timeout
    statement_timeout_s: float = Field(10.0, gt=0)  # PostgreSQL statement_timeout; SQLite busy timeout
    max_queued_batches: int = Field(64, ge=1)       # more batches waiting: unhealthy (REDUCING)
    # The live service's writer: a process (encodes and writes without the runner's GIL: the
    # latency tail, issue 18) or a thread. Replays and backtests use a thread.
    writer: Literal["thread", "process"] = "process"


class LeaseConfig(_Strict):
    """At most one runner per account (live_runner/live/lease.py): a lock in the journal's database,
    renewed every heartbeat_s; a runner that cannot renew for ttl_s stops sending (exit 7)."""

    enabled: bool = True
    # The lease key: the account. Default "<primary_broker>:<session_id_prefix>" (the account id
    # is only known after connecting; the prefix is what marks this runner's client order ids).
    account: str | None = Field(None, min_length=1, max_length=96)
    heartbeat_s: float = Field(2.0, gt=0)
    ttl_s: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> "LeaseConfig":
        if self.ttl_s < 2 * self.heartbeat_s:
            raise ValueError("lease.ttl_s must be at least twice lease.heartbeat_s")
        return self


class SystemConfig(_Strict):
    """The sketch's SystemConfig, plus the sections the design adds."""

    account_size: float = Field(100_000, gt=0)
    max_positions: int = Field(5, ge=1)
    max_daily_loss_pct: float = Field(0.05, gt=0, le=1)
    max_position_size_pct: float = Field(0.20, gt=0, le=1)
    risk_per_trade_pct: float = Field(0.01, gt=0, le=1)
    # Seed key kept for compatibility; only its default is accepted (see _replaced_seed_keys).
    update_frequency_ms: int = Field(1000, ge=1)
    data_retention_days: int = Field(30, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # Logs (live_runner/ops/logs.py): text or JSON lines on stderr and in a per-session file
    # (log_dir/trading_system_YYYYMMDD.log, rotated by size; log_dir null: no file).
    log_format: Literal["text", "json"] = "text"
    log_dir: str | None = "var/logs"
    log_file_max_bytes: int = Field(50 * 1024 * 1024, ge=1024)
    log_file_backups: int = Field(5, ge=0)
    active_strategies: list[str] = Field(default_factory=lambda: list(BUILTIN_STRATEGIES))
    # Seed keys kept for compatibility; only their defaults are accepted: the XNYS calendar
    # (live_runner/core/calendar.py) decides each session's open and close.
    market_open_time: str = "09:30"
    market_close_time: str = "16:00"
    premarket_start: str = "04:00"
    afterhours_end: str = "20:00"
    flatten_time: str = "15:55"
    # On SIGTERM: flatten and close the session (True) or keep positions for a restart (False).
    flatten_on_shutdown: bool = False
    # Shutdown (data end, SIGTERM, after an emergency stop): how long `run` waits for the flatten
    # fills, cancel confirmations and orders in flight before it gives up (CRITICAL, exit 5).
    shutdown_flatten_timeout_s: float = Field(30.0, gt=0)
    primary_broker: Literal["paper", "ibkr", "alpaca"] = "paper"
    backup_broker: Literal["paper", "ibkr", "alpaca"] | None = None
    primary_data_provider: Literal["replay", "polygon", "yahoo"] = "replay"
    backup_data_provider: Literal["replay", "polygon", "yahoo"] | None = None
    universe: list[str] | None = None
    strategies: StrategiesConfig = Field(default_factory=StrategiesConfig)
    paper: PaperConfig = Field(default_factory=PaperConfig)
    ibkr: IbkrConfig = Field(default_factory=IbkrConfig)
    alpaca: AlpacaConfig = Field(default_factory=AlpacaConfig)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    journal: JournalConfig = Field(default_factory=JournalConfig)
    lease: LeaseConfig = Field(default_factory=LeaseConfig)
    feed: FeedConfig = Field(default_factory=FeedConfig)
    ops: OpsConfig = Field(default_factory=OpsConfig)
    polygon: PolygonConfig = Field(default_factory=PolygonConfig)
    yahoo: YahooConfig = Field(default_factory=YahooConfig)
    data_failover: DataFailoverConfig = Field(default_factory=DataFailoverConfig)
    session_id_prefix: str = Field("LR", pattern=r"^[A-Za-z0-9]{1,8}$")

    @field_validator("market_open_time", "market_close_time", "premarket_start", "afterhours_end",
                     "flatten_time")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        return _check_hhmm(v)

    @field_validator("market_open_time", "market_close_time", "update_frequency_ms")
    @classmethod
    def _replaced_seed_keys(cls, v: Any, info: Any) -> Any:
        """The seed config's keys that something else now decides: a value other than the default
        would silently do nothing, so it is refused with what replaced it."""
        default = cls.model_fields[info.field_name].default
        same = (hhmm(_check_hhmm(v)) == hhmm(default)) if isinstance(default, str) else v == default
        if not same:
            raise ValueError(f"{info.field_name} can only be {default!r}: "
                             + _REPLACED_SEED_KEYS[info.field_name] + "; remove the key")
        return v

    @field_validator("active_strategies")
    @classmethod
    def _strategies(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one strategy must be active")
        if len(set(v)) != len(v):
            raise ValueError("a strategy is listed twice")
        for name in v:
            if name not in BUILTIN_STRATEGIES and not re.fullmatch(
                r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", name
            ):
                raise ValueError(
                    f"unknown strategy {name!r}: use one of {', '.join(BUILTIN_STRATEGIES)} "
                    "or an import path 'package.module:ClassName'"
                )
        return v

    @field_validator("universe")
    @classmethod
    def _universe(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        for sym in v:
            if not re.fullmatch(r"[A-Z][A-Z0-9.\-]{0,9}", sym):
                raise ValueError(f"bad symbol {sym!r} in universe")
        return sorted(set(v))


# What decides instead of each seed key that is accepted only at its default.
_REPLACED_SEED_KEYS = {
    "market_open_time": "the XNYS market calendar decides each session's open (09:30 New York)",
    "market_close_time": ("the XNYS market calendar decides each session's close (16:00, 13:00 on "
                          "early-close days); to stop entering earlier, set the strategies' entry_end, "
                          "to flatten earlier, set flatten_time"),
    "update_frequency_ms": ("the runner is event-driven: it acts on every bar as it arrives, with "
                            "no polling interval"),
}


class ConfigError(ValueError):
    """A configuration problem, with the offending key spelled out."""


def hhmm(v: str) -> tuple[int, int]:
    h, m = v.split(":")
    return int(h), int(m)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any] | None, source: str = "config") -> SystemConfig:
    """Validate a mapping; raise ConfigError naming each bad key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return SystemConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> SystemConfig:
    """Read a YAML file (or the defaults when path is None) and apply top-level overrides."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{source}: the top level must be a mapping")
        data = dict(loaded or {})
    if overrides:
        data.update(overrides)
    return parse_config(data, source)


def secret(name: str, environ: dict[str, str] | None = None) -> str | None:
    """Credentials come only from the environment (or a mounted Kubernetes Secret as env)."""
    env = os.environ if environ is None else environ
    value = env.get(name)
    return value or None
