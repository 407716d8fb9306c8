"""teamclaude as a mitmproxy addon: `mitmdump -s teamclaude_addon.py` (or mitmweb).

The addon itself lives in `teamclaude.addon`; this file is what mitmproxy loads. Until that
addon is configured, a guard answers every request with a 503 and nothing listens: a script
that fails to load must not leave an open relay (see `teamclaude.fail_closed`).
"""

from teamclaude.addon import TeamClaude
from teamclaude.fail_closed import FailClosed

FailClosed.install_before_loading()
addons = [TeamClaude()]
