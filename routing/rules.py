"""Which accounts may serve a request: the client's pin and the model rules (behaviour §5.3).

Pure: given the request's model, the `x-teamclaude-account` header and the configured
accounts, `admit` either refuses the request (a `Refusal`, answered by the proxy without
going upstream) or says which accounts may serve it (a `RequestInfo` restricted with
`pin` and `allowed`, which the engine honours in every selection, hold and failover).

- `blocked_models`: a model matching one of the globs is refused with a 400 naming the rule.
- `model_routes`: the first glob (in file order) matching the model limits the request to
  its accounts; names that are not configured are ignored, and a route none of whose
  accounts is configured and enabled refuses the request (403) instead of waiting forever.
- The pin: the request is served by that account only. An unknown name is a 400, a disabled
  account or one the model's route does not allow a 403: never routed elsewhere in silence.

Globs are shell-style (`*`, `?`, `[...]`), matched against the whole model name, ignoring case.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from routing.types import AccountSpec, RequestInfo

PIN_HEADER = "x-teamclaude-account"


@dataclass(frozen=True)
class ModelRules:
    blocked: tuple[str, ...] = ()
    routes: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (glob, account names), file order


@dataclass(frozen=True)
class Refusal:
    """The proxy's own answer to a request it will not route."""

    status: int
    kind: str  # the Anthropic error type
    message: str


def matches(glob: str, model: str) -> bool:
    return fnmatchcase(model.lower(), glob.lower())


def blocked_by(model: str | None, rules: ModelRules) -> str | None:
    """The first `blocked_models` glob matching `model` (None: not blocked)."""
    if model is None:
        return None
    return next((glob for glob in rules.blocked if matches(glob, model)), None)


def route_for(model: str | None, rules: ModelRules) -> tuple[str, tuple[str, ...]] | None:
    """The first `model_routes` entry whose glob matches `model`."""
    if model is None:
        return None
    return next((route for route in rules.routes if matches(route[0], model)), None)


def admit(
    request: RequestInfo, pin: str | None, rules: ModelRules, accounts: Sequence[AccountSpec]
) -> RequestInfo | Refusal:
    """`request` restricted to the accounts that may serve it, or why it is refused."""
    model = request.model
    glob = blocked_by(model, rules)
    if glob is not None:
        return Refusal(400, "invalid_request_error",
                       f"teamclaude: model '{model}' is blocked by the blocked_models rule '{glob}'")
    specs = {spec.name: spec for spec in accounts}
    route = route_for(model, rules)
    allowed: frozenset[str] | None = None
    if route is not None:
        allowed = frozenset(name for name in route[1] if name in specs)
    if pin is not None:
        refusal = _check_pin(pin, model, specs, route, allowed)
        if refusal is not None:
            return refusal
    elif route is not None and not any(not specs[name].disabled for name in allowed or ()):
        return Refusal(403, "permission_error",
                       f"teamclaude: model '{model}' may only be served by {_names(route[1])} "
                       f"(model_routes rule '{route[0]}'), and none of them is configured and enabled")
    if pin is None and allowed is None:
        return request
    return dataclasses.replace(request, pin=pin, allowed=allowed,
                               route_rule=route[0] if route is not None else None)


def _check_pin(
    pin: str, model: str | None, specs: Mapping[str, AccountSpec],
    route: tuple[str, tuple[str, ...]] | None, allowed: frozenset[str] | None,
) -> Refusal | None:
    spec = specs.get(pin)
    if spec is None:
        known = ", ".join(sorted(specs)) or "none"
        return Refusal(400, "invalid_request_error",
                       f"teamclaude: {PIN_HEADER} names no account '{pin}' (accounts: {known})")
    if spec.disabled:
        return Refusal(403, "permission_error",
                       f"teamclaude: {PIN_HEADER} names account '{pin}', which is disabled "
                       f"(teamclaude enable {pin})")
    if route is not None and allowed is not None and pin not in allowed:
        return Refusal(403, "permission_error",
                       f"teamclaude: {PIN_HEADER} names account '{pin}', but model '{model}' may only be "
                       f"served by {_names(route[1])} (model_routes rule '{route[0]}')")
    return None


def _names(names: Sequence[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


# ---- settings values (teamclaude.settings wraps the ValueError with the file and line) ----


def parse_blocked(value: Any) -> tuple[str, ...]:
    """`blocked_models`: a list of model globs."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ValueError("'blocked_models' must be a list of model globs, like ['claude-opus-*']")
    return tuple(_glob("blocked_models", item) for item in value)


def parse_routes(value: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`model_routes`: a mapping of model glob to the accounts allowed to serve it."""
    if not isinstance(value, dict):
        raise ValueError("'model_routes' must map model globs to account lists, "
                         "like {'claude-opus-*': [work, personal]}")
    routes = []
    for glob, names in value.items():
        glob = _glob("model_routes", glob)
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not names:
            raise ValueError(f"'model_routes' rule '{glob}' must list at least one account name")
        for name in names:
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"'model_routes' rule '{glob}': account names must be non-empty strings")
        routes.append((glob, tuple(names)))
    return tuple(routes)


def _glob(key: str, item: Any) -> str:
    if not isinstance(item, str) or not item.strip():
        raise ValueError(f"'{key}': every model glob must be a non-empty string, got {item!r}")
    return item.strip()
