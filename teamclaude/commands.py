"""teamclaude's mitmproxy commands, usable from mitmweb's command bar and the console:
status, capacity, quota, switch, disable/enable/priority, reload, export."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import mitmproxy.flow
import mitmproxy.types
from mitmproxy import command, exceptions
from mitmproxy.log import ALERT

from teamclaude import account_controls, export

if TYPE_CHECKING:
    from teamclaude.addon import TeamClaude

logger = logging.getLogger("teamclaude")


class Commands:
    def __init__(self, owner: TeamClaude) -> None:
        self.owner = owner

    @command.command("teamclaude.status")
    def status_command(self) -> str:
        return json.dumps(self.owner.require().status(), indent=2)

    @command.command("teamclaude.capacity")
    def capacity_command(self) -> str:
        return json.dumps(self.owner.require().capacity(), indent=2)

    @command.command("teamclaude.quota")
    def quota_command(self) -> str:
        return json.dumps(self.owner.require().quota(), indent=2)

    @command.command("teamclaude.switch")
    def switch_command(self, account: str) -> str:
        return self.owner.require().switch(account or None)

    @command.command("teamclaude.disable")
    def disable_command(self, account: str) -> str:
        """Send no new request to the account (kept in the accounts file)."""
        return self._control(lambda store: account_controls.set_disabled(store, account, True))

    @command.command("teamclaude.enable")
    def enable_command(self, account: str) -> str:
        return self._control(lambda store: account_controls.set_disabled(store, account, False))

    @command.command("teamclaude.priority")
    def priority_command(self, account: str, priority: str) -> str:
        """Lower goes first among accounts the pace rule finds equally good."""
        return self._control(lambda store: account_controls.set_priority(
            store, account, account_controls.parse_priority(priority)))

    def _control(self, change) -> str:
        """Write the accounts file now (a short locked write; commands cannot be async) and
        apply it in the background, as the file watcher would."""
        service = self.owner.require()
        try:
            done = change(service.store)
        except (LookupError, ValueError, OSError) as exc:
            raise exceptions.CommandError(f"teamclaude: {exc}") from None
        if done.changed:
            self.owner.reload_soon(service)
        return done.message

    @command.command("teamclaude.reload")
    def reload_command(self) -> None:
        self.owner.reload_soon(self.owner.require())

    @command.command("teamclaude.export")
    def export_command(self, flows: Sequence[mitmproxy.flow.Flow], path: mitmproxy.types.Path) -> None:
        """Write the flows as a flow file with every credential redacted (for bug reports)."""
        service = self.owner.service
        secrets = service.secrets() if service is not None else []
        try:
            count = export.export_flows(flows, Path(path).expanduser(), secrets)
        except OSError as exc:
            raise exceptions.CommandError(f"cannot write {path}: {exc.strerror or exc.__class__.__name__}") from None
        logger.log(ALERT, "teamclaude: wrote %d redacted flows to %s", count, path)
