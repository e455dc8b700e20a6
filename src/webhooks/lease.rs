//! Which node sends: in a cluster, the holder of a Redis lease (`switchboard:webhooks:sender`,
//! `SET ... PX` renewed every third of `WEBHOOK_LEASE_SECS`); a node that dies stops renewing
//! and another takes the lease over when it lapses, then sends what is still pending. A single
//! node always sends. A holder that cannot reach Redis stops sending at once (another node may
//! hold the lease by then): duplicates stay possible at a hand-over (at least once), never loss.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::prelude::{Client, Value};
use fred::types::scripts::Script;

const KEY: &str = "switchboard:webhooks:sender";

/// Takes the lease if it is free, renews it if this node holds it; 1 when held.
const HOLD: &str = r"
local v = redis.call('GET', KEYS[1])
if v == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0";

/// Gives the lease up if this node holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// The sender lease.
pub enum Lease {
    /// A single node: always the sender.
    Always,
    Redis {
        client: Client,
        node: String,
        ttl: Duration,
        held: AtomicBool,
    },
}

impl Lease {
    pub fn redis(client: Client, node: String, ttl: Duration) -> Self {
        Self::Redis {
            client,
            node,
            ttl,
            held: AtomicBool::new(false),
        }
    }

    /// Whether this node sends now.
    pub fn is_held(&self) -> bool {
        match self {
            Self::Always => true,
            Self::Redis { held, .. } => held.load(Ordering::Acquire),
        }
    }

    /// Takes and renews the lease for as long as the node runs.
    pub async fn hold(self: std::sync::Arc<Self>) {
        let Self::Redis {
            client,
            node,
            ttl,
            held,
        } = &*self
        else {
            return;
        };
        let script = Script::from_lua(HOLD);
        let ttl_ms = ttl.as_millis().to_string();
        loop {
            let call = script.evalsha_with_reload::<Value, _, _>(
                client,
                vec![KEY],
                vec![node.as_str(), ttl_ms.as_str()],
            );
            let now_held = matches!(
                tokio::time::timeout(*ttl / 3, call).await,
                Ok(Ok(Value::Integer(1)))
            );
            if now_held != held.swap(now_held, Ordering::AcqRel) {
                tracing::info!(node = %node, held = now_held, "webhook sender lease");
            }
            tokio::time::sleep(*ttl / 3).await;
        }
    }

    /// Gives the lease up (a drain), so another node takes over at once.
    pub async fn release(&self) {
        if let Self::Redis {
            client, node, held, ..
        } = self
        {
            held.store(false, Ordering::Release);
            let script = Script::from_lua(RELEASE);
            let _ = script
                .evalsha_with_reload::<Value, _, _>(client, vec![KEY], vec![node.as_str()])
                .await;
        }
    }
}
