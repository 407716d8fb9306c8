"""Shared pieces for end-to-end tests: a fake upstream, a config directory, the real proxy."""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from teamclaude.fakeupstream import FakeAccount
from teamclaude.proxyproc import ProxyProcess
from teamclaude.urls import split_host_port

PROXY_KEY = "tc-test-proxy-key-0123456789abcdefghij"


def oauth_account(name: str, **budget: Any) -> FakeAccount:
    return FakeAccount(
        name=name,
        access_token=f"sk-ant-oat01-{name}-access-secret",
        refresh_token=f"sk-ant-ort01-{name}-refresh-secret",
        email=f"{name}@example.com",
        **budget,
    )


def apikey_account(name: str) -> FakeAccount:
    return FakeAccount(name=name, api_key=f"sk-ant-api03-{name}-key-secret")


def accounts_yaml_entries(accounts: Iterable[FakeAccount]) -> list[dict[str, Any]]:
    entries = []
    for account in accounts:
        if account.api_key:
            entries.append({"name": account.name, "type": "apikey", "api_key": account.api_key})
        else:
            entries.append({
                "name": account.name, "type": "oauth", "id": account.uuid,
                "access_token": account.access_token, "refresh_token": account.refresh_token,
                "expires_at": 4_102_444_800_000, "email": account.email,
            })
    return entries


@dataclass
class ConfigDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config" / "config.yaml"

    @property
    def accounts(self) -> Path:
        return self.root / "config" / "accounts.yaml"

    @property
    def state(self) -> Path:
        return self.root / "state" / "state.json"

    def env(self) -> dict[str, str]:
        return {
            "TEAMCLAUDE_CONFIG": str(self.config),
            "HOME": str(self.root / "home"),
            "XDG_CONFIG_HOME": str(self.root / "xdg-config"),
            "XDG_STATE_HOME": str(self.root / "xdg-state"),
        }


def write_config(root: Path, upstream: str, accounts: Iterable[FakeAccount], **settings: Any) -> ConfigDir:
    cfg = ConfigDir(root)
    cfg.config.parent.mkdir(parents=True, exist_ok=True)
    values = {"port": 0, "upstream": upstream, "state_file": str(cfg.state), **settings}
    cfg.config.write_text(yaml.safe_dump(values))
    cfg.accounts.write_text(yaml.safe_dump({"proxy_key": PROXY_KEY, "accounts": accounts_yaml_entries(accounts)}))
    cfg.accounts.chmod(0o600)
    return cfg


def start_proxy(cfg: ConfigDir, extra_args: Iterable[str] = ()) -> ProxyProcess:
    return ProxyProcess(cfg.config, ["--set", "flow_detail=0", *extra_args], env=cfg.env()).start()


def call(proxy_url: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
         key: str | None = PROXY_KEY) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request to the proxy; returns (status, headers, body)."""
    host, port = split_host_port(proxy_url)
    connection = http.client.HTTPConnection(host, port, timeout=30)
    all_headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    if key is not None:
        all_headers["x-teamclaude-key"] = key
    all_headers.update(headers or {})
    payload = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    try:
        connection.request(method, path, body=payload, headers=all_headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def message_body(stream: bool = False, model: str = "claude-sonnet-4-5", **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 64, "stream": stream,
            "messages": [{"role": "user", "content": "hello"}], **extra}




def proxy_status(proxy: ProxyProcess) -> dict[str, Any]:
    """`GET /teamclaude/status` of a running proxy."""
    code, _, body = call(proxy.url, "GET", "/teamclaude/status")
    assert code == 200, body
    return json.loads(body)


def shared_of(proxy: ProxyProcess) -> dict[str, Any]:
    """The `shared` section (Redis, the pool's proxies) of a running proxy's status."""
    return proxy_status(proxy)["shared"]


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """The TCP sockets process `pid` listens on, as (address, port), from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            raw, port = local.split(":")
            found.add((_proc_address(raw), int(port, 16)))
    return found


def _proc_address(raw: str) -> str:
    packed = bytes.fromhex(raw)
    # /proc prints each 32-bit word in host (little-endian) order.
    words = b"".join(packed[i:i + 4][::-1] for i in range(0, len(packed), 4))
    return str(ipaddress.ip_address(words))
