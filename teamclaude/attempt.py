"""What the addon remembers about one pooled request between hooks, and how it is shown."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from routing.failures import Verdict
from routing.types import Decision, RequestInfo
from teamclaude.usage_tap import UsageTap

FAILOVER_MARK = ":arrows_counterclockwise:"
HOLD_MARK = ":hourglass_flowing_sand:"


@dataclass
class Attempt:
    request: RequestInfo
    started: float
    decision: Decision | None = None
    tap: UsageTap | None = None
    verdict: Verdict | None = None
    tried: set[str] = field(default_factory=set)
    # Accounts that cannot serve this request even after waiting (403, dead token, broken
    # connection). Throttled ones are only in `tried`: a hold may use them once benches end.
    refused: set[str] = field(default_factory=set)
    history: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    refreshed: bool = False
    held_s: float = 0.0
    header_timer: asyncio.TimerHandle | None = None
    last_account: str | None = None
    # The account whose credential is in the flow's request headers now (redacted at the end).
    rewritten_for: str | None = None
    # A Messages body as the client sent it (decoded, after the tool-block repair): each
    # attempt's body is made from it for that attempt's account. None: the body is not touched.
    client_body: bytes | None = None
    # The account whose UUID is in the body's `metadata.user_id` now.
    user_id_for: str | None = None
    # With `pool_headers`: the unified rate-limit headers the serving account sent.
    account_ratelimit: dict[str, str] | None = None

    def choose(self, decision: Decision) -> None:
        self.decision = decision
        self.last_account = decision.account
        self.refreshed = False

    def fail(self, status: int | None, reason: str, *, throttled: bool) -> None:
        """Record the current account's failed answer; it is not tried again in this request
        unless it was only throttled and the request ends up held."""
        account = self.decision.account if self.decision else self.last_account
        self.history.append({"account": account, "status": status, "reason": reason})
        if account:
            self.tried.add(account)
            if not throttled:
                self.refused.add(account)

    def metadata(self, outcome: dict[str, Any] | None = None) -> dict[str, Any]:
        decision = self.decision
        meta: dict[str, Any] = {
            "kind": "pooled",
            "account": decision.account if decision else None,
            "reason": decision.reason if decision else None,
            "detail": decision.detail if decision else None,
            "session": self.request.session_id,
            "model": self.request.model,
            "stream": self.request.stream,
        }
        if self.history:
            meta["failed_attempts"] = list(self.history)
        if self.held_s:
            meta["held_s"] = round(self.held_s, 3)
        if self.notes:
            meta["notes"] = list(self.notes)
        if self.user_id_for:
            meta["user_id_for"] = self.user_id_for
        if self.account_ratelimit:
            meta["account_ratelimit"] = dict(self.account_ratelimit)
        if outcome:
            meta["outcome"] = outcome
        return meta

    def comment(self, outcome: dict[str, Any] | None = None) -> str:
        decision = self.decision
        parts = []
        for failed in self.history:
            parts.append(f"{failed['account']} {failed['status'] or 'failed'} ({failed['reason']}) ⇒")
        if self.held_s >= 0.5:
            parts.append(f"held {self.held_s:.0f}s ⇒")
        if decision is not None:
            parts.append(f"{decision.account} · {decision.reason}: {decision.detail}")
        else:
            parts.append("no account could serve")
        text = " ".join(parts)
        if outcome:
            text += f" → {outcome.get('status')}"
            if outcome.get("tokens"):
                text += f" · {outcome['tokens']} tok"
        return text

    def mark(self) -> str:
        if self.history:
            return FAILOVER_MARK
        if self.held_s >= 0.5:
            return HOLD_MARK
        return ""
