"""A typed, tolerant view of the state file (docs/state-file.md, version 1).

The producer may leave any value `null` and may add fields: every accessor here falls back
to a neutral default instead of raising, so one odd value never blanks the whole Deck.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

SUPPORTED_VERSION = 1


def _num(value: Any, default: float | None = None) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    try:
        number = float(value)
    except OverflowError:  # an integer too big for a float
        return default
    return number if math.isfinite(number) else default  # JSON allows NaN and Infinity


def _int(value: Any, default: int = 0) -> int:
    number = _num(value)
    return int(number) if number is not None else default


def _opt_int(value: Any) -> int | None:
    number = _num(value)
    return int(number) if number is not None else None


def _str(value: Any, default: str = "") -> str:
    """A string of the state file, to display: control characters become spaces, so a model
    name or note a client chose cannot send escape sequences to the terminal."""
    if not isinstance(value, str):
        return default
    return value if value.isprintable() else "".join(char if char.isprintable() else " " for char in value)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


@dataclass(frozen=True)
class Usage:
    tokens: int = 0
    cost_usd: float = 0.0
    requests: int = 0

    @classmethod
    def parse(cls, raw: Any) -> Usage:
        data = _dict(raw)
        return cls(
            tokens=_int(data.get("tokens")),
            cost_usd=_num(data.get("cost_usd"), 0.0) or 0.0,
            requests=_int(data.get("requests")),
        )


@dataclass(frozen=True)
class Window:
    utilization: float | None
    reset: float | None
    status: str

    @classmethod
    def parse(cls, raw: Any) -> Window:
        data = _dict(raw)
        return cls(_num(data.get("utilization")), _num(data.get("reset")), _str(data.get("status")))


@dataclass(frozen=True)
class Account:
    name: str
    kind: str = ""
    plan: str = ""
    status: str = "unknown"
    windows: dict[str, Window] = field(default_factory=dict)
    pace_line: float | None = None
    pace_gap: float | None = None
    inflight: int = 0
    bench_until: float | None = None
    bench_reason: str = ""
    needs_login: bool = False
    token_unsaved: str = ""  # why a received token pair is not in the accounts file yet
    refresh_error: str = ""  # why refreshing its token fails (not a login problem)
    usage: Usage = Usage()

    @classmethod
    def parse(cls, raw: Any) -> Account | None:
        data = _dict(raw)
        name = _str(data.get("name"))
        if not name:
            return None
        windows = {
            key: Window.parse(value)
            for key, value in _dict(data.get("windows")).items()
            if isinstance(value, dict)
        }
        unsaved = data.get("token_unsaved")
        return cls(
            name=name,
            kind=_str(data.get("kind")),
            plan=_str(data.get("plan")),
            status=_str(data.get("status"), "unknown") or "unknown",
            windows=windows,
            pace_line=_num(data.get("pace_line")),
            pace_gap=_num(data.get("pace_gap")),
            inflight=_int(data.get("inflight")),
            bench_until=_num(data.get("bench_until")),
            bench_reason=_str(data.get("bench_reason")),
            needs_login=data.get("needs_login") is True,
            token_unsaved=_str(unsaved.get("error"), "not written") if isinstance(unsaved, dict) else "",
            refresh_error=_str(data.get("token_refresh_error")),
            usage=Usage.parse(data.get("usage")),
        )


@dataclass(frozen=True)
class Agent:
    """A subagent conversation of a session, as the proxy saw it in traffic (the
    `conversations` of a session entry whose `conversation` is set)."""

    id: str  # x-claude-code-agent-id, or "d-…" for a marked subagent without the header
    parent: str = ""  # x-claude-code-parent-agent-id of a nested subagent
    account: str = ""
    background: bool = False
    last_used: float | None = None
    warm: bool = False
    inflight: int = 0
    requests: int = 0
    model: str = ""
    usage: Usage = Usage()

    @classmethod
    def parse(cls, raw: Any) -> Agent | None:
        data = _dict(raw)
        conversation = _str(data.get("conversation"))
        if not conversation:
            return None
        return cls(
            id=conversation,
            parent=_str(data.get("parent_agent_id")),
            account=_str(data.get("account")),
            background=data.get("background") is True,
            last_used=_num(data.get("last_used")),
            warm=data.get("warm") is True,
            inflight=_int(data.get("inflight")),
            requests=_int(data.get("requests")),
            model=_str(data.get("model")),
            usage=Usage.parse(data.get("usage")),
        )


@dataclass(frozen=True)
class Session:
    id: str
    account: str = ""
    bound_at: float | None = None
    last_used: float | None = None
    warm: bool = False
    inflight: int = 0
    requests: int = 0
    model: str = ""
    usage: Usage = Usage()  # the whole session: its main conversation and every agent
    background: bool = False  # its main conversation came with `x-app: cli-bg`
    agents: tuple[Agent, ...] = ()

    @classmethod
    def parse(cls, raw: Any) -> Session | None:
        data = _dict(raw)
        sid = _str(data.get("id"))
        if not sid:
            return None
        conversations = [_dict(entry) for entry in _list(data.get("conversations"))]
        main = next((entry for entry in conversations if entry.get("conversation") is None), None)
        if main is None and data.get("conversation") is None:
            main = data
        return cls(
            id=sid,
            account=_str(data.get("account")),
            bound_at=_num(data.get("bound_at")),
            last_used=_num(data.get("last_used")),
            warm=data.get("warm") is True,
            inflight=_int(data.get("inflight")),
            requests=_int(data.get("requests")),
            model=_str(data.get("model")),
            usage=Usage.parse(data.get("usage")),
            background=main is not None and main.get("background") is True,
            agents=tuple(agent for agent in map(Agent.parse, conversations) if agent is not None),
        )


@dataclass(frozen=True)
class Capacity:
    verdict: str = "unknown"
    headroom: int | None = None
    live_accounts: int | None = None
    benched: int | None = None
    total: int | None = None
    soonest_reset_sec: float | None = None
    at: float | None = None
    held: int = 0
    held_oldest_sec: float | None = None
    held_next_wake_sec: float | None = None

    @classmethod
    def parse(cls, raw: Any) -> Capacity:
        data = _dict(raw)
        return cls(
            verdict=_str(data.get("verdict"), "unknown") or "unknown",
            headroom=_opt_int(data.get("headroom")),
            live_accounts=_opt_int(data.get("liveAccounts")),
            benched=_opt_int(data.get("benched")),
            total=_opt_int(data.get("total")),
            soonest_reset_sec=_num(data.get("soonestResetSec")),
            at=_num(data.get("at")),
            held=_int(data.get("held")),
            held_oldest_sec=_num(data.get("heldOldestSec")),
            held_next_wake_sec=_num(data.get("heldNextWakeSec")),
        )


@dataclass(frozen=True)
class ActivityLine:
    t: float
    method: str = ""
    path: str = ""
    account: str = ""
    session: str = ""
    status: int | None = None
    duration_ms: float | None = None
    reason: str = ""
    level: str = "info"
    note: str = ""

    @classmethod
    def parse(cls, raw: Any) -> ActivityLine | None:
        data = _dict(raw)
        t = _num(data.get("t"))
        if t is None:
            return None
        status = _num(data.get("status"))
        return cls(
            t=t,
            method=_str(data.get("method")),
            path=_str(data.get("path")),
            account=_str(data.get("account")),
            session=_str(data.get("session")),
            status=int(status) if status is not None else None,
            duration_ms=_num(data.get("duration_ms")),
            reason=_str(data.get("reason")),
            level=_str(data.get("level"), "info") or "info",
            note=_str(data.get("note")),
        )


@dataclass(frozen=True)
class Client:
    """A client key's counts since the proxy started (`teamclaude keys`)."""

    name: str
    max_concurrent: int | None = None
    in_flight: int = 0
    requests: int = 0
    refused: int = 0
    tokens: int = 0
    cost_usd: float = 0.0

    @classmethod
    def parse(cls, raw: Any) -> Client | None:
        data = _dict(raw)
        name = _str(data.get("name"))
        if not name:
            return None
        return cls(
            name=name,
            max_concurrent=_opt_int(data.get("max_concurrent")),
            in_flight=_int(data.get("in_flight")),
            requests=_int(data.get("requests")),
            refused=_int(data.get("refused")),
            tokens=_int(data.get("tokens")),
            cost_usd=_num(data.get("cost_usd"), 0.0) or 0.0,
        )


@dataclass(frozen=True)
class Proxy:
    listen: str = ""
    version: str = ""
    accounts_file: str = ""
    config_error: str = ""

    @classmethod
    def parse(cls, raw: Any) -> Proxy:
        data = _dict(raw)
        return cls(
            listen=_str(data.get("listen")),
            version=_str(data.get("version")),
            accounts_file=_str(data.get("accounts_file")),
            config_error=_str(data.get("config_error")),
        )


@dataclass(frozen=True)
class PoolConversation:
    """A warm conversation a proxy of the pool reported (`shared.instances[*].conversations`)."""

    session: str
    conversation: str = ""  # "" for the session's main conversation, else the agent id
    account: str = ""
    inflight: int = 0

    @classmethod
    def parse(cls, raw: Any) -> PoolConversation | None:
        data = _dict(raw)
        session = _str(data.get("session"))
        if not session:
            return None
        return cls(session, _str(data.get("conversation")), _str(data.get("account")), _int(data.get("inflight")))


@dataclass(frozen=True)
class Instance:
    """One proxy of the pool as it last reported itself."""

    id: str
    host: str = ""
    pid: int | None = None
    version: str = ""
    listen: str = ""
    started_at: float | None = None
    seen: float | None = None  # its last heartbeat
    held: int = 0
    inflight: int = 0
    stopped: bool = False  # it stopped reporting
    this: bool = False  # the proxy that wrote this state file
    conversations: tuple[PoolConversation, ...] = ()

    @classmethod
    def parse(cls, raw: Any) -> Instance | None:
        if not isinstance(raw, dict):
            return None
        conversations = map(PoolConversation.parse, _list(raw.get("conversations")))
        return cls(
            id=_str(raw.get("id")),
            host=_str(raw.get("host")),
            pid=_opt_int(raw.get("pid")),
            version=_str(raw.get("version")),
            listen=_str(raw.get("listen")),
            started_at=_num(raw.get("started_at")),
            seen=_num(raw.get("seen")),
            held=_int(raw.get("held")),
            inflight=_int(raw.get("inflight")),
            stopped=raw.get("stopped") is True,
            this=raw.get("this") is True,
            conversations=tuple(c for c in conversations if c is not None),
        )


@dataclass(frozen=True)
class Shared:
    """The pool's shared state (the `shared_state` setting): its health and every proxy."""

    url: str = ""  # password masked by the proxy
    instance: str = ""  # this proxy's id in the pool
    healthy: bool = False
    degraded_since: float | None = None
    error: str = ""
    instances: tuple[Instance, ...] = ()
    usage: dict[str, Usage] = field(default_factory=dict)  # the pool's totals per account

    @classmethod
    def parse(cls, raw: Any) -> Shared | None:
        if not isinstance(raw, dict):
            return None
        return cls(
            url=_str(raw.get("url")),
            instance=_str(raw.get("instance")),
            healthy=raw.get("healthy") is True,
            degraded_since=_num(raw.get("degraded_since")),
            error=_str(raw.get("error")),
            instances=tuple(i for i in map(Instance.parse, _list(raw.get("instances"))) if i is not None),
            usage={_str(name): Usage.parse(value) for name, value in _dict(raw.get("usage")).items()
                   if isinstance(value, dict)},
        )

    @property
    def total(self) -> Usage:
        """The pool's usage across every proxy and account."""
        return Usage(
            tokens=sum(usage.tokens for usage in self.usage.values()),
            cost_usd=sum(usage.cost_usd for usage in self.usage.values()),
            requests=sum(usage.requests for usage in self.usage.values()),
        )

    @property
    def reporting(self) -> tuple[Instance, ...]:
        """The proxies still reporting."""
        return tuple(instance for instance in self.instances if not instance.stopped)

    def tags(self) -> tuple[str, ...]:
        """A short name per proxy (in `instances` order): its host without the domain, with
        `:pid` where several proxies share a host."""
        hosts = [instance.host.split(".", 1)[0] or "?" for instance in self.instances]
        shared_hosts = {host for host, count in Counter(hosts).items() if count > 1}
        return tuple(
            host if host not in shared_hosts else f"{host}:{instance.pid if instance.pid is not None else '?'}"
            for host, instance in zip(hosts, self.instances, strict=True)
        )


@dataclass(frozen=True)
class State:
    seq: int
    written_at: float | None
    proxy: Proxy
    current: str
    pinned: str
    accounts: tuple[Account, ...]
    sessions: tuple[Session, ...]
    capacity: Capacity
    activity: tuple[ActivityLine, ...]
    totals: Usage
    clients: tuple[Client, ...] = ()
    shared: Shared | None = None  # None: this proxy is not part of a shared pool

    def account(self, name: str) -> Account | None:
        return next((account for account in self.accounts if account.name == name), None)


class UnsupportedVersion(ValueError):
    """The file was written by a newer proxy whose format this Deck does not understand."""


def parse_state(raw: Any) -> State:
    """Build a State from the decoded JSON; raise ValueError when it is not a state file."""
    if not isinstance(raw, dict):
        raise ValueError("top level is not a JSON object")
    version = _num(raw.get("version"))
    if version is None:
        raise ValueError("no 'version' field")
    if version > SUPPORTED_VERSION:
        raise UnsupportedVersion(
            f"state file version {int(version)} is newer than this Deck understands "
            f"({SUPPORTED_VERSION}); update teamclaude"
        )
    accounts = tuple(a for a in map(Account.parse, _list(raw.get("accounts"))) if a is not None)
    sessions = tuple(s for s in map(Session.parse, _list(raw.get("sessions"))) if s is not None)
    activity = tuple(
        line for line in map(ActivityLine.parse, _list(raw.get("activity"))) if line is not None
    )
    return State(
        seq=_int(raw.get("seq"), -1),
        written_at=_num(raw.get("written_at")),
        proxy=Proxy.parse(raw.get("proxy")),
        current=_str(raw.get("current")),
        pinned=_str(raw.get("pinned")),
        accounts=accounts,
        sessions=sessions,
        capacity=Capacity.parse(raw.get("capacity")),
        activity=activity,
        totals=Usage.parse(raw.get("totals")),
        clients=tuple(c for c in map(Client.parse, _list(raw.get("clients"))) if c is not None),
        shared=Shared.parse(raw.get("shared")),
    )
