//! The Lua scripts of the Redis backend. Every state change is one script, so it is atomic
//! across all relay instances sharing the Redis: capacity check + sequence + XADD at publish,
//! lease selection + delivery count + lease record, and the fenced settle.
//!
//! Layout of one channel (`base` = `{prefix}:{<len>:<channel>}`, see `keys.rs`); per webhook
//! queue `qk(q, x)` = `base:q:<len>:<queue>:x`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `base:meta` | hash | settings |
//! | `base:queues` / `base:allq` | set | declared queues / every queue still holding data |
//! | `base:seq`, `base:dlid`, `base:rr` | string | sequence, dead-letter id, round-robin position |
//! | `qk(s)` | stream | live messages (fields m, id, seq, rcv, exp); group `wc` |
//! | `qk(l)` | hash | entry id → `gen|lease_expires_ms|delivered_ms` while leased |
//! | `qk(e)` | zset | entry id by lease expiry |
//! | `qk(d)` | zset | entry id by ready time, for requeued messages |
//! | `qk(n)` | hash | entry id → delivery count |
//! | `qk(t)` | zset | entry id by TTL expiry |
//! | `qk(x)` | hash | entry id → last error |
//! | `qk(c)` | hash | cumulative counters |
//! | `qk(dlq)` | stream | dead letters, ids `0-<dlid>` increasing channel-wide |
//!
//! Channel-wide: `base:gen` (lease generations), `base:reap` (no lease of the channel runs out
//! before this time, ms; `none`: no lease; absent: unknown, so the next lease call reaps).
//!
//! All times come from the Redis server clock (`TIME`), so instances agree. The requeue delays
//! and the attempt cap come from the lease policy in Rust, passed as arguments (`policy.rs`).
//!
//! Redis Cluster: every key of a channel carries the hash tag `{<len>:<channel>}`, so a channel
//! lives in one slot and its scripts run on one node. `KEYS[1]` is always `base:meta` (the
//! routing key; the scripts take `base` from it), followed by the other keys the script
//! touches whose names the caller knows (see `keys.rs`). The scripts that walk every queue of
//! the channel (lease, stats, ensure, delete) derive those queues' keys from the channel's
//! queue set; they are in the same slot. No script touches a key of another channel or a
//! global key: the channel list and the health key are written by plain commands.

/// Functions shared by the scripts.
const PRELUDE: &str = r#"
local base = string.sub(KEYS[1], 1, -6)
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function qk(base, q, x)
  return base .. ':q:' .. string.len(q) .. ':' .. q .. ':' .. x
end
local function settings(base)
  local v = redis.call('HMGET', base .. ':meta', 'ttl', 'maxq', 'maxsize', 'maxatt', 'ack',
    'maxlease', 'rqi', 'rqm', 'ordered')
  if not v[1] then return nil end
  return { ttl = tonumber(v[1]), maxq = tonumber(v[2]), maxsize = tonumber(v[3]),
    maxatt = tonumber(v[4]), ack = tonumber(v[5]), maxlease = tonumber(v[6]),
    ordered = tonumber(v[9]), policy = v[4] .. ' ' .. v[7] .. ' ' .. v[8] }
end
-- The lease policy the caller passed (see policy.rs): `built` names the settings it was built
-- from, `delays` lists the requeue delays (ms) of attempts 1, 2, … Nil unless they are the
-- channel's settings; the script then answers stale_policy, changing nothing.
local function lease_policy(st, built, delays)
  if built ~= st.policy then return nil end
  local d = {}
  for v in string.gmatch(delays, '%d+') do d[#d + 1] = tonumber(v) end
  if #d == 0 then return nil end
  return { maxatt = st.maxatt, delays = d }
end
-- The answer to a caller whose policy is not the channel's: the settings to build it from.
local function stale_policy(base)
  local v = redis.call('HMGET', base .. ':meta', 'maxatt', 'rqi', 'rqm')
  return { -2, v[1], v[2], v[3] }
end
local function count(base, q, field, n)
  redis.call('HINCRBY', qk(base, q, 'c'), field, n)
end
local function fields_of(base, q, id)
  local e = redis.call('XRANGE', qk(base, q, 's'), id, id)
  if not e[1] then return nil end
  local f = {}
  local raw = e[1][2]
  for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
  return f
end
-- Drops a leased entry and everything kept about it. A leased entry is never waiting in `d`
-- (taking it removed it there), and entries are read with NOACK, so there is nothing to XACK.
local function forget_leased(base, q, id)
  redis.call('XDEL', qk(base, q, 's'), id)
  redis.call('HDEL', qk(base, q, 'l'), id)
  redis.call('ZREM', qk(base, q, 'e'), id)
  redis.call('HDEL', qk(base, q, 'n'), id)
  redis.call('ZREM', qk(base, q, 't'), id)
  redis.call('HDEL', qk(base, q, 'x'), id)
end
-- Drops an entry in any state.
local function forget(base, q, id)
  redis.call('ZREM', qk(base, q, 'd'), id)
  forget_leased(base, q, id)
end
local function bury(base, q, id, reason, err, now)
  local f = fields_of(base, q, id) or {}
  local n = redis.call('HGET', qk(base, q, 'n'), id) or '0'
  local last = err or redis.call('HGET', qk(base, q, 'x'), id)
  local dlid = redis.call('INCR', base .. ':dlid')
  local args = { 'XADD', qk(base, q, 'dlq'), '0-' .. dlid, 'm', f['m'] or '', 'id', f['id'] or '',
    'seq', f['seq'] or '0', 'rcv', f['rcv'] or '0', 'exp', f['exp'] or '', 'reason', reason,
    'at', tostring(now), 'count', n }
  if last then
    table.insert(args, 'err')
    table.insert(args, last)
  end
  redis.call(unpack(args))
  forget(base, q, id)
  count(base, q, 'dead_lettered', 1)
  if reason == 'expired' then count(base, q, 'expired', 1) end
end
-- A failed attempt, as the lease policy `p` answers: bury with max_attempts once the message
-- had its last attempt, else requeue after `delay` (< 0: the policy's delay for its attempt).
-- Returns the ready time, or -1 when buried.
local function fail_attempt(base, q, id, delay, err, now, p)
  redis.call('HDEL', qk(base, q, 'l'), id)
  redis.call('ZREM', qk(base, q, 'e'), id)
  count(base, q, 'nacked', 1)
  if err then redis.call('HSET', qk(base, q, 'x'), id, err) end
  local n = tonumber(redis.call('HGET', qk(base, q, 'n'), id) or '0')
  if n >= p.maxatt then
    bury(base, q, id, 'max_attempts', nil, now)
    return -1
  end
  local d = delay
  if d < 0 then d = p.delays[math.min(math.max(n, 1), #p.delays)] end
  local ready = now + d
  redis.call('ZADD', qk(base, q, 'd'), ready, id)
  return ready
end
local function reap(base, q, now, p)
  local ids = redis.call('ZRANGEBYSCORE', qk(base, q, 'e'), '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(ids) do fail_attempt(base, q, id, -1, nil, now, p) end
end
-- Whether a lease of the channel may have run out (see `base:reap` above).
local function reap_due(now)
  local at = redis.call('GET', base .. ':reap')
  return not at or (at ~= 'none' and tonumber(at) <= now)
end
-- The lowest score in zset `x` of any of `queues`, or nil.
local function earliest(queues, x, lowest)
  for _, q in ipairs(queues) do
    local first = redis.call('ZRANGE', qk(base, q, x), 0, 0, 'WITHSCORES')
    if first[2] then
      local at = tonumber(first[2])
      if not lowest or at < lowest then lowest = at end
    end
  end
  return lowest
end
-- Ends the expired leases of every queue and records when the next one runs out.
local function reap_all(queues, now, p)
  for _, q in ipairs(queues) do reap(base, q, now, p) end
  local next_at = earliest(queues, 'e', nil)
  redis.call('SET', base .. ':reap', next_at and tostring(next_at) or 'none')
end
-- Records that a lease runs out at `at` (keeping `base:reap` at or before every lease's end).
local function lease_ends(at)
  local cur = redis.call('GET', base .. ':reap')
  if cur == 'none' or (cur and tonumber(cur) > at) then
    redis.call('SET', base .. ':reap', tostring(at))
  end
end
local function expire_ttl(base, q, now)
  local ids = redis.call('ZRANGEBYSCORE', qk(base, q, 't'), '-inf', now, 'LIMIT', 0, 1000)
  local moved = 0
  for _, id in ipairs(ids) do
    if redis.call('HEXISTS', qk(base, q, 'l'), id) == 0 then
      bury(base, q, id, 'expired', nil, now)
      moved = moved + 1
    end
  end
  return moved
end
-- Tells every instance's waiting lease calls to look again: the last two ARGV of a script
-- that calls it are the wake-up Pub/Sub channel and the channel name.
local function wake_others()
  redis.call('PUBLISH', ARGV[#ARGV - 1], ARGV[#ARGV])
end
local function sorted_queues(base)
  local qs = redis.call('SMEMBERS', base .. ':allq')
  table.sort(qs)
  return qs
end
"#;

/// KEYS: meta, queues, allq, reap, gen. ARGV: ttl, maxq, maxsize, maxatt, ack, maxlease, rqi,
/// rqm, ordered, idle ms after which a reader without leases is forgotten, queue names…
const ENSURE: &str = r#"
redis.call('HSET', KEYS[1], 'ttl', ARGV[1], 'maxq', ARGV[2], 'maxsize', ARGV[3],
  'maxatt', ARGV[4], 'ack', ARGV[5], 'maxlease', ARGV[6], 'rqi', ARGV[7], 'rqm', ARGV[8],
  'ordered', ARGV[9])
redis.call('DEL', KEYS[2])
-- Unknown: the next lease call reaps every queue (leases may predate this layout).
redis.call('DEL', KEYS[4])
-- Generations were one counter for all channels before; starting far above any value it can
-- have reached keeps a token of that time from matching a new lease.
redis.call('SETNX', KEYS[5], '1000000000000')
local idle = tonumber(ARGV[10])
local declared = {}
for i = 11, #ARGV do
  local q = ARGV[i]
  declared[q] = true
  redis.call('SADD', KEYS[2], q)
  redis.call('SADD', KEYS[3], q)
  redis.pcall('XGROUP', 'CREATE', qk(base, q, 's'), 'wc', '0', 'MKSTREAM')
end
for _, q in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local s = qk(base, q, 's')
  if not declared[q] and redis.call('XLEN', s) == 0
      and redis.call('XLEN', qk(base, q, 'dlq')) == 0 then
    redis.call('SREM', KEYS[3], q)
  elseif redis.call('EXISTS', s) == 1 then
    -- Every lease call names its reader (a relay process); readers of processes gone long
    -- ago would pile up in the group.
    local ok, readers = pcall(redis.call, 'XINFO', 'CONSUMERS', s, 'wc')
    if ok then
      for _, r in ipairs(readers) do
        local f = {}
        for k = 1, #r, 2 do f[r[k]] = r[k + 1] end
        if tonumber(f['pending']) == 0 and tonumber(f['idle']) > idle then
          redis.call('XGROUP', 'DELCONSUMER', s, 'wc', f['name'])
        end
      end
    end
  end
end
return 0
"#;

/// KEYS: meta, queues, allq, dlid, rr, reap. The sequence and generation keys stay.
const DELETE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 1 end
for _, q in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  for _, x in ipairs({ 's', 'l', 'e', 'd', 'n', 't', 'x', 'c', 'dlq' }) do
    redis.call('DEL', qk(base, q, x))
  end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return 0
"#;

/// KEYS: meta, queues, seq, then the queue's s, t, c. ARGV: queue, stored bytes, message id,
/// received ms, expires ms or '', body length, wake channel, channel.
/// Returns {0, seq} | {1} unknown channel | {2} unknown queue | {3} too large | {4} full.
const PUBLISH: &str = r#"
local q = ARGV[1]
local st = settings(base)
if not st then return { 1 } end
if redis.call('SISMEMBER', base .. ':queues', q) == 0 then return { 2 } end
if tonumber(ARGV[6]) > st.maxsize then return { 3 } end
local s = qk(base, q, 's')
if redis.call('XLEN', s) >= st.maxq then return { 4 } end
local seq = redis.call('INCR', base .. ':seq')
local id = redis.call('XADD', s, '*', 'm', ARGV[2], 'id', ARGV[3], 'seq', seq, 'rcv', ARGV[4],
  'exp', ARGV[5])
if ARGV[5] ~= '' then redis.call('ZADD', qk(base, q, 't'), ARGV[5], id) end
count(base, q, 'published', 1)
wake_others()
return { 0, seq }
"#;

/// KEYS: meta, allq, gen, reap, rr. ARGV: max, policy settings, policy delays, reader name.
/// Returns {-1} unknown channel, {-2, …} stale policy, or {wake_in_ms (-1 none; 0 when
/// something was leased: look again at once), then per lease: queue, entry id, stored bytes,
/// seq, delivery count, generation, lease expiry ms, expires field}.
///
/// Per call: the settings, the queue set and `base:reap`; every queue's expired leases only
/// when one may have run out. Per lease: a requeued entry is looked up in `d`, a new one read
/// with XREADGROUP (which returns its fields), then the delivery count, generation and lease.
const LEASE: &str = r#"
local max = tonumber(ARGV[1])
local reader = ARGV[4]
local st = settings(base)
if not st then return { -1 } end
local p = lease_policy(st, ARGV[2], ARGV[3])
if not p then return stale_policy(base) end
local now = now_ms()
local queues = sorted_queues(base)
local nq = #queues
if reap_due(now) then reap_all(queues, now, p) end
if st.ordered == 1 then
  local held = 0
  for _, q in ipairs(queues) do held = held + redis.call('ZCARD', qk(base, q, 'e')) end
  if held > 0 then max = 0 elseif max > 1 then max = 1 end
end
local function fields(raw)
  local f = {}
  for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
  return f
end
-- The next unread entry of stream `s`: id and fields, or nil.
local function read_new(s)
  local r = redis.call('XREADGROUP', 'GROUP', 'wc', reader, 'COUNT', 1, 'NOACK', 'STREAMS', s,
    '>')
  if not r or not r[1] or not r[1][2][1] then return nil end
  local e = r[1][2][1]
  return e[1], fields(e[2])
end
local lexp = now + st.ack
local function take(q)
  local s = qk(base, q, 's')
  while true do
    local id, f
    if st.ordered == 1 then
      local head = redis.call('XRANGE', s, '-', '+', 'COUNT', 1)
      if not head[1] then return nil end
      id = head[1][1]
      local ready = redis.call('ZSCORE', qk(base, q, 'd'), id)
      if ready then
        if tonumber(ready) > now then return nil end
        redis.call('ZREM', qk(base, q, 'd'), id)
        f = fields(head[1][2])
      elseif redis.call('HEXISTS', qk(base, q, 'l'), id) == 1 then
        return nil
      else
        id, f = read_new(s)
        if not id then return nil end
      end
    else
      local ready = redis.call('ZRANGEBYSCORE', qk(base, q, 'd'), '-inf', now, 'LIMIT', 0, 1)
      if ready[1] then
        id = ready[1]
        redis.call('ZREM', qk(base, q, 'd'), id)
        f = fields_of(base, q, id)
      else
        id, f = read_new(s)
        if not id then return nil end
      end
    end
    if not f then
      forget(base, q, id)
    elseif f['exp'] and f['exp'] ~= '' and tonumber(f['exp']) <= now then
      bury(base, q, id, 'expired', nil, now)
    else
      local n = redis.call('HINCRBY', qk(base, q, 'n'), id, 1)
      local gen = redis.call('INCR', KEYS[3])
      redis.call('HSET', qk(base, q, 'l'), id, gen .. '|' .. tostring(lexp) .. '|' .. tostring(now))
      redis.call('ZADD', qk(base, q, 'e'), lexp, id)
      return { q, id, f['m'] or '', f['seq'] or '0', n, gen, tostring(lexp), f['exp'] or '' }
    end
  end
end
local out = { -1 }
local rr = tonumber(redis.call('GET', KEYS[5]) or '0') or 0
local i, misses, taken, next_rr = 0, 0, 0, nil
while taken < max and misses < nq do
  local qi = (rr + i) % nq
  i = i + 1
  local got = take(queues[qi + 1])
  if got then
    for _, v in ipairs(got) do table.insert(out, v) end
    taken = taken + 1
    misses = 0
    next_rr = (qi + 1) % nq
  else
    misses = misses + 1
  end
end
if taken > 0 then
  redis.call('SET', KEYS[5], next_rr)
  lease_ends(lexp)
  out[1] = 0
  return out
end
-- Nothing leased: when may something become leasable (a delay ends, a lease runs out)?
local at = redis.call('GET', KEYS[4])
local wake = earliest(queues, 'd', (at and at ~= 'none') and tonumber(at) or nil)
if wake then out[1] = math.max(wake - now, 0) end
return out
"#;

/// KEYS: meta, reap, then the queue's s, l, e, d, n, t, x, c, dlq, and the channel's dlid.
/// ARGV: queue, entry id, generation, action (ack | retry | reject | unreadable | return |
/// touch), delay ms (-1: the policy's), reason ('' none), policy settings, policy delays (both
/// only read for retry), wake channel, channel.
/// Returns {0} not in flight | {1} acked | {2, ready_ms} requeued | {3, reason} buried |
/// {4, lease_expires_ms} extended | {-2, …} stale policy; a last element 1 means waiting lease
/// calls were woken (ordered channel, or something ready at once).
const SETTLE: &str = r#"
local q, id, gen, action = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local delay, reason = tonumber(ARGV[5]), ARGV[6]
if reason == '' then reason = nil end
local l = redis.call('HGET', qk(base, q, 'l'), id)
if not l then return { 0 } end
local now = now_ms()
local g, lexp, delivered = string.match(l, '^(%d+)|(%d+)|(%d+)$')
if g ~= gen or tonumber(lexp) <= now then return { 0 } end
if action == 'ack' then
  -- The hot path reads only the one setting it needs.
  local ordered = tonumber(redis.call('HGET', KEYS[1], 'ordered'))
  if not ordered then return { 0 } end
  forget_leased(base, q, id)
  count(base, q, 'delivered', 1)
  if ordered == 1 then wake_others() end
  return { 1, ordered }
end
local st = settings(base)
if not st then return { 0 } end
local p
if action == 'retry' then
  p = lease_policy(st, ARGV[7], ARGV[8])
  if not p then return stale_policy(base) end
end
if action == 'reject' then
  count(base, q, 'nacked', 1)
  bury(base, q, id, 'rejected', reason, now)
  if st.ordered == 1 then wake_others() end
  return { 3, 'rejected', st.ordered }
elseif action == 'unreadable' then
  bury(base, q, id, 'rejected', reason, now)
  if st.ordered == 1 then wake_others() end
  return { 3, 'rejected', st.ordered }
elseif action == 'retry' then
  local ready = fail_attempt(base, q, id, delay, reason, now, p)
  local woke = 0
  if st.ordered == 1 or (ready >= 0 and ready <= now) then
    wake_others()
    woke = 1
  end
  if ready < 0 then return { 3, 'max_attempts', woke } end
  return { 2, tostring(ready), woke }
elseif action == 'return' then
  redis.call('HDEL', qk(base, q, 'l'), id)
  redis.call('ZREM', qk(base, q, 'e'), id)
  redis.call('HINCRBY', qk(base, q, 'n'), id, -1)
  redis.call('ZADD', qk(base, q, 'd'), now, id)
  wake_others()
  return { 2, tostring(now), 1 }
elseif action == 'touch' then
  local until_ms = math.min(now + st.ack, tonumber(delivered) + st.maxlease)
  if until_ms < tonumber(lexp) then until_ms = tonumber(lexp) end
  redis.call('HSET', qk(base, q, 'l'), id, gen .. '|' .. tostring(until_ms) .. '|' .. delivered)
  redis.call('ZADD', qk(base, q, 'e'), until_ms, id)
  return { 4, tostring(until_ms) }
end
return redis.error_reply('unknown action')
"#;

/// KEYS: meta, queues, allq, reap. ARGV: policy settings, policy delays. Ends expired leases
/// and buries expired messages
/// of one channel, then reports per queue: name, queued, in flight, dead letters, oldest queued
/// age ms (-1 none), published, delivered, nacked, expired, dead_lettered. Returns {-1} for an
/// unknown channel, {-2, …} for a stale policy, else {moved_expired, rows…}.
const STATS: &str = r#"
local st = settings(base)
if not st then return { -1 } end
local p = lease_policy(st, ARGV[1], ARGV[2])
if not p then return stale_policy(base) end
local now = now_ms()
local declared = {}
for _, q in ipairs(redis.call('SMEMBERS', KEYS[2])) do declared[q] = true end
local out = { 0 }
local queues = sorted_queues(base)
reap_all(queues, now, p)
for _, q in ipairs(queues) do
  out[1] = out[1] + expire_ttl(base, q, now)
  local s = qk(base, q, 's')
  local live = redis.call('XLEN', s)
  local held = redis.call('ZCARD', qk(base, q, 'e'))
  local dl = redis.call('XLEN', qk(base, q, 'dlq'))
  local oldest = -1
  local from = '-'
  local pages = 0
  while oldest < 0 and pages < 20 do
    local batch = redis.call('XRANGE', s, from, '+', 'COUNT', 100)
    if not batch[1] then break end
    for _, e in ipairs(batch) do
      if redis.call('HEXISTS', qk(base, q, 'l'), e[1]) == 0 then
        local raw = e[2]
        for k = 1, #raw, 2 do
          if raw[k] == 'rcv' then oldest = math.max(now - tonumber(raw[k + 1]), 0) end
        end
        break
      end
    end
    from = '(' .. batch[#batch][1]
    pages = pages + 1
  end
  if declared[q] or live > 0 or dl > 0 then
    local c = redis.call('HMGET', qk(base, q, 'c'), 'published', 'delivered', 'nacked', 'expired',
      'dead_lettered')
    table.insert(out, q)
    table.insert(out, live - held)
    table.insert(out, held)
    table.insert(out, dl)
    table.insert(out, oldest)
    for k = 1, 5 do table.insert(out, tonumber(c[k] or '0') or 0) end
  end
end
return out
"#;

/// KEYS: meta, allq, then the queue's s, t, dlq. ARGV: queue, dead-letter entry id, wake
/// channel, channel.
/// Returns {0} replayed | {1} unknown channel | {2} gone | {4} queue full.
const REPLAY: &str = r#"
local q, dlid = ARGV[1], ARGV[2]
local st = settings(base)
if not st then return { 1 } end
local e = redis.call('XRANGE', qk(base, q, 'dlq'), dlid, dlid)
if not e[1] then return { 2 } end
local s = qk(base, q, 's')
if redis.call('XLEN', s) >= st.maxq then return { 4 } end
local f = {}
local raw = e[1][2]
for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
local now = now_ms()
-- docs/reference/http-api.md: a replayed message lives ttl from now.
local exp = tostring(now + st.ttl)
redis.pcall('XGROUP', 'CREATE', s, 'wc', '0', 'MKSTREAM')
local id = redis.call('XADD', s, '*', 'm', f['m'] or '', 'id', f['id'] or '', 'seq',
  f['seq'] or '0', 'rcv', f['rcv'] or '0', 'exp', exp)
if exp ~= '' then redis.call('ZADD', qk(base, q, 't'), exp, id) end
redis.call('XDEL', qk(base, q, 'dlq'), dlid)
redis.call('SADD', base .. ':allq', q)
wake_others()
return { 0 }
"#;

/// KEYS: meta, then the queue's l, e, n, d. ARGV: queue, entry id, generation, wake channel,
/// channel. Undoes a lease nobody received: ready at once, delivery not counted. Returns 1 when
/// undone, 0 when the lease was no longer current.
const UNLEASE: &str = r#"
local q, id, gen = ARGV[1], ARGV[2], ARGV[3]
local l = redis.call('HGET', qk(base, q, 'l'), id)
if not l then return 0 end
local g = string.match(l, '^(%d+)|')
if g ~= gen then return 0 end
redis.call('HDEL', qk(base, q, 'l'), id)
redis.call('ZREM', qk(base, q, 'e'), id)
redis.call('HINCRBY', qk(base, q, 'n'), id, -1)
redis.call('ZADD', qk(base, q, 'd'), now_ms(), id)
wake_others()
return 1
"#;

/// All scripts, compiled once.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub ensure: ::redis::Script,
    pub delete: ::redis::Script,
    pub publish: ::redis::Script,
    pub lease: ::redis::Script,
    pub settle: ::redis::Script,
    pub stats: ::redis::Script,
    pub replay: ::redis::Script,
    pub unlease: ::redis::Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let s = |body: &str| ::redis::Script::new(&format!("{PRELUDE}\n{body}"));
        Scripts {
            ensure: s(ENSURE),
            delete: s(DELETE),
            publish: s(PUBLISH),
            lease: s(LEASE),
            settle: s(SETTLE),
            stats: s(STATS),
            replay: s(REPLAY),
            unlease: s(UNLEASE),
        }
    }
}
