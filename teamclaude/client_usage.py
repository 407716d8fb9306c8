"""Per-client counts since the proxy started (`teamclaude keys`, docs/state-file.md `clients`):
requests in flight against the client's `max_concurrent`, and what its finished requests used.

A pooled request from a client key is counted from `begin` (before an account is chosen) to
`end` (`Pool.finish`, exactly once per pooled flow), so every way a request ends frees its place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from teamclaude.client_keys import ClientKey


@dataclass
class _Tally:
    in_flight: int = 0
    requests: int = 0
    refused: int = 0
    tokens: int = 0
    cost_usd: float = 0.0


class ClientUsage:
    def __init__(self) -> None:
        self._tallies: dict[str, _Tally] = {}

    def begin(self, client: ClientKey) -> bool:
        """Count a request of `client` in flight; False (counted as refused) when the client
        already has `max_concurrent` in flight."""
        tally = self._tallies.setdefault(client.name, _Tally())
        if client.max_concurrent is not None and tally.in_flight >= client.max_concurrent:
            tally.refused += 1
            return False
        tally.in_flight += 1
        return True

    def end(self, name: str, tokens: int, cost_usd: float) -> None:
        """A request `begin` let in has finished, with what it used."""
        tally = self._tallies.setdefault(name, _Tally())
        tally.in_flight = max(0, tally.in_flight - 1)
        tally.requests += 1
        tally.tokens += tokens
        tally.cost_usd += cost_usd

    def in_flight(self, name: str) -> int:
        tally = self._tallies.get(name)
        return tally.in_flight if tally is not None else 0

    def snapshot(self, clients: list[ClientKey]) -> list[dict[str, Any]]:
        """One entry per current client key, in file order (no secret: the hash stays out)."""
        entries = []
        for client in clients:
            tally = self._tallies.get(client.name) or _Tally()
            entries.append({
                "name": client.name,
                "created_at": client.created_at / 1000,
                "max_concurrent": client.max_concurrent,
                "in_flight": tally.in_flight,
                "requests": tally.requests,
                "refused": tally.refused,
                "tokens": tally.tokens,
                "cost_usd": round(tally.cost_usd, 6),
            })
        return entries
