"""Session bindings: which account serves a client session, and which sessions are warm.

A session is warm while it was used within `warm_window_s` (or has a request in flight):
its prompt cache lives on its account. Bindings idle longer than `binding_evict_s` are
dropped. Both are kept in least-recently-used order so counting warm sessions per account
and evicting cost amortised O(1) per request, never a scan of every session.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from routing.account_state import UsageTotals


@dataclass
class Binding:
    session_id: str
    account: str
    bound_at: float
    last_used: float
    reason: str
    inflight: int = 0
    model: str | None = None
    rebinds: int = 0
    totals: UsageTotals = field(default_factory=UsageTotals)

    def warm(self, now: float, warm_window_s: float) -> bool:
        return self.inflight > 0 or now - self.last_used <= warm_window_s

    def as_dict(self, now: float, warm_window_s: float) -> dict[str, Any]:
        return {
            "id": self.session_id,
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

    def get(self, session_id: str) -> Binding | None:
        return self._bindings.get(session_id)

    def bindings(self) -> list[Binding]:
        return list(self._bindings.values())

    def bind(self, session_id: str, account: str, reason: str, now: float) -> Binding:
        """Bind (or rebind) a session to an account and mark it used now."""
        binding = self._bindings.get(session_id)
        if binding is None:
            binding = Binding(session_id, account, bound_at=now, last_used=now, reason=reason)
            self._bindings[session_id] = binding
        else:
            if binding.account != account:
                self._warm.get(binding.account, OrderedDict()).pop(session_id, None)
                binding.rebinds += 1
                binding.account = account
                binding.bound_at = now
            binding.reason = reason
        self.touch(binding, now)
        return binding

    def touch(self, binding: Binding, now: float) -> None:
        binding.last_used = max(binding.last_used, now)
        self._bindings.move_to_end(binding.session_id)
        warm = self._warm.setdefault(binding.account, OrderedDict())
        warm[binding.session_id] = binding.last_used
        warm.move_to_end(binding.session_id)

    def warm_count(self, account: str, now: float, warm_window_s: float) -> int:
        """Warm sessions bound to `account`. Cold ones fall off the front of its list."""
        warm = self._warm.get(account)
        if not warm:
            return 0
        while warm:
            session_id, touched = next(iter(warm.items()))
            if now - touched <= warm_window_s:
                break
            binding = self._bindings.get(session_id)
            if binding is not None and binding.account == account and binding.inflight > 0:
                # Still streaming: it stays warm; look again one window later.
                warm[session_id] = now
                warm.move_to_end(session_id)
                continue
            del warm[session_id]
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
            del self._bindings[session_id]
            self._warm.get(binding.account, OrderedDict()).pop(session_id, None)

    def drop_account(self, account: str) -> None:
        """Forget the warm list of a removed account (its bindings rebind on next use)."""
        self._warm.pop(account, None)
