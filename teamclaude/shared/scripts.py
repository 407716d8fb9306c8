"""The Lua scripts of the shared state: each is one atomic compare-and-set on the server, so
two proxies can never interleave a read and a write (Redis runs a script alone)."""

from __future__ import annotations

# KEYS[1] the key, KEYS[2] the events channel; ARGV: the JSON field compared, the new value
# of that field, the new JSON value, its TTL in ms, the event to announce. Written (and
# announced) only when the new field is greater than the stored one: a bench deadline only
# ever extends (field "until"), and the newest rate-limit reading wins (field "at").
SET_IF_GREATER = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, old = pcall(cjson.decode, current)
  if ok and tonumber(old[ARGV[1]]) and tonumber(old[ARGV[1]]) >= tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
redis.call('PUBLISH', KEYS[2], ARGV[5])
return 1
"""

# KEYS[1] binding key; ARGV: expected account ("" = none known), new account, last used, ttl ms.
# Written when the stored account is absent, the expected one or already the new one;
# otherwise another proxy moved the conversation first: its binding is returned, unchanged.
BIND = """
local current = redis.call('GET', KEYS[1])
if current then
  local account = string.match(current, '^([^\\t]*)')
  if account ~= ARGV[1] and account ~= ARGV[2] then return current end
end
redis.call('SET', KEYS[1], ARGV[2] .. '\\t' .. ARGV[3], 'PX', ARGV[4])
return false
"""
