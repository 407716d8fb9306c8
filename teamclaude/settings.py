"""The settings file (behaviour §2): human-edited YAML, validated with line-accurate errors.

The program never rewrites this file (comments survive); it only creates it once from
`config.example.yaml`, which ships inside the package so `pip install .` carries it.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from routing.config import RoutingConfig
from routing.rules import ModelRules, parse_blocked, parse_routes
from teamclaude.atomic import atomic_write
from teamclaude import yamlsafe
from teamclaude.gate import TELEMETRY_MODES, TelemetryMode
from teamclaude.paths import config_path, default_state_path, display_path
from teamclaude.urls import http_url

DEFAULT_OAUTH_TOKEN_URL = "https://platform.claude.com/v1/oauth/token"
DEFAULT_OAUTH_AUTHORIZE_URL = "https://claude.ai/oauth/authorize"
DEFAULT_OAUTH_PROFILE_URL = "https://api.anthropic.com/api/oauth/profile"

# Claude Code's HTTP client gives up on a request after 600 s (it sends
# `x-stainless-timeout: 600`); a held request keeps a minute of that for its answer. At run
# time the budget is also kept inside mitmproxy's idle cut (`tcp_timeout`, see pool.py).
HOLD_BUDGET_LIMIT_S = 540.0
# Claude Code gives up on a 429 whose retry-after is above 60 s.
CLIENT_RETRY_AFTER_LIMIT_S = 60

FailoverMode = Literal["transparent", "client"]


# The routing keys take their defaults from the engine's own config (one place for each value).
_ROUTING = RoutingConfig()


@dataclass(frozen=True)
class Settings:
    """Every settings key with its default. `path` is the file the values came from."""

    path: Path
    accounts_file: Path
    state_file: Path
    listen_host: str = "127.0.0.1"
    port: int = 3456
    upstream: str = "https://api.anthropic.com"
    switch_threshold: float = _ROUTING.switch_threshold
    five_hour_soft_ceiling: float = _ROUTING.five_hour_soft_ceiling
    five_hour_warn: float = _ROUTING.five_hour_warn
    pace_tie_band: float = _ROUTING.pace_tie_band
    far_over_line: float = _ROUTING.far_over_line
    warm_window_s: float = _ROUTING.warm_window_s
    binding_evict_s: float = _ROUTING.binding_evict_s
    max_inflight_per_account: int = _ROUTING.max_inflight_per_account
    max_sessions_per_account: int = _ROUTING.max_sessions_per_account
    probe_gate: bool = _ROUTING.probe_gate
    ramp_tiers: tuple[tuple[float, float], ...] = _ROUTING.ramp_tiers
    backoff_ladder_s: tuple[float, ...] = _ROUTING.backoff_ladder_s
    hold_budget_s: float = 300.0
    hold_poll_s: float = 5.0
    client_retry_after_max_s: int = 59
    upstream_timeout_s: float = 120.0
    refresh_skew_s: float = 300.0
    failover: FailoverMode = "transparent"
    api_keys_last_resort: bool = _ROUTING.api_keys_last_resort
    log_dir: Path | None = None
    log_bodies: bool = False
    telemetry: TelemetryMode = "pass"
    pool_headers: bool = False
    blocked_models: tuple[str, ...] = ()
    model_routes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    oauth_token_url: str = DEFAULT_OAUTH_TOKEN_URL
    oauth_authorize_url: str = DEFAULT_OAUTH_AUTHORIZE_URL
    oauth_profile_url: str = DEFAULT_OAUTH_PROFILE_URL
    # redis:// or rediss:// URL of the Redis a team's proxies share (docs/deploy.md); None:
    # this proxy alone, with its files.
    shared_state: str | None = None

    @classmethod
    def defaults(cls, path: Path | None = None, **overrides: Any) -> Settings:
        """Defaults for a settings file at `path` (accounts.yaml beside it), with overrides."""
        path = Path(path) if path is not None else config_path()
        values: dict[str, Any] = {
            "accounts_file": path.parent / "accounts.yaml",
            "state_file": default_state_path(),
        }
        values.update(overrides)
        return cls(path=path, **values)

    def routing_config(self) -> RoutingConfig:
        names = {f.name for f in dataclasses.fields(RoutingConfig)}
        return RoutingConfig(**{name: getattr(self, name) for name in names})

    def model_rules(self) -> ModelRules:
        return ModelRules(self.blocked_models, self.model_routes)

    @property
    def listen_url(self) -> str:
        return http_url(self.listen_host, self.port)


# Keys a person may write in config.yaml, in the order of the dataclass.
SETTINGS_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Settings) if f.name != "path")


class SettingsError(ValueError):
    """A bad settings file. `str()` is one line naming the file, the line and the key."""

    def __init__(self, message: str) -> None:
        super().__init__(yamlsafe.printable(message))


class _Invalid(Exception):
    """A value failed validation; the message names the key, the value and what is allowed."""


def load_settings(path: Path | None = None, *, create: bool = False) -> Settings:
    """Read and validate the settings file; a missing or empty file means all defaults.

    With `create=True` a missing file is first created from the bundled example (every key
    commented out), so the person has a documented file to edit.
    """
    path = Path(path) if path is not None else config_path()
    if not path.exists():
        if create:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(path, example_config_text().encode("utf-8"), mode=0o644)
        else:
            return Settings.defaults(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{display_path(path)}: cannot read the settings file: {exc}") from None
    return parse_settings(text, path)


def example_config_text() -> str:
    """The commented example settings file shipped with the package."""
    return resources.files("teamclaude").joinpath("config.example.yaml").read_text(encoding="utf-8")


def parse_settings(text: str, path: Path) -> Settings:
    """Validate settings YAML `text` as if it were the file at `path`."""
    where = display_path(path)
    try:
        root = yamlsafe.compose(text)
    except yamlsafe.PlainYamlError as exc:
        at = f"line {exc.line}: " if exc.line else ""
        raise SettingsError(f"{where} {at}{exc.problem}") from None
    if root is None:
        return Settings.defaults(path)
    if not isinstance(root, yaml.MappingNode):
        raise SettingsError(
            f"{where} line {root.start_mark.line + 1}: expected 'key: value' lines at the top level"
        )

    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for key_node, value_node in root.value:
        line = key_node.start_mark.line + 1
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "<complex key>"
        _check_key(key, line, lines, where)
        lines[key] = line
        try:
            values[key] = _convert(key, yamlsafe.construct(value_node), path)
        except (_Invalid, yamlsafe.PlainYamlError) as exc:
            raise SettingsError(f"{where} line {line}: {exc}") from None

    _check_cross_keys(values, lines, where)
    return Settings.defaults(path, **values)


def _check_key(key: str, line: int, seen: dict[str, int], where: str) -> None:
    if key == "proxy_key":
        raise SettingsError(
            f"{where} line {line}: 'proxy_key' is not set here: it lives in accounts.yaml "
            "(generated on first run, shown by 'teamclaude env'); remove this line"
        )
    if key not in SETTINGS_KEYS:
        close = difflib.get_close_matches(key, SETTINGS_KEYS, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else " (see config.example.yaml for every key)"
        raise SettingsError(f"{where} line {line}: unknown key '{key}'{hint}")
    if key in seen:
        raise SettingsError(f"{where} line {line}: '{key}' is set twice (also on line {seen[key]})")


def _check_cross_keys(values: dict[str, Any], lines: dict[str, int], where: str) -> None:
    defaults = Settings.defaults(Path("config.yaml"))
    warm = values.get("warm_window_s", defaults.warm_window_s)
    evict = values.get("binding_evict_s", defaults.binding_evict_s)
    if evict < warm:
        key = "binding_evict_s" if "binding_evict_s" in lines else "warm_window_s"
        raise SettingsError(
            f"{where} line {lines[key]}: 'binding_evict_s' ({_show(evict)}) must be at least "
            f"'warm_window_s' ({_show(warm)}), or warm sessions lose their account"
        )


def _show(value: Any) -> str:
    if isinstance(value, str):
        text = f"'{value}'"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "nothing"
    elif isinstance(value, float):
        text = _fmt(value)
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---- value converters: each takes the YAML value and returns the Settings value ----


def _integer(lo: int, hi: int, why: str = "") -> Callable[[str, Any, Path], int]:
    def convert(key: str, value: Any, _: Path) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise _Invalid(f"'{key}' must be an integer {lo}-{hi}{why}, got {_show(value)}")
        return value

    return convert


def _number(lo: float, hi: float | None = None, *, lo_open: bool = False,
            why: str = "") -> Callable[[str, Any, Path], float]:
    low = f"above {_fmt(lo)}" if lo_open else f"at least {_fmt(lo)}"
    allowed = low if hi is None else f"{low} and at most {_fmt(hi)}"

    def convert(key: str, value: Any, _: Path) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            number = float(value)
            ok = (number > lo if lo_open else number >= lo) and (
                hi is None or number <= hi
            )
        if not ok:
            raise _Invalid(f"'{key}' must be a number {allowed}{why}, got {_show(value)}")
        return float(value)

    return convert


def _fmt(number: float) -> str:
    return f"{number:g}"


def _fraction(*, zero_ok: bool) -> Callable[[str, Any, Path], float]:
    return _number(0.0, 1.0, lo_open=not zero_ok, why=" (a fraction: 0.9 means 90%)")


def _boolean(key: str, value: Any, _: Path) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"'{key}' must be true or false, got {_show(value)}")
    return value


def _host(key: str, value: Any, _: Path) -> str:
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise _Invalid(f"'{key}' must be a host name or IP address like 127.0.0.1, got {_show(value)}")
    return value


def _url(key: str, value: Any, _: Path) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Invalid(f"'{key}' must be an http:// or https:// URL, got {_show(value)}")
    return value.rstrip("/")


def _redis_url(key: str, value: Any, _: Path) -> str | None:
    """A redis:// or rediss:// URL whose options redis-py takes; an error never shows a secret
    it may hold."""
    if value is None:
        return None
    import redis  # here: only a pool sharing its state pays for the import

    from teamclaude.shared.connection import display_url

    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("redis", "rediss") or not parts.hostname:
        shown = _show(value) if parts is None else _show(display_url(value))
        raise _Invalid(f"'{key}' must be a URL like redis://[user:password@]host:6379/0 or rediss://..., got {shown}")
    try:
        parts.port  # noqa: B018 (raises on a malformed port)
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise ValueError
    except ValueError:
        raise _Invalid(f"'{key}': the port and database of {parts.scheme}://{parts.hostname}... must be numbers") from None
    try:  # builds the connection's options (no connection is made): an unknown option fails here
        redis.ConnectionPool.from_url(value).make_connection()
    except (TypeError, ValueError) as exc:
        why = str(exc).replace("AbstractConnection.__init__() got an ", "")
        raise _Invalid(f"'{key}': {parts.scheme}://{parts.hostname}...: an option of the URL is not accepted "
                       f"by the Redis client ({why})") from None
    return value


def _path(key: str, value: Any, settings_path: Path) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"'{key}' must be a file or directory path, got {_show(value)}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else settings_path.parent / path


def _optional_path(key: str, value: Any, settings_path: Path) -> Path | None:
    return None if value is None else _path(key, value, settings_path)


def _rule(parse: Callable[[Any], Any]) -> Callable[[str, Any, Path], Any]:
    """`blocked_models` / `model_routes`: validated by `routing.rules`."""
    def convert(key: str, value: Any, _: Path) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            raise _Invalid(str(exc)) from None
    return convert


def _failover(key: str, value: Any, _: Path) -> str:
    if value not in ("transparent", "client"):
        raise _Invalid(f"'{key}' must be 'transparent' or 'client', got {_show(value)}")
    return value


def _telemetry(key: str, value: Any, _: Path) -> str:
    if value not in TELEMETRY_MODES:
        raise _Invalid(f"'{key}' must be one of {', '.join(TELEMETRY_MODES)}, got {_show(value)}")
    return value


def _ramp_tiers(key: str, value: Any, _: Path) -> tuple[tuple[float, float], ...]:
    """`{8h: 100, 16h: 8}` -> ((8.0, 100.0), (16.0, 8.0)); hours may also be `2d` or a number."""
    if value is None or value == {}:
        return ()
    if not isinstance(value, dict):
        raise _Invalid(f"'{key}' must be a mapping of hours to weights like {{8h: 100, 16h: 8}}, got {_show(value)}")
    tiers: dict[float, float] = {}
    for bound, weight in value.items():
        hours = _hours(bound)
        if hours is None:
            raise _Invalid(f"'{key}' has the bound {_show(bound)}; write hours like 8h, 1.5h or 2d")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise _Invalid(f"'{key}' weight for {_show(bound)} must be a number at least 0, got {_show(weight)}")
        if hours in tiers:
            raise _Invalid(f"'{key}' lists {_fmt(hours)}h twice")
        tiers[hours] = float(weight)
    return tuple(sorted(tiers.items()))


def _hours(bound: Any) -> float | None:
    if isinstance(bound, bool):
        return None
    if isinstance(bound, (int, float)):
        number, unit = float(bound), 1.0
    elif isinstance(bound, str) and bound[-1:] in ("h", "d"):
        try:
            number = float(bound[:-1])
        except ValueError:
            return None
        unit = 24.0 if bound.endswith("d") else 1.0
    else:
        return None
    return number * unit if number > 0 else None


def _backoff_ladder(key: str, value: Any, _: Path) -> tuple[float, ...]:
    steps = value if isinstance(value, list) else None
    if not steps or any(isinstance(s, bool) or not isinstance(s, (int, float)) or s <= 0 for s in steps):
        raise _Invalid(f"'{key}' must be a list of positive seconds like [60, 240, 900], got {_show(value)}")
    return tuple(float(s) for s in steps)


_HOLD_WHY = " (Claude Code gives up on a request after 600 s)"

_CONVERTERS: dict[str, Callable[[str, Any, Path], Any]] = {
    "accounts_file": _path,
    "state_file": _path,
    "listen_host": _host,
    "port": _integer(0, 65535, " (0 picks a free port)"),
    "upstream": _url,
    "switch_threshold": _fraction(zero_ok=False),
    "five_hour_soft_ceiling": _fraction(zero_ok=False),
    "five_hour_warn": _fraction(zero_ok=False),
    "pace_tie_band": _fraction(zero_ok=True),
    "far_over_line": _fraction(zero_ok=True),
    "warm_window_s": _number(0.0, lo_open=True),
    "binding_evict_s": _number(0.0, lo_open=True),
    "max_inflight_per_account": _integer(1, 1000),
    "max_sessions_per_account": _integer(1, 1000),
    "probe_gate": _boolean,
    "ramp_tiers": _ramp_tiers,
    "backoff_ladder_s": _backoff_ladder,
    "hold_budget_s": _number(0.0, HOLD_BUDGET_LIMIT_S, why=_HOLD_WHY),
    "hold_poll_s": _number(0.0, lo_open=True),
    "client_retry_after_max_s": _integer(
        1, CLIENT_RETRY_AFTER_LIMIT_S, " (Claude Code gives up on a longer retry-after)"
    ),
    "upstream_timeout_s": _number(0.0, lo_open=True),
    "refresh_skew_s": _number(0.0),
    "failover": _failover,
    "api_keys_last_resort": _boolean,
    "log_dir": _optional_path,
    "log_bodies": _boolean,
    "telemetry": _telemetry,
    "pool_headers": _boolean,
    "blocked_models": _rule(parse_blocked),
    "model_routes": _rule(parse_routes),
    "oauth_token_url": _url,
    "oauth_authorize_url": _url,
    "oauth_profile_url": _url,
    "shared_state": _redis_url,
}

_NULLABLE = {"log_dir", "ramp_tiers", "shared_state"}


def _convert(key: str, value: Any, settings_path: Path) -> Any:
    if value is None and key not in _NULLABLE:
        default = getattr(Settings.defaults(settings_path), key)
        raise _Invalid(f"'{key}' has no value; give one or remove the line to use the default ({_show(default)})")
    return _CONVERTERS[key](key, value, settings_path)
