"""Conversation bindings: which account serves a conversation, and which ones are warm.

A binding is kept per conversation (`RequestInfo.conversation_key`): a session's main
conversation and each of its subagents have their own prompt cache, so each has its own
account. A binding is warm while it was used within `warm_window_s` (or has a request in
flight): its prompt cache lives on its account. Bindings idle longer than
`binding_evict_s` are dropped, and at most `MAX_BINDINGS` are kept (the least recently
used idle ones go first), so a client inventing agent ids cannot grow memory. Both are
kept in least-recently-used order so counting warm bindings per account and evicting cost
amortised O(1) per request, never a scan of every binding.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from routing.account_state import UsageTotals
from routing.types import RequestInfo

MAX_BINDINGS = 50_000


@dataclass
class Binding:
    key: str
    account: str
    bound_at: float
    last_used: float
    reason: str
    inflight: int = 0
    model: str | None = None
    rebinds: int = 0
    totals: UsageTotals = field(default_factory=UsageTotals)
    session: str | None = None  # None: the key is the session id (main conversation)
    conversation: str | None = None
    parent_agent_id: str | None = None
    background: bool = False
    detours: int = 0  # requests served elsewhere while the binding stayed

    @property
    def session_id(self) -> str:
        return self.session if self.session is not None else self.key

    def warm(self, now: float, warm_window_s: float) -> bool:
        return self.inflight > 0 or now - self.last_used <= warm_window_s

    def describe(self, request: RequestInfo) -> None:
        """Remember which conversation of which session this is (shown in the Deck)."""
        self.session = request.session_id
        self.conversation = request.conversation
        self.parent_agent_id = request.parent_agent_id or self.parent_agent_id
        self.background = self.background or request.background

    def as_dict(self, now: float, warm_window_s: float) -> dict[str, Any]:
        return {
            "id": self.session_id,
            "conversation": self.conversation,
            "parent_agent_id": self.parent_agent_id,
            "background": self.background,
            "detours": self.detours,
            "account": self.account,
            "bound_at": self.bound_at,
            "last_used": self.last_used,
            "warm": self.warm(now, warm_window_s),
            "reason": self.reason,
            "inflight": self.inflight,
            "requests": self.totals.requests,
            "model": self.model,
            "rebinds": self.rebinds,
            "usage": {k: v for k, v in self.totals.as_dict().items() if k != "requests"},
        }


class SessionTable:
    def __init__(self) -> None:
        self._bindings: OrderedDict[str, Binding] = OrderedDict()  # by last touch
        self._warm: dict[str, OrderedDict[str, float]] = {}  # account -> sid -> last touch

    def __len__(self) -> int:
        return len(self._bindings)

    def get(self, key: str) -> Binding | None:
        return self._bindings.get(key)

    def bindings(self) -> list[Binding]:
        return list(self._bindings.values())

    def most_recent(self) -> Iterator[Binding]:
        """Bindings, the most recently used first."""
        return reversed(self._bindings.values())

    def bind(self, key: str, account: str, reason: str, now: float) -> Binding:
        """Bind (or rebind) a conversation to an account and mark it used now."""
        binding = self._bindings.get(key)
        if binding is None:
            self._make_room()
            binding = Binding(key, account, bound_at=now, last_used=now, reason=reason)
            self._bindings[key] = binding
        else:
            if binding.account != account:
                self._warm.get(binding.account, OrderedDict()).pop(key, None)
                binding.rebinds += 1
                binding.account = account
                binding.bound_at = now
            binding.reason = reason
        self.touch(binding, now)
        return binding

    def _make_room(self) -> None:
        """Keep at most MAX_BINDINGS - 1 before adding one: drop the least recently used
        without a request in flight (those with one are looked at again later)."""
        for _ in range(len(self._bindings)):
            if len(self._bindings) < MAX_BINDINGS:
                return
            key, binding = next(iter(self._bindings.items()))
            if binding.inflight > 0:
                self._bindings.move_to_end(key)
                continue
            self._forget(key, binding)

    def _forget(self, key: str, binding: Binding) -> None:
        del self._bindings[key]
        self._warm.get(binding.account, OrderedDict()).pop(key, None)

    def touch(self, binding: Binding, now: float) -> None:
        binding.last_used = max(binding.last_used, now)
        self._bindings.move_to_end(binding.key)
        warm = self._warm.setdefault(binding.account, OrderedDict())
        warm[binding.key] = binding.last_used
        warm.move_to_end(binding.key)

    def warm_count(self, account: str, now: float, warm_window_s: float) -> int:
        """Warm sessions bound to `account`. Cold ones fall off the front of its list."""
        warm = self._warm.get(account)
        if not warm:
            return 0
        while warm:
            key, touched = next(iter(warm.items()))
            if now - touched <= warm_window_s:
                break
            binding = self._bindings.get(key)
            if binding is not None and binding.account == account and binding.inflight > 0:
                # Still streaming: it stays warm; look again one window later.
                warm[key] = now
                warm.move_to_end(key)
                continue
            del warm[key]
        return len(warm)

    def evict(self, now: float, evict_after_s: float) -> None:
        """Drop bindings idle longer than `evict_after_s` (never one with a request in flight)."""
        while self._bindings:
            session_id, binding = next(iter(self._bindings.items()))
            if now - binding.last_used <= evict_after_s:
                break
            if binding.inflight > 0:
                binding.last_used = now
                self._bindings.move_to_end(session_id)
                continue
            self._forget(session_id, binding)

    def drop_account(self, account: str) -> None:
        """Forget the warm list of a removed account (its bindings rebind on next use)."""
        self._warm.pop(account, None)

    def by_session(self, now: float, warm_window_s: float) -> list[dict[str, Any]]:
        """One entry per client session (the Deck counts agents by session), least
        recently used first: the main conversation's binding (else the most recent one)
        gives the session's account, and `conversations` lists every binding."""
        grouped: dict[str, list[Binding]] = {}
        for binding in self._bindings.values():
            grouped.setdefault(binding.session_id, []).append(binding)
        entries = []
        for members in grouped.values():
            lead = next((b for b in members if b.conversation is None), members[-1])
            entry = lead.as_dict(now, warm_window_s)
            if len(members) > 1:
                totals = UsageTotals()
                for member in members:
                    totals.requests += member.totals.requests
                    totals.usage = totals.usage + member.totals.usage
                    totals.cost_usd += member.totals.cost_usd
                entry.update(
                    last_used=max(b.last_used for b in members),
                    warm=any(b.warm(now, warm_window_s) for b in members),
                    inflight=sum(b.inflight for b in members),
                    requests=totals.requests,
                    usage={k: v for k, v in totals.as_dict().items() if k != "requests"},
                )
            entry["conversations"] = [m.as_dict(now, warm_window_s) for m in members]
            entries.append(entry)
        return entries
