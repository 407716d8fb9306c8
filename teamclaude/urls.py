"""The proxy's address as a URL: IPv6 hosts in brackets, wildcard addresses reached via loopback.

Pure functions without imports from the rest of teamclaude, so the Deck can use them too.
"""

from __future__ import annotations

# A proxy listening on every address is reached on this host's loopback of the same family
# (asyncio binds "::" IPv6-only, so 127.0.0.1 would not reach it).
_WILDCARD_TO_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def http_url(host: str, port: int | None = None) -> str:
    """`http://HOST:PORT`, an IPv6 host in brackets: `http_url("::1", 3456)` is `http://[::1]:3456`."""
    host = _unbracket(host)
    netloc = f"[{host}]" if ":" in host else host
    return f"http://{netloc}" if port is None else f"http://{netloc}:{port}"


def connect_host(host: str) -> str:
    """Where a client reaches a server listening on `host`: loopback for a wildcard address."""
    host = _unbracket(host)
    return _WILDCARD_TO_LOOPBACK.get(host, host)


def split_host_port(address: str) -> tuple[str, int | None]:
    """(host, port) of `http://HOST:PORT` or `HOST:PORT`. Also reads an IPv6 host written
    without brackets, as the addon did before it bracketed them: `http://:::3456` is
    `("::", 3456)` (the last colon separates the port)."""
    netloc = address.split("://", 1)[-1].split("/", 1)[0]
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = netloc.rpartition(":") if ":" in netloc else (netloc, "", "")
    return host, int(port_text) if port_text.isdigit() else None


def _unbracket(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host
