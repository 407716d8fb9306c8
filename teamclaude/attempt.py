"""What the addon remembers about one pooled request between hooks, and how it is shown."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from routing.lifecycle import Exchange, Outcome, Step
from teamclaude.usage_tap import UsageTap

FAILOVER_MARK = ":arrows_counterclockwise:"
HOLD_MARK = ":hourglass_flowing_sand:"


@dataclass(kw_only=True)
class Attempt(Exchange):
    """The lifecycle's record of the request (`routing.lifecycle.Exchange`: decision, verdict,
    tried, refused, history, notes, held_s) and what only the proxy needs besides."""

    started: float
    # The request's lifecycle (`routing.lifecycle.exchange`) and the step it asked for last.
    lifecycle: Generator[Step, Outcome, None] | None = None
    step: Step | None = None
    tap: UsageTap | None = None
    header_timer: asyncio.TimerHandle | None = None
    # The account whose credential is in the flow's request headers now (redacted at the end).
    rewritten_for: str | None = None
    # A Messages body as the client sent it (decoded, after the tool-block repair): each
    # attempt's body is made from it for that attempt's account. None: the body is not touched.
    client_body: bytes | None = None
    # The account whose UUID is in the body's `metadata.user_id` now.
    user_id_for: str | None = None
    # With `pool_headers`: the unified rate-limit headers the serving account sent.
    account_ratelimit: dict[str, str] | None = None
    # The client key's name (`teamclaude keys`); None for the proxy key.
    client: str | None = None

    def advance(self, outcome: Outcome) -> Step:
        """Tell the lifecycle what happened; the next step is kept and returned."""
        assert self.lifecycle is not None
        self.step = self.lifecycle.send(outcome)
        return self.step

    def metadata(self, outcome: dict[str, Any] | None = None) -> dict[str, Any]:
        decision = self.decision
        meta: dict[str, Any] = {
            "kind": "pooled",
            "account": decision.account if decision else None,
            "client": self.client,
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
        if self.client is not None:
            text = f"[{self.client}] {text}"
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
