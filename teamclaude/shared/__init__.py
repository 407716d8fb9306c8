"""State a team's proxies share through Redis (the `shared_state` setting, docs/deploy.md).

Unset, nothing here runs: one proxy keeps its state in memory and its files. Set, every
proxy keeps its own full view (it routes from memory, never waiting on Redis in the request
path beyond a few pipelined commands) and Redis carries what they must agree on.
"""
