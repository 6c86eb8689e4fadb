//! The Lua scripts Redis runs for the shared log, each one atomic on one shard (every key of a
//! call shares one hash tag), loaded by hash (EVALSHA, sent again on NOSCRIPT).

use std::time::Duration;

use redis::Script;

pub(super) const APPEND: &str = r"
local meta, log, idem, erased, moderation = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if redis.call('HEXISTS', meta, 'c') == 0 then return {-1} end
-- The poster's standing as the log has it, whatever the node that asks has applied.
if redis.call('HEXISTS', moderation, 'banned|' .. ARGV[12]) == 1 then return {-3, 'banned'} end
if ARGV[13] == '1' then
  local muted = tonumber(redis.call('HGET', moderation, 'muted|' .. ARGV[12]) or '0')
  if muted > tonumber(ARGV[14]) then return {-3, 'muted', muted} end
end
local e = redis.call('HGET', meta, 'e')
if ARGV[5] == '1' then
  local seen = redis.call('GET', idem)
  if seen then
    local entry = redis.call('XRANGE', log, seen .. '-0', seen .. '-0')
    local body = false
    if entry[1] then body = entry[1][2][2] end
    return {tonumber(seen), e, 1, body}
  end
end
local seq = redis.call('HINCRBY', meta, 's', 1)
local added = redis.pcall('XADD', log, 'MAXLEN', '~', ARGV[2], seq .. '-0', 'm', ARGV[1])
if type(added) == 'table' and added.err then
  -- The stream is ahead of the counter: the room's state went back. Go on after the stream's
  -- newest entry, under a new epoch that every node applies as a reset.
  local top = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
  local last = 0
  if top[1] then last = tonumber(string.match(top[1][1], '^(%d+)')) end
  redis.call('HSET', meta, 's', last, 'e', ARGV[6])
  redis.call('PUBLISH', ARGV[3], 'epoch')
  return {-2}
end
redis.call('PUBLISH', ARGV[3], e .. ' ' .. seq .. ' ' .. ARGV[1])
if ARGV[5] == '1' then redis.call('SET', idem, seq, 'EX', ARGV[4]) end
if ARGV[7] ~= '0' then redis.call('HSET', erased, ARGV[7], seq) end
if ARGV[8] ~= '' then
  local field = string.sub(ARGV[8], 2) .. '|' .. ARGV[9]
  if string.sub(ARGV[8], 1, 1) == '+' then
    redis.call('HSET', moderation, field, ARGV[10])
  else
    redis.call('HDEL', moderation, field)
  end
end
if ARGV[11] == '1' then redis.call('HINCRBY', meta, 'n', 1) end
return {seq, e, 0}
";

/// Allowances held across nodes, as GCRA on Redis's clock (the same as a token bucket: `burst`
/// at once, then one per interval), one key each with `interval` and `tolerance` (ms) in ARGV:
/// one is taken from every key, or from none. 0 if admitted, else the milliseconds to wait. The
/// keys of one call share a hash tag (a poster's own, `rc:{u:<user>}`, or identity's, `rc:{id}`).
pub(crate) const ALLOW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait, tats = 0, {}
for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  tats[i] = tat
  local over = tat - tonumber(ARGV[2 * i]) - now
  if over > wait then wait = over end
end
if wait > 0 then return wait end
for i = 1, #KEYS do
  local new = tats[i] + tonumber(ARGV[2 * i - 1])
  redis.call('SET', KEYS[i], new, 'PX', new - now + 1000)
end
return 0
";

/// GCRA's `(interval, tolerance)` in milliseconds for `burst` at once, then one per `every`.
pub(crate) fn gcra(burst: u32, every: Duration) -> (u64, u64) {
    let interval = u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1);
    (interval, interval * u64::from(burst.saturating_sub(1)))
}

pub(super) const READ: &str = r"
local f = redis.call('HMGET', KEYS[1], 'e', 's', 'c')
if not f[3] then return {0, 0, {}, redis.call('EXISTS', KEYS[3])} end
local entries = redis.call('XRANGE', KEYS[2], '(' .. ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
return {f[1], f[2], entries, 0, redis.call('HKEYS', KEYS[4])}
";

/// A user's presence from one node: announced on the room's channel when it changes whether
/// they are present anywhere (counted per node in `users`, as Centrifugo counts per user).
pub(super) const HERE: &str = r"
if ARGV[3] == '1' then
  if redis.call('HSETNX', KEYS[1], ARGV[1], 1) == 1 and redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then
    redis.call('PUBLISH', ARGV[4], 'joined ' .. ARGV[2])
  end
elseif redis.call('HDEL', KEYS[1], ARGV[1]) == 1 and redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('PUBLISH', ARGV[4], 'left ' .. ARGV[2])
end
return 1
";

/// Removes one node's presence from a room (it died, or stops): its users leave unless
/// present from another node.
pub(super) const REAP: &str = r"
local prefix = ARGV[1] .. '|'
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, #prefix) == prefix then
    redis.call('HDEL', KEYS[1], f)
    local user = string.sub(f, #prefix + 1)
    if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
      redis.call('HDEL', KEYS[2], user)
      redis.call('PUBLISH', ARGV[2], 'left ' .. user)
    end
  end
end
return 1
";

pub(super) const LOAD: &str = r"
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return 0 end
return {h, redis.call('SMEMBERS', KEYS[2]), redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', ARGV[1]), redis.call('HKEYS', KEYS[4]), redis.call('HGETALL', KEYS[5]), redis.call('HGETALL', KEYS[6])}
";

/// Creates a room unless it exists; a new epoch unless one is set.
pub(super) const CREATE: &str = r"
if redis.call('HEXISTS', KEYS[1], 'c') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'c', ARGV[1], 'p', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'o', ARGV[3]) end
redis.call('HSET', KEYS[1], 'e', ARGV[4], 's', 0)
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
for i = 5, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
return 1
";

/// A new epoch for a room whose log went back, unless one was started already; the room's
/// nodes are told to read it.
pub(super) const NEW_EPOCH: &str = r"
if redis.call('HGET', KEYS[1], 'e') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'e', ARGV[2])
  redis.call('PUBLISH', ARGV[3], 'epoch')
end
return 1
";

/// What a listing shows of one room.
pub(super) const SUMMARY: &str = r"
local f = redis.call('HMGET', KEYS[1], 'c', 's', 'o', 'p', 'n')
if not f[1] then return 0 end
local first = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
local first_seq = 0
if first[1] then first_seq = tonumber(string.match(first[1][1], '^(%d+)')) end
return {f[1], f[2], f[3] or '', f[4], redis.call('SMEMBERS', KEYS[2]), redis.call('HLEN', KEYS[4]), first_seq, f[5] or 0, redis.call('HGET', KEYS[5], ARGV[1]) or ''}
";

/// Moves a user's read marker on (`<seq> <posts>`), never back.
pub(super) const MARK_READ: &str = r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old and tonumber(string.match(old, '^(%d+)')) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])
return 1
";

/// A member added or removed, and the room's nodes told to read its access again.
pub(super) const MEMBER: &str = r"
redis.call(ARGV[1], KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], 'access')
return 1
";

/// Deletes a room (with `ARGV[3]` set, only if nothing was ever posted to it), leaving a
/// tombstone, and answers its owner (`''` for none) so the owner's index can forget it; `false`
/// if it was not deleted.
pub(super) const DELETE: &str = r"
if ARGV[3] == '1' and redis.call('HGET', KEYS[1], 's') ~= '0' then return false end
local owner = redis.call('HGET', KEYS[1], 'o') or ''
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6], KEYS[7])
redis.call('SET', KEYS[4], '1', 'EX', ARGV[1])
redis.call('PUBLISH', ARGV[2], 'closed')
return owner
";

/// The scripts, loaded by hash (EVALSHA, with the script sent again on NOSCRIPT).
pub(super) struct Scripts {
    pub(super) summary: Script,
    pub(super) new_epoch: Script,
    pub(super) member: Script,
    pub(super) here: Script,
    pub(super) reap: Script,
    pub(super) rate: Script,
    pub(super) append: Script,
    pub(super) read: Script,
    pub(super) load: Script,
    pub(super) create: Script,
    pub(super) delete: Script,
    pub(super) mark_read: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts {
            summary: Script::new(SUMMARY),
            new_epoch: Script::new(NEW_EPOCH),
            member: Script::new(MEMBER),
            here: Script::new(HERE),
            reap: Script::new(REAP),
            rate: Script::new(ALLOW),
            append: Script::new(APPEND),
            read: Script::new(READ),
            load: Script::new(LOAD),
            create: Script::new(CREATE),
            delete: Script::new(DELETE),
            mark_read: Script::new(MARK_READ),
        }
    }
}

/// A new epoch: greater than any made before it (milliseconds since 1970, with the process id
/// in the low bits so two nodes recreating a room in the same millisecond differ).
pub(super) fn new_epoch() -> u64 {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX >> 16)
        });
    (millis << 16) | u64::from(std::process::id() & 0xffff) | 1
}
