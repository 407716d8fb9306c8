"""Connections to the shared Redis, and this process's identity among the pool's proxies."""

from __future__ import annotations

import os
import secrets
import socket
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio

# Short timeouts: a Redis that does not answer is treated as lost (the proxy serves from its
# own view, degraded) rather than holding requests.
CONNECT_TIMEOUT_S = 1.0
COMMAND_TIMEOUT_S = 2.0


def display_url(url: str) -> str:
    """`url` with its secrets replaced by ***, for logs, the Deck and errors: the password, a
    user name given without one (most likely the password, its ':' forgotten), and options
    naming a password (redis-py also takes `?password=...`)."""
    parts = urlsplit(url)
    netloc, query = parts.netloc, parts.query
    if "@" in netloc:
        host = netloc.rpartition("@")[2]
        netloc = (f"{parts.username}:***@{host}" if parts.password is not None and parts.username
                  else f":***@{host}" if parts.password is not None else f"***@{host}")
    if query:
        query = "&".join(f"{name}=***" if "password" in name.lower() else f"{name}{sep}{value}"
                         for name, sep, value in (item.partition("=") for item in query.split("&")))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def sync_client(url: str) -> redis.Redis:
    """A blocking client (for worker threads: token refreshes, the CLI)."""
    return redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S,
                                socket_timeout=COMMAND_TIMEOUT_S, health_check_interval=10)


def async_client(url: str) -> redis.asyncio.Redis:
    """A client for the proxy's event loop."""
    return redis.asyncio.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S,
                                        socket_timeout=COMMAND_TIMEOUT_S, health_check_interval=10)


def new_instance_id() -> str:
    """This proxy among the pool's: host, pid and a random tag (a restarted pid is new)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
