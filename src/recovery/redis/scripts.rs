//! The recovery log's keys and Lua scripts in Redis (the key table is in `redis.rs`).

pub(super) const LOG: &str = "{sb}:rlog";
pub(super) const LOG_BYTES: &str = "{sb}:rlog:bytes";
pub(super) const LOG_CUT: &str = "{sb}:rlog:cut";

/// Appends one entry and counts its bytes as the trim script does (64 + its fields' values);
/// KEYS[4..] are its rooms' index keys (`room_index.rs`), each set to its id for ARGV[5] ms.
/// ARGV[6] is the append's token, kept in the entry (`t`): an append whose answer was lost is
/// looked for by it ([`SETTLE`]), and KEYS[3] is the token's void mark, which [`SETTLE`] sets
/// when it did not find it: an append that arrives after that logs nothing and answers nil.
pub(super) const APPEND: &str = r#"
if redis.call('EXISTS', KEYS[3]) == 1 then return false end
local id = redis.call('XADD', KEYS[1], '*', 'r', ARGV[1], 'x', ARGV[2], 'e', ARGV[3], 'd', ARGV[4], 't', ARGV[6])
redis.call('INCRBY', KEYS[2], 64 + #ARGV[1] + #ARGV[2] + #ARGV[3] + #ARGV[4] + #ARGV[6])
for i = 4, #KEYS do redis.call('SET', KEYS[i], id, 'PX', ARGV[5]) end
return id
"#;

/// Settles an append whose answer was lost: the id of the entry with token ARGV[1] among those
/// from id ARGV[2] on, or, if there is none, nil after setting the token's void mark KEYS[2]
/// for ARGV[3] ms, so that the append, if it is still on its way, logs nothing.
pub(super) const SETTLE: &str = r#"
local start = ARGV[2]
while true do
  local batch = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 512)
  if #batch == 0 then break end
  for _, e in ipairs(batch) do
    local f = e[2]
    if f[#f - 1] == 't' and f[#f] == ARGV[1] then return e[1] end
  end
  start = '(' .. batch[#batch][1]
end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
return false
"#;

/// The void mark of an append's token (see [`APPEND`]).
pub(super) fn void_key(token: &str) -> String {
    format!("{{sb}}:rlog:void:{token}")
}

/// Drops the oldest entries while they are older than ARGV[2] (ms) or the stream is over ARGV[1]
/// bytes, at most ARGV[3] of them; returns { bytes left, the newest id ever dropped or '' }.
pub(super) const TRIM: &str = r#"
local max = tonumber(ARGV[1])
local min_ms = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
local start = '-'
local last = false
local removed = 0
local done = false
-- Small first reads: most seconds nothing is trimmed, and an entry may be ~30 KB.
local count = 4
while not done do
  local batch = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', count)
  count = math.min(count * 2, 128)
  if #batch == 0 then break end
  for _, e in ipairs(batch) do
    local ms = tonumber(string.match(e[1], '^(%d+)'))
    if removed >= limit or (total <= max and ms >= min_ms) then
      done = true
      break
    end
    local f = e[2]
    local size = 64
    for i = 2, #f, 2 do size = size + #f[i] end
    total = total - size
    last = e[1]
    removed = removed + 1
  end
  start = '(' .. batch[#batch][1]
end
if last then
  local ms, seq = string.match(last, '^(%d+)-(%d+)$')
  redis.call('XTRIM', KEYS[1], 'MINID', ms .. '-' .. string.format('%d', tonumber(seq) + 1))
  redis.call('SET', KEYS[3], last)
end
if redis.call('XLEN', KEYS[1]) == 0 or total < 0 then total = 0 end
redis.call('SET', KEYS[2], total)
return { total, redis.call('GET', KEYS[3]) or '' }
"#;

/// Every session call of a batch (see `crate::batch::Batcher`), in order. KEYS: one session key per call.
/// ARGV: seven per call, the first its kind: `g` (read it), `p` user, rooms, start, socket,
/// disconnected ('' while held), ttl ms (store it), `e` socket, at ms, ttl ms (mark it
/// disconnected if that socket holds it), `r` socket (forget it if that socket holds it).
/// Returns one answer per call: the hash's fields and values for `g`, 1 or 0 for the others.
/// A held session stores `d` as '' (one `HSET` writes every field, no `DEL` first).
pub(super) const SESSIONS: &str = r#"
local out = {}
for i, k in ipairs(KEYS) do
  local b = (i - 1) * 7
  local op = ARGV[b + 1]
  if op == 'g' then
    out[i] = redis.call('HGETALL', k)
  elseif op == 'p' then
    redis.call('HSET', k, 'u', ARGV[b + 2], 'r', ARGV[b + 3], 't', ARGV[b + 4], 's', ARGV[b + 5], 'd', ARGV[b + 6])
    redis.call('PEXPIRE', k, ARGV[b + 7])
    out[i] = 1
  elseif redis.call('HGET', k, 's') ~= ARGV[b + 2] then
    out[i] = 0
  elseif op == 'e' then
    redis.call('HSET', k, 'd', ARGV[b + 3])
    redis.call('PEXPIRE', k, ARGV[b + 4])
    out[i] = 1
  else
    redis.call('DEL', k)
    out[i] = 1
  end
end
return out
"#;
