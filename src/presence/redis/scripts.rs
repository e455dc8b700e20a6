//! The Redis side of cluster-wide presence: the keys, the Lua scripts that change them
//! atomically, and how a socket entry is stored.
//!
//! # Keys
//!
//! All keys share the hash tag `{sb}`, so every script touches one slot: on a Redis Cluster,
//! all of presence lives on one master (and its replicas). The scripts that build key names
//! in Lua (heartbeat, resync, withdraw) declare `{sb}:nodes` as their one key, which is what
//! routes them to that master.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{sb}:sockets` | hash | socket id -> the socket's entry (JSON) |
//! | `{sb}:index` | sorted set | socket ids, score 0: the stable order `active-users` pages through |
//! | `{sb}:online` | hash | user id -> how many sockets the user has in the cluster |
//! | `{sb}:seen` | hash | user id -> when the user's last socket went away (ms) |
//! | `{sb}:nodes` | set | the nodes known to hold sockets |
//! | `{sb}:node:{id}` | hash | socket id -> user id, one node's sockets (what a reaper removes) |
//! | `{sb}:alive:{id}` | string, TTL | the node's heartbeat; it lives `PRESENCE_TTL_SECS` |
//! | `{sb}:reaped:{id}` | string, TTL | tombstone: the node was reaped while it was silent |
//! | `{sb}:due` | sorted set | users whose `offline` is owed, scored by when it is due (ms): added by every script that leaves a user offline, removed by a connect of theirs or by the one claim that announces it |
//! | `{sb}:staff` | set | staff members seen connecting; one found offline is dropped by the next lookup |
//! | `{sb}:mark:{mark}` | string, TTL a day | a transition (a connect that made its user online, a claim of a due `offline`) recorded the mark its caller gave: a `user.*` webhook pledged ahead of it is settled from it (`Presence::marked`) |
//!
//! Every change that can make a user go online or offline is one of these scripts (see the
//! parent module for why that makes the transitions exact).

use fred::types::scripts::Script;
use serde::{Deserialize, Serialize};

use crate::domain::{Role, Timestamp};
use crate::presence::SocketEntry;

/// The prefix of every key (with its hash tag).
pub(super) const PREFIX: &str = "{sb}:";

/// A batch of this node's connects and disconnects and of status reads, in the order they were
/// made (see `crate::batch`): one script run for a storm's worth of them, and this node's
/// `alive` key and `nodes` entry written once per batch rather than once per connect.
/// KEYS: sockets, index, online, node, alive, nodes, due, staff, seen. ARGV: node, ttl ms, then
/// five per call: its kind, socket id, user id, and two more. Answers, one per call:
/// - `c` entry, staff ('1' or '0', then the transition's mark if any): registers a socket;
///   {came online, our alive key was lost}. A user whose `offline` was still due did not come
///   online to anyone: its due entry goes, and 0. Came online with a mark: `{sb}:mark:{mark}`.
/// - `d` now ms, due ms: removes a socket; 1 when it left the user offline (then their
///   `offline` is due at the due ms).
/// - `s` (socket id and the other two empty): {sockets, last seen ms or ''} of the user.
const CHANGES: &str = r#"
local MARK_TTL_MS = 86400000
local out = {}
local lost = nil
for i = 1, (#ARGV - 2) / 5 do
  local b = 2 + (i - 1) * 5
  local op, sid, uid = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  if op == 'c' then
    if lost == nil then
      lost = 0
      if redis.call('SET', KEYS[5], '1', 'PX', ARGV[2], 'NX') then lost = 1 end
      redis.call('SADD', KEYS[6], ARGV[1])
    end
    local online = 0
    if redis.call('HSETNX', KEYS[1], sid, ARGV[b + 4]) == 1 then
      redis.call('ZADD', KEYS[2], 0, sid)
      redis.call('HSET', KEYS[4], sid, uid)
      local flag = ARGV[b + 5]
      if string.sub(flag, 1, 1) == '1' then redis.call('SADD', KEYS[8], uid) end
      if redis.call('HINCRBY', KEYS[3], uid, 1) == 1 and redis.call('ZREM', KEYS[7], uid) == 0 then
        online = 1
        if #flag > 1 then
          redis.call('SET', '{sb}:mark:' .. string.sub(flag, 2), '1', 'PX', MARK_TTL_MS)
        end
      end
    end
    out[i] = {online, lost}
  elseif op == 'd' then
    local offline = 0
    if redis.call('HDEL', KEYS[1], sid) == 1 then
      redis.call('ZREM', KEYS[2], sid)
      redis.call('HDEL', KEYS[4], sid)
      if redis.call('HINCRBY', KEYS[3], uid, -1) <= 0 then
        redis.call('HDEL', KEYS[3], uid)
        redis.call('HSET', KEYS[9], uid, ARGV[b + 4])
        redis.call('ZADD', KEYS[7], ARGV[b + 5], uid)
        offline = 1
      end
    end
    out[i] = offline
  else
    out[i] = {redis.call('HGET', KEYS[3], uid) or '0', redis.call('HGET', KEYS[9], uid) or ''}
  end
end
return out
"#;

/// KEYS: due, online. ARGV: now ms, limit. Takes the users due by now (at most `limit`) out of
/// `due` and returns those still without a socket: the script runs alone, so each due user is
/// returned to exactly one caller, whichever node calls.
const CLAIM_DUE: &str = r#"
local users = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, u in ipairs(users) do
  redis.call('ZREM', KEYS[1], u)
  if not redis.call('HGET', KEYS[2], u) then table.insert(out, u) end
end
return out
"#;

/// KEYS: due, online. ARGV: now ms, then a user and a mark each. As `CLAIM_DUE` for these
/// users only, each claimed one's mark recorded (`{sb}:mark:{mark}`, kept a day).
const CLAIM_MARKED: &str = r#"
local out = {}
for i = 2, #ARGV - 1, 2 do
  local u = ARGV[i]
  local due = redis.call('ZSCORE', KEYS[1], u)
  if due and tonumber(due) <= tonumber(ARGV[1]) then
    redis.call('ZREM', KEYS[1], u)
    if not redis.call('HGET', KEYS[2], u) then
      redis.call('SET', '{sb}:mark:' .. ARGV[i + 1], '1', 'PX', 86400000)
      table.insert(out, u)
    end
  end
end
return out
"#;

/// KEYS: staff, online. Returns a staff member with a socket, or false; drops the ones it
/// finds offline on the way (they are added again when they connect).
const STAFF_ONLINE: &str = r#"
for _, u in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('HEXISTS', KEYS[2], u) == 1 then return u end
  redis.call('SREM', KEYS[1], u)
end
return false
"#;

/// Removes one socket (by id and user) of a node hash `nk`; appends its user to `offline` when it
/// was the user's last socket, and notes their `offline` as due at `due` (ms). Shared by the
/// scripts below.
const REMOVE_FN: &str = r#"
local function remove(p, nk, sid, uid, now, offline, due)
  redis.call('HDEL', nk, sid)
  redis.call('HDEL', p .. 'sockets', sid)
  redis.call('ZREM', p .. 'index', sid)
  if redis.call('HINCRBY', p .. 'online', uid, -1) <= 0 then
    redis.call('HDEL', p .. 'online', uid)
    redis.call('HSET', p .. 'seen', uid, now)
    redis.call('ZADD', p .. 'due', due, uid)
    table.insert(offline, uid)
  end
end
local function remove_node(p, node, now, offline, due)
  local nk = p .. 'node:' .. node
  local all = redis.call('HGETALL', nk)
  for i = 1, #all, 2 do remove(p, nk, all[i], all[i + 1], now, offline, due) end
  redis.call('DEL', nk)
end
"#;

/// KEYS: nodes (routes it to the `{sb}` slot). ARGV: node, ttl ms, now ms, prefix, tombstone
/// ttl ms, may reap ('1' or '0'), due ms. Returns {alive key existed, offline users}.
const HEARTBEAT: &str = r#"
local me, p = ARGV[1], ARGV[4]
local existed = redis.call('SET', p .. 'alive:' .. me, '1', 'PX', ARGV[2], 'GET')
redis.call('SADD', p .. 'nodes', me)
local offline = {}
-- A node whose own key had lapsed was out of touch too (a long Redis outage, a failover): it
-- judges nobody now, and its caller holds back for a TTL (ARGV[6]) so every peer can renew.
if not existed then return {0, offline} end
if ARGV[6] ~= '1' then return {1, offline} end
for _, node in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do
  if node ~= me and redis.call('EXISTS', p .. 'alive:' .. node) == 0 then
    redis.call('SREM', p .. 'nodes', node)
    remove_node(p, node, ARGV[3], offline, ARGV[7])
    redis.call('SET', p .. 'reaped:' .. node, '1', 'PX', ARGV[5])
  end
end
return {1, offline}
"#;

/// KEYS: nodes (for routing). ARGV: node, ttl ms, now ms, prefix, due ms, then (socket id, user
/// id, entry, staff) quadruples: this node's sockets as they really are. Returns {was reaped,
/// online users, offline users}; a user whose `offline` was still due is not online news.
const RESYNC: &str = r#"
local me, p = ARGV[1], ARGV[4]
local nk = p .. 'node:' .. me
local want, online, offline = {}, {}, {}
-- Additions first, so a user whose socket was replaced during the outage never flickers offline.
for i = 6, #ARGV, 4 do
  local sid, uid = ARGV[i], ARGV[i + 1]
  want[sid] = true
  if redis.call('HSETNX', nk, sid, uid) == 1 then
    redis.call('HSET', p .. 'sockets', sid, ARGV[i + 2])
    redis.call('ZADD', p .. 'index', 0, sid)
    if ARGV[i + 3] == '1' then redis.call('SADD', p .. 'staff', uid) end
    if redis.call('HINCRBY', p .. 'online', uid, 1) == 1
      and redis.call('ZREM', p .. 'due', uid) == 0 then
      table.insert(online, uid)
    end
  end
end
local all = redis.call('HGETALL', nk)
for i = 1, #all, 2 do
  if not want[all[i]] then remove(p, nk, all[i], all[i + 1], ARGV[3], offline, ARGV[5]) end
end
redis.call('SET', p .. 'alive:' .. me, '1', 'PX', ARGV[2])
redis.call('SADD', p .. 'nodes', me)
local reaped = redis.call('DEL', p .. 'reaped:' .. me)
return {reaped, online, offline}
"#;

/// KEYS: nodes (for routing). ARGV: node, now ms, prefix, due ms. Returns the users left
/// offline (their `offline` is due at ARGV[4], whatever becomes of this node).
const WITHDRAW: &str = r#"
local me, p = ARGV[1], ARGV[3]
local offline = {}
remove_node(p, me, ARGV[2], offline, ARGV[4])
redis.call('DEL', p .. 'alive:' .. me)
redis.call('SREM', p .. 'nodes', me)
return offline
"#;

/// KEYS: index, sockets, online. ARGV: lex start, limit. Returns {sockets, users, ids, entries}.
const PAGE: &str = r#"
local ids = redis.call('ZRANGE', KEYS[1], ARGV[1], '+', 'BYLEX', 'LIMIT', 0, tonumber(ARGV[2]) + 1)
local entries = {}
if #ids > 0 then entries = redis.call('HMGET', KEYS[2], unpack(ids)) end
return {redis.call('HLEN', KEYS[2]), redis.call('HLEN', KEYS[3]), ids, entries}
"#;

/// The scripts, loaded at start-up and before every resync (a restarted or promoted Redis has
/// an empty script cache; Redis 7 does not replicate it), and on `NOSCRIPT` in between.
pub(super) struct Scripts {
    /// Renews this node's key and reaps dead nodes.
    pub(super) heartbeat: Script,
    /// Rewrites this node's sockets from its mirror.
    pub(super) resync: Script,
    /// Removes every socket of this node (drain).
    pub(super) withdraw: Script,
    /// One page of the cluster's sockets.
    pub(super) page: Script,
    /// Takes the due `offline` announcements.
    pub(super) claim_due: Script,
    /// Claims due `offline`s of given users, recording their marks.
    pub(super) claim_marked: Script,
    /// A batch of connects, disconnects and status reads.
    pub(super) changes: Script,
    /// Finds a staff member with a socket.
    pub(super) staff_online: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        let with_remove = |body: &str| Script::from_lua(format!("{REMOVE_FN}\n{body}"));
        Self {
            heartbeat: with_remove(HEARTBEAT),
            resync: with_remove(RESYNC),
            withdraw: with_remove(WITHDRAW),
            page: Script::from_lua(PAGE),
            claim_due: Script::from_lua(CLAIM_DUE),
            claim_marked: Script::from_lua(CLAIM_MARKED),
            changes: Script::from_lua(CHANGES),
            staff_online: Script::from_lua(STAFF_ONLINE),
        }
    }

    pub(super) fn all(&self) -> [&Script; 8] {
        [
            &self.heartbeat,
            &self.resync,
            &self.withdraw,
            &self.page,
            &self.claim_due,
            &self.claim_marked,
            &self.changes,
            &self.staff_online,
        ]
    }
}

/// A socket entry as stored in `{sb}:sockets`.
#[derive(Serialize, Deserialize)]
pub(super) struct Stored {
    /// User id (one-letter names: the entry is stored once per socket in the cluster).
    u: String,
    /// User display name.
    n: String,
    /// User role, as `Role::as_str` spells it.
    r: String,
    /// Connected at, in ms since the epoch.
    t: i64,
    /// The node holding the socket.
    node: String,
}

impl Stored {
    pub(super) fn json(e: &SocketEntry) -> String {
        let stored = Stored {
            u: e.user_id.clone(),
            n: e.user_name.clone(),
            r: e.user_role.as_str().to_owned(),
            t: e.connected_at.timestamp_millis(),
            node: e.node.clone(),
        };
        serde_json::to_string(&stored).unwrap_or_default()
    }

    pub(super) fn entry(socket_id: String, json: &str) -> Option<SocketEntry> {
        let s: Stored = serde_json::from_str(json).ok()?;
        Some(SocketEntry {
            user_id: s.u,
            socket_id,
            user_name: s.n,
            user_role: Role::parse(&s.r)?,
            connected_at: from_ms(s.t),
            node: s.node,
        })
    }
}

pub(super) fn from_ms(v: i64) -> Timestamp {
    chrono::DateTime::from_timestamp_millis(v).unwrap_or_default()
}

pub(super) fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}
