//! Staff availability on Redis ([`StaffAvailability`] for a cluster): the hash
//! `{sb}:desk:staff` (member -> `available` | `away`) and the set `{sb}:desk:available`, changed
//! together by one script each (same hash tag: one slot, atomic), so two nodes never both see
//! the same transition. The last announcement to users is `{sb}:desk:announced` and its
//! interval the key `{sb}:desk:gate` (`SET NX PX`), so at most one goes out per interval in
//! the whole cluster.
//!
//! A Redis that restarts empty forgets who said `away`: those members count as available again
//! from their next socket (presence's own write-back does not cover this hash).

use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::{Client, Value};
use fred::types::scripts::Script;

use super::PresenceError;
use super::availability::{Announcement, StaffAvailability, StaffStatus};
use super::redis::lua::{self, unavailable};

const STAFF: &str = "{sb}:desk:staff";
const AVAILABLE: &str = "{sb}:desk:available";
const ANNOUNCED: &str = "{sb}:desk:announced";
const GATE: &str = "{sb}:desk:gate";

/// How long one call may take before it counts as unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

const CONNECTED: &str = r#"
if redis.call('HSETNX', KEYS[1], ARGV[1], 'available') == 1 then
  redis.call('SADD', KEYS[2], ARGV[1])
  return 1
end
return 0
"#;

const SET: &str = r#"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old == ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[2] == 'available' then
  redis.call('SADD', KEYS[2], ARGV[1])
else
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 1
"#;

const FORGET: &str = r#"
local gone = {}
for _, user in ipairs(ARGV) do
  if redis.call('HDEL', KEYS[1], user) == 1 then
    redis.call('SREM', KEYS[2], user)
    table.insert(gone, user)
  end
end
return gone
"#;

const CLAIM: &str = r#"
local last = redis.call('GET', KEYS[1]) or '0'
if last == ARGV[1] then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 2
"#;

/// Staff availability kept in Redis (see the module doc).
pub struct RedisAvailability {
    client: Client,
    lua: lua::Caller,
    connected: Script,
    set: Script,
    forget: Script,
    claim: Script,
}

impl RedisAvailability {
    pub fn new(client: Client) -> Self {
        Self {
            lua: lua::Caller::new(client.clone(), CALL_TIMEOUT, "availability"),
            client,
            connected: Script::from_lua(CONNECTED),
            set: Script::from_lua(SET),
            forget: Script::from_lua(FORGET),
            claim: Script::from_lua(CLAIM),
        }
    }

    /// Loads the scripts into Redis's script cache (every master of a Redis Cluster), so that
    /// the first calls after a start do not each meet `NOSCRIPT` and reload.
    pub async fn load_scripts(&self) -> Result<(), PresenceError> {
        let scripts = [&self.connected, &self.set, &self.forget, &self.claim];
        self.lua.load(&scripts).await
    }

    fn keys() -> Vec<String> {
        vec![STAFF.to_owned(), AVAILABLE.to_owned()]
    }
}

fn as_int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

#[async_trait]
impl StaffAvailability for RedisAvailability {
    async fn staff_connected(&self, user_id: &str) -> Result<bool, PresenceError> {
        let v = self
            .lua
            .run(&self.connected, Self::keys(), vec![user_id.to_owned()])
            .await?;
        Ok(as_int(&v) == 1)
    }

    async fn set(&self, user_id: &str, status: StaffStatus) -> Result<bool, PresenceError> {
        let args = vec![user_id.to_owned(), status.as_str().to_owned()];
        let v = self.lua.run(&self.set, Self::keys(), args).await?;
        Ok(as_int(&v) == 1)
    }

    async fn forget(&self, user_ids: &[String]) -> Result<Vec<String>, PresenceError> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let v = self
            .lua
            .run(&self.forget, Self::keys(), user_ids.to_vec())
            .await?;
        Ok(match v {
            Value::Array(items) => items.into_iter().filter_map(|i| i.as_string()).collect(),
            _ => Vec::new(),
        })
    }

    async fn status(&self, user_id: &str) -> Result<Option<StaffStatus>, PresenceError> {
        use fred::prelude::HashesInterface;
        let v: Option<String> =
            tokio::time::timeout(CALL_TIMEOUT, self.client.hget(STAFF, user_id))
                .await
                .map_err(|_| unavailable("availability call timed out"))?
                .map_err(unavailable)?;
        Ok(v.as_deref().and_then(StaffStatus::parse))
    }

    async fn available(&self) -> Result<u64, PresenceError> {
        use fred::prelude::SetsInterface;
        let n: u64 = tokio::time::timeout(CALL_TIMEOUT, self.client.scard(AVAILABLE))
            .await
            .map_err(|_| unavailable("availability call timed out"))?
            .map_err(unavailable)?;
        Ok(n)
    }

    async fn available_staff(&self) -> Result<Vec<String>, PresenceError> {
        use fred::prelude::SetsInterface;
        let members: Vec<String> =
            tokio::time::timeout(CALL_TIMEOUT, self.client.smembers(AVAILABLE))
                .await
                .map_err(|_| unavailable("availability call timed out"))?
                .map_err(unavailable)?;
        Ok(members)
    }

    async fn claim_announcement(
        &self,
        available: bool,
        every: Duration,
    ) -> Result<Announcement, PresenceError> {
        let keys = vec![ANNOUNCED.to_owned(), GATE.to_owned()];
        let args = vec![
            if available { "1" } else { "0" }.to_owned(),
            every.as_millis().max(1).to_string(),
        ];
        Ok(
            match as_int(&self.lua.run(&self.claim, keys, args).await?) {
                1 => Announcement::Send,
                2 => Announcement::Later,
                _ => Announcement::Unchanged,
            },
        )
    }
}
