"""The logbook's Lua scripts (docs/protocol.md, "The logbook", quotes them verbatim).

Each runs on one experiment's keys (one Cluster slot); logbook.py builds their calls and
parses their replies.
"""

PIN_SCRIPT = """\
-- elog-stream logbook pin (protocol v1): keep an image and append an entry, atomically.
-- KEYS[1] the stream {prefix}logbook:{E}   KEYS[2] the image {prefix}logbook:{E}:image:<sha256>
-- ARGV[1] channel {prefix}updates   ARGV[2] the image bytes   ARGV[3] the experiment E
-- ARGV[4...] field, value pairs of the entry
-- Returns the new entry's id. Refuses, with an error starting "ELOGDATA wrong_type", keys
-- that hold another type. The image key is content-addressed: written only if it differs.
if redis.acl_check_cmd and not redis.acl_check_cmd('PUBLISH', ARGV[1], '{}') then
  return redis.error_reply('NOPERM this user may not PUBLISH on ' .. ARGV[1])
end
local want = {'stream', 'string'}
for i, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= want[i] and kind ~= 'none' then
    return redis.error_reply('ELOGDATA wrong_type ' .. key .. ' holds a ' .. kind)
  end
end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
  redis.call('SET', KEYS[2], ARGV[2])
end
-- The webhook's consumer group starts with the experiment's first entry (an error when it
-- exists already, ignored).
redis.pcall('XGROUP', 'CREATE', KEYS[1], 'elog-webhook', '$', 'MKSTREAM')
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4))
redis.call('PUBLISH', ARGV[1], cjson.encode({logbook = ARGV[3], id = id}))
return id
"""


RETRACT_SCRIPT = """\
-- elog-stream logbook retract (protocol v1): mark an entry retracted, once; it stays readable.
-- KEYS[1] the stream {prefix}logbook:{E}   KEYS[2] the retractions {prefix}logbook:{E}:retracted
-- ARGV[1] channel {prefix}updates   ARGV[2] the experiment E   ARGV[3] the entry id
-- ARGV[4] the retraction JSON {"by": ..., "reason": ..., "at": <Unix time>}
-- Returns 'ok', 'already' (retracted before: nothing changes) or 'missing' (no such entry).
local want = {'stream', 'hash'}
for i, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= want[i] and kind ~= 'none' then
    return redis.error_reply('ELOGDATA wrong_type ' .. key .. ' holds a ' .. kind)
  end
end
if #redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3]) == 0 then return 'missing' end
if redis.call('HSETNX', KEYS[2], ARGV[3], ARGV[4]) == 0 then return 'already' end
redis.call('PUBLISH', ARGV[1], cjson.encode({logbook = ARGV[2], id = ARGV[3]}))
return 'ok'
"""


READ_SCRIPT = """\
-- elog-stream logbook read (protocol v1): entries newest first, with their retractions.
-- KEYS[1] the stream {prefix}logbook:{E}   KEYS[2] the retractions {prefix}logbook:{E}:retracted
-- ARGV[1] newest id ('+', an id, or '(' .. id for those before it)   ARGV[2] oldest ('-', an id)
-- ARGV[3] at most this many entries   ARGV[4] byte limit of one entry's values, and of a retraction
-- Returns nil when there is no stream, {'type', key, kind} when a key holds another type, else
-- {{id, {field, value, ...} or {'size', bytes}, retraction JSON or nil or 'size'}, ...}.
local want = {'stream', 'hash'}
for i, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= want[i] and kind ~= 'none' then return {'type', key, kind} end
end
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
local limit, found = tonumber(ARGV[4]), {}
for _, entry in ipairs(redis.call('XREVRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])) do
  local fields, size = entry[2], 0
  for _, value in ipairs(fields) do size = size + string.len(value) end
  if size > limit then fields = {'size', size} end
  local retraction = redis.call('HGET', KEYS[2], entry[1])
  if retraction and string.len(retraction) > limit then retraction = 'size' end
  found[#found + 1] = {entry[1], fields, retraction}
end
return found
"""


IMAGE_SCRIPT = """\
-- elog-stream logbook image read (protocol v1): a pinned image, unless it is too big.
-- KEYS[1] {prefix}logbook:{E}:image:<sha256>   ARGV[1] byte limit
-- Returns nil when missing, {'type', kind} for another type, {'size', bytes} over the limit,
-- else {'ok', bytes}.
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then return nil end
if kind ~= 'string' then return {'type', kind} end
local size = redis.call('STRLEN', KEYS[1])
if size > tonumber(ARGV[1]) then return {'size', size} end
return {'ok', redis.call('GET', KEYS[1])}
"""
