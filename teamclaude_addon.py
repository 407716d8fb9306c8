"""teamclaude as a mitmproxy addon: `mitmdump -s teamclaude_addon.py` (or mitmweb).

The addon itself lives in `teamclaude.addon`; this file is what mitmproxy loads.
"""

from teamclaude.addon import TeamClaude

addons = [TeamClaude()]
