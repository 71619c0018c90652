"""The Lua scripts that make each step of :class:`~d360calling.fleet.RedisState` one atomic
round trip. Redis runs a script without interleaving other commands, so "claim or not" and
"compare and set" need no locks. Keys are named by the caller (one Redis, not a cluster: a
delivery's keys are not in one hash slot)."""

from __future__ import annotations

from typing import Final

__all__ = ("BEAT", "CLAIM", "COMPARE_AND_SET", "READ", "RECALL", "TAKE_OVER", "UNCLAIM", "WORK")

# A value of another kind under one of our keys (another program's, a corrupt one) is
# treated as absent: a record as none (its data read as '', which the caller logs), a work
# hash or a kept list replaced when written.

# ARGV[1]: a JSON spec {w: worker, t: this attempt's token, wk: work hash, dt: dedupe ttl
# ms, kt: kept ttl ms, km: kept per topic, e: [{d: dedupe key or "", f: work field, i:
# index, r: record key or "", p: [channels], k: [kept lists]}]}; ARGV[2]: the delivery's
# body. A claim key holds the token of the attempt that won it, so the same attempt run
# again (redis-py sends it again when the connection dropped before the answer) still wins.
# Returns, per event: 1/0 (claimed here or not), the record's version and data (or false).
CLAIM: Final = """
local spec = cjson.decode(ARGV[1])
local body = ARGV[2]
local out = {}
local claimed_any = false
local work_kind = redis.call('TYPE', spec.wk).ok
if work_kind ~= 'hash' and work_kind ~= 'none' then redis.call('DEL', spec.wk) end
for _, e in ipairs(spec.e) do
  local fresh = 1
  if e.d ~= '' then
    if not redis.call('SET', e.d, spec.t, 'NX', 'PX', spec.dt) then
      fresh = 0
      if redis.call('TYPE', e.d).ok == 'string' and redis.call('GET', e.d) == spec.t then
        fresh = 1
      end
    end
  end
  local ver, data = false, false
  if e.r ~= '' then
    local kind = redis.call('TYPE', e.r).ok
    if kind == 'hash' then
      local got = redis.call('HMGET', e.r, 'ver', 'data')
      ver, data = got[1], got[2]
    elseif kind ~= 'none' then
      data = ''
    end
  end
  if fresh == 1 then
    claimed_any = true
    local payload = spec.w .. '\\n' .. e.i .. '\\n' .. body
    redis.call('HSET', spec.wk, e.f, payload)
    for _, channel in ipairs(e.p) do redis.call('PUBLISH', channel, payload) end
    for _, kept in ipairs(e.k) do
      local kind = redis.call('TYPE', kept).ok
      if kind ~= 'list' and kind ~= 'none' then redis.call('DEL', kept) end
      redis.call('RPUSH', kept, payload)
      redis.call('LTRIM', kept, -spec.km, -1)
      redis.call('PEXPIRE', kept, spec.kt)
    end
  end
  out[#out + 1] = fresh
  out[#out + 1] = ver
  out[#out + 1] = data
end
if claimed_any then redis.call('PEXPIRE', spec.wk, spec.dt) end
return out
"""

# KEYS[1]: the record. Returns {version, data}: {false, false} for none, {false, ''} for a
# value of another kind.
READ: Final = """
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'hash' then return redis.call('HMGET', KEYS[1], 'ver', 'data') end
if kind == 'none' then return {false, false} end
return {false, ''}
"""

# KEYS[1]: the record; ARGV: expected version ("0": none), new version, data, ttl ms.
# Versions are random tokens, not counters: after Redis lost its data, a version a worker
# remembers can never match a new record's by chance. A stored version that is not one of
# ours counts as "0", as the caller reads it, so a corrupt one is
# overwritten rather than retried (a version is 1 to 64 letters and digits). Returns {1}
# when set, else {0, version, data}.
COMPARE_AND_SET: Final = """
local kind = redis.call('TYPE', KEYS[1]).ok
local ver, data = '0', false
if kind == 'hash' then
  local got = redis.call('HMGET', KEYS[1], 'ver', 'data')
  ver, data = got[1], got[2]
  if type(ver) ~= 'string' or #ver > 64 or not string.match(ver, '^%w+$') then ver = '0' end
end
if ver ~= ARGV[1] then return {0, ver, data} end
if kind ~= 'hash' and kind ~= 'none' then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[1], 'ver', ARGV[2], 'data', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {1}
"""

# KEYS[1]: the dead worker's heartbeat, [2] its work, [3] this worker's work, [4] the set of
# workers; ARGV[1]: the dead worker's id, [2]: the work's ttl ms. Returns false if it is
# alive after all, else its work as a flat field/value list (now this worker's).
TAKE_OVER: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
redis.call('SREM', KEYS[4], ARGV[1])
if redis.call('TYPE', KEYS[2]).ok ~= 'hash' then
  redis.call('DEL', KEYS[2])
  return {}
end
local all = redis.call('HGETALL', KEYS[2])
local mine = redis.call('TYPE', KEYS[3]).ok
if mine ~= 'hash' and mine ~= 'none' then redis.call('DEL', KEYS[3]) end
for i = 1, #all, 2 do redis.call('HSET', KEYS[3], all[i], all[i + 1]) end
redis.call('DEL', KEYS[2])
if #all > 0 then redis.call('PEXPIRE', KEYS[3], ARGV[2]) end
return all
"""

# ARGV[1]: the claim attempt's token, ARGV[2]: work hash, then dedupe key / work field
# pairs: what a claim that was cancelled in flight recorded, taken back (only keys that
# attempt holds; the caller names only the events it won).
UNCLAIM: Final = """
local work_kind = redis.call('TYPE', ARGV[2]).ok
if work_kind ~= 'hash' and work_kind ~= 'none' then redis.call('DEL', ARGV[2]) end
for i = 3, #ARGV, 2 do
  if ARGV[i] ~= '' and redis.call('TYPE', ARGV[i]).ok == 'string'
      and redis.call('GET', ARGV[i]) == ARGV[1] then
    redis.call('DEL', ARGV[i])
  end
  redis.call('HDEL', ARGV[2], ARGV[i + 1])
end
return 1
"""

# KEYS[1]: a kept list. Returns its payloads, oldest first, or false for a value of another
# kind (which the caller logs and treats as none).
RECALL: Final = """
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'list' then return redis.call('LRANGE', KEYS[1], 0, -1) end
if kind == 'none' then return {} end
return false
"""

# KEYS[1]: this worker's work; ARGV: fields, or none for every field. Returns field/value
# pairs (for the work a worker finds it holds without knowing: a claim or a takeover whose
# answer was lost), an empty list for a value of another kind.
WORK: Final = """
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return {} end
if #ARGV == 0 then return redis.call('HKEYS', KEYS[1]) end
local out = {}
for _, field in ipairs(ARGV) do
  local payload = redis.call('HGET', KEYS[1], field)
  if payload then
    out[#out + 1] = field
    out[#out + 1] = payload
  end
end
return out
"""

# KEYS[1]: this worker's heartbeat, [2] the set of workers; ARGV: worker, heartbeat ttl ms,
# the set's ttl ms. A set of another kind is replaced (it would stop every worker beating).
BEAT: Final = """
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
if redis.call('TYPE', KEYS[2]).ok ~= 'set' then redis.call('DEL', KEYS[2]) end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""
