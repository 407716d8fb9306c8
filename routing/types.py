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
    """The parts of a client request that routing looks at.

    A session (one Claude Code process) holds several conversations, each with its own
    prompt cache: the main one (`conversation` None) and one per subagent. `conversation`
    is the subagent's `x-claude-code-agent-id`, or for clients that do not send it, a
    digest of what identifies the subagent's conversation (see `routing.request_info`).
    """

    path: str
    model: str | None = None
    stream: bool = False
    session_id: str | None = None
    conversation: str | None = None
    agent_id: str | None = None
    parent_agent_id: str | None = None
    background: bool = False  # `x-app: cli-bg`: a background task of Claude Code
    # Who may serve it (routing.rules): the client's `x-teamclaude-account` pin, and the
    # accounts of the `model_routes` rule (`route_rule`) its model matches. None: anyone.
    pin: str | None = None
    allowed: frozenset[str] | None = None
    route_rule: str | None = None

    @property
    def is_inference(self) -> bool:
        return self.path == "/v1/messages" or self.path.startswith("/v1/messages/")

    def allows(self, account: str) -> bool:
        return (self.pin is None or account == self.pin) and (self.allowed is None or account in self.allowed)

    @property
    def restricted(self) -> bool:
        return self.pin is not None or self.allowed is not None

    def restriction(self) -> str:
        """Why only some accounts may serve it, in words for the decision's detail."""
        if self.pin is not None:
            return "pinned by the client (x-teamclaude-account)"
        return f"model_routes '{self.route_rule}'"

    @property
    def conversation_key(self) -> str | None:
        """The key a binding is kept under: the session, and the conversation within it."""
        if self.session_id is None:
            return None
        if self.conversation is None:
            return self.session_id
        return f"{self.session_id}\x1f{self.conversation}"  # ids are printable: no clash


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
