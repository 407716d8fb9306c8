"""Values that cross the boundary between the addon and the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AccountKind = Literal["oauth", "apikey"]


@dataclass(frozen=True)
class AccountSpec:
    """What the engine needs to know about a configured account (never its secrets)."""

    name: str
    kind: AccountKind
    priority: int = 0
    disabled: bool = False
    email: str | None = None  # shown in the state file; not a secret
    plan: str | None = None


@dataclass(frozen=True)
class RequestInfo:
    """The parts of a client request that routing looks at."""

    path: str
    model: str | None = None
    stream: bool = False
    session_id: str | None = None

    @property
    def is_inference(self) -> bool:
        return self.path == "/v1/messages" or self.path.startswith("/v1/messages/")


@dataclass(frozen=True)
class Decision:
    """The engine's answer for one request: which account, and why.

    `ticket` identifies the in-flight slot the selection reserved; it is handed back to
    `Router.release` exactly once.
    """

    account: str
    reason: str
    detail: str
    session_id: str | None
    ticket: int
