//! Auto-assignment's gate on Redis ([`AssignmentGate`] for a cluster): the pass is the key
//! `{sb}:desk:assign:pass` (`SET NX PX`, the holder's node id), renewed by every
//! [`AssignmentGate::confirm`]; a pass asked for while one runs sets `{sb}:desk:assign:again`,
//! which the holder's [`AssignmentGate::end`] finds atomically (so no request falls between the
//! holder's last look and its release). `{sb}:desk:assign:away` keeps since when each assigned
//! staff member is away or offline. Same hash tag as availability's keys: one slot, so a
//! confirm checks the pass and `{sb}:desk:available` in one script.
//!
//! A holder that stalls past the lease (a store write hanging longer than [`PASS_LEASE`]) may
//! overlap the next holder's pass by that one write: the store's assignment write counts the
//! agent's open chats itself and is refused at the capacity, so the overlap cannot pass it
//! (`store/assignment.rs`). Each pass also gets a fencing token (`{sb}:desk:assign:fence`,
//! `INCR`), and learns whether the pass before it ended cleanly (`{sb}:desk:assign:held`, kept
//! from a `begin` to its clean `end`): a store that cannot count in a write (MongoDB) fences
//! the queue with it. A draining node gives the gate up ([`AssignmentGate::release`]), leaving
//! `held`: its pass may still write, so the next one fences.

use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::{Client, Value};
use fred::types::scripts::Script;

use super::PresenceError;
use super::assignment_gate::{AssignmentGate, Confirmed, Fence};
use super::redis::lua;
use crate::domain::Timestamp;

const PASS: &str = "{sb}:desk:assign:pass";
const AGAIN: &str = "{sb}:desk:assign:again";
const AWAY: &str = "{sb}:desk:assign:away";
const FENCE: &str = "{sb}:desk:assign:fence";
const HELD: &str = "{sb}:desk:assign:held";
const AVAILABLE: &str = "{sb}:desk:available";

/// How long a pass holds the gate without renewing it (each assignment renews it).
pub const PASS_LEASE: Duration = Duration::from_secs(10);

/// How long one call may take before it counts as unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

const BEGIN: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) or redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('DEL', KEYS[2])
  local token = redis.call('INCR', KEYS[3])
  local taken_over = redis.call('EXISTS', KEYS[4])
  redis.call('SET', KEYS[4], token)
  return {token, taken_over}
end
if ARGV[3] == '1' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
return 0
"#;

const CONFIRM: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('SISMEMBER', KEYS[2], ARGV[3])
"#;

const END: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('DEL', KEYS[2]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
redis.call('DEL', KEYS[1], KEYS[3])
return 0
"#;

const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

const SINCE: &str = r#"
local keep = {}
for i, agent in ipairs(ARGV) do
  if i > 1 then
    keep[agent] = true
    redis.call('HSETNX', KEYS[1], agent, ARGV[1])
  end
end
local all = redis.call('HKEYS', KEYS[1])
for _, agent in ipairs(all) do
  if not keep[agent] then redis.call('HDEL', KEYS[1], agent) end
end
local out = {}
for i, agent in ipairs(ARGV) do
  if i > 1 then table.insert(out, redis.call('HGET', KEYS[1], agent)) end
end
return out
"#;

/// The assignment gate kept in Redis (see the module doc).
pub struct RedisAssignmentGate {
    lua: lua::Caller,
    node: String,
    begin: Script,
    confirm: Script,
    end: Script,
    since: Script,
    release: Script,
}

impl RedisAssignmentGate {
    pub fn new(client: Client, node: String) -> Self {
        Self {
            lua: lua::Caller::new(client, CALL_TIMEOUT, "assignment gate"),
            node,
            begin: Script::from_lua(BEGIN),
            confirm: Script::from_lua(CONFIRM),
            end: Script::from_lua(END),
            since: Script::from_lua(SINCE),
            release: Script::from_lua(RELEASE),
        }
    }

    /// Loads the scripts into Redis's script cache (every master of a Redis Cluster), so that
    /// the first calls after a start do not each meet `NOSCRIPT` and reload.
    pub async fn load_scripts(&self) -> Result<(), PresenceError> {
        let scripts = [
            &self.begin,
            &self.confirm,
            &self.end,
            &self.since,
            &self.release,
        ];
        self.lua.load(&scripts).await
    }

    async fn run(
        &self,
        script: &Script,
        keys: Vec<&str>,
        args: Vec<String>,
    ) -> Result<Value, PresenceError> {
        let keys = keys.into_iter().map(str::to_owned).collect();
        self.lua.run(script, keys, args).await
    }

    fn lease_ms() -> String {
        PASS_LEASE.as_millis().to_string()
    }
}

#[async_trait]
impl AssignmentGate for RedisAssignmentGate {
    async fn begin(&self, wanted: bool) -> Result<Option<Fence>, PresenceError> {
        let args = vec![
            self.node.clone(),
            Self::lease_ms(),
            if wanted { "1" } else { "0" }.to_owned(),
        ];
        let v = self
            .run(&self.begin, vec![PASS, AGAIN, FENCE, HELD], args)
            .await?;
        let Value::Array(items) = v else {
            return Ok(None);
        };
        let int = |i: usize| items.get(i).and_then(Value::as_i64).unwrap_or(0);
        Ok(Some(Fence {
            token: u64::try_from(int(0)).unwrap_or(0),
            taken_over: int(1) == 1,
        }))
    }

    async fn confirm(&self, agent: &str) -> Result<Confirmed, PresenceError> {
        let args = vec![self.node.clone(), Self::lease_ms(), agent.to_owned()];
        let v = self.run(&self.confirm, vec![PASS, AVAILABLE], args).await?;
        Ok(match v.as_i64() {
            Some(1) => Confirmed::Assign,
            Some(0) => Confirmed::Unavailable,
            _ => Confirmed::Lost,
        })
    }

    async fn end(&self) -> Result<bool, PresenceError> {
        let args = vec![self.node.clone(), Self::lease_ms()];
        let v = self.run(&self.end, vec![PASS, AGAIN, HELD], args).await?;
        Ok(v.as_i64() == Some(1))
    }

    async fn release(&self) -> Result<(), PresenceError> {
        let args = vec![self.node.clone()];
        self.run(&self.release, vec![PASS], args).await.map(|_| ())
    }

    async fn unavailable_since(
        &self,
        unavailable: &[String],
        now: Timestamp,
    ) -> Result<Vec<Timestamp>, PresenceError> {
        let mut args = Vec::with_capacity(unavailable.len() + 1);
        args.push(now.timestamp_millis().to_string());
        args.extend(unavailable.iter().cloned());
        let v = self.run(&self.since, vec![AWAY], args).await?;
        let items = match v {
            Value::Array(items) => items,
            _ => Vec::new(),
        };
        Ok(unavailable
            .iter()
            .enumerate()
            .map(|(i, _)| {
                items
                    .get(i)
                    .and_then(|v| v.as_i64())
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .unwrap_or(now)
            })
            .collect())
    }
}
