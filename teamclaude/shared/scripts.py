"""The Lua scripts of the shared state: each is one atomic compare-and-set on the server, so
two proxies can never interleave a read and a write (Redis runs a script alone)."""

from __future__ import annotations

# KEYS[1] bench key, KEYS[2] events channel; ARGV: until (s), value, ttl ms, event.
# A bench deadline only ever extends: a shorter one (re-applied late) is ignored.
BENCH = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, old = pcall(cjson.decode, current)
  if ok and tonumber(old['until']) and tonumber(old['until']) >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('PUBLISH', KEYS[2], ARGV[4])
return 1
"""

# KEYS[1] window key, KEYS[2] events channel; ARGV: observed at (s), value, ttl ms, event.
# The newest observation wins, whichever proxy writes last.
WINDOW = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, old = pcall(cjson.decode, current)
  if ok and tonumber(old['at']) and tonumber(old['at']) >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('PUBLISH', KEYS[2], ARGV[4])
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
