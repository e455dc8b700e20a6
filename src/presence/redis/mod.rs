//! Cluster-wide presence in Redis: every node's sockets, who is online, and who died.
//!
//! The keys and the Lua scripts are in `scripts.rs`; this file is the node's side: the calls
//! and the mirror of its own sockets; `drift.rs` holds the mirror's entries and the flag that
//! says Redis may disagree, `resync.rs` the rewrite after an outage, `changes.rs` the batcher.
//!
//! # Why it is correct
//!
//! Every change that can make a user go online or offline runs as one Lua script, so the
//! per-user count moves atomically: of two nodes racing, exactly one sees `0 -> 1` (online) and
//! exactly one sees `1 -> 0` (offline). A connect or disconnect is O(1) Redis work; a heartbeat is
//! one script, O(nodes), never per socket. Connects, disconnects and status reads are batched
//! (`crate::batch`): those made while one `CHANGES` run is on its way go in the next, in order,
//! so a storm of handshakes costs a few script runs rather than one per socket (issue 28). A survivor whose heartbeat finds a known node without
//! its `alive` key removes that node from `{sb}:nodes` and its sockets in the same script: the
//! first survivor to run it reaps, every later one finds nothing, so each offline user is
//! announced once, cluster-wide. A node whose own key had lapsed (a Redis outage longer than
//! the TTL) reaps nobody at that heartbeat: the others get one interval to renew first.
//!
//! # Outages and failovers
//!
//! The node keeps a mirror of its own live sockets. A call that fails, a heartbeat (or connect)
//! that finds this node's `alive` key missing (Redis restarted empty, or the node was reaped
//! after a long silence), and any reconnect of the presence client (a Sentinel or cluster
//! failover, a managed primary replaced behind its address: the server now answering may hold
//! an older copy of the data, missing the last writes before the switch, with every `alive` key
//! still there) mark Redis as out of date; the next heartbeat rewrites this node's sockets from
//! the mirror in one script (`resync`, a diff: it adds what is missing and removes what is
//! gone) and returns the transitions that produced. An `online` it produces is not announced
//! again when Redis had already counted one of that user's sockets here (the mirror remembers
//! which connects Redis confirmed) and the node was not reaped meanwhile: that user was online
//! all along, only Redis forgot.
//!
//! # Redis Cluster
//!
//! Every key carries the hash tag `{sb}` (see `scripts.rs`), so each script touches one slot and
//! runs on one master; the scripts that build their key names inside Lua name `{sb}:nodes` as
//! their key, which is what routes them to that master.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::{Client, EventInterface, KeysInterface, Value};
use fred::types::scripts::Script;
use tokio::sync::RwLock;

use super::{Presence, PresenceError, SocketEntry, SocketPage, Transition, UserPresence};
use crate::batch::Batcher;
use crate::domain::now;

mod changes;
mod drift;
pub mod lua;
mod marks;
mod resync;
mod scripts;

use changes::{CALL_TIMEOUT, Call, unavailable};
use drift::{Drift, Mirrored, staff_flag, strings};

use scripts::{PREFIX, Scripts, Stored, from_ms, key};

/// How long a reaped node's tombstone is kept: long enough for a partitioned node to come back.
const TOMBSTONE_TTL: Duration = Duration::from_secs(24 * 3600);

/// The most due announcements one claim takes (the rest go to the next claim, a heartbeat
/// later at most): bounds the script's run, which blocks Redis.
const CLAIM_BATCH: usize = 1000;

/// Presence shared by every node through Redis. See the module doc for the data layout.
pub struct RedisPresence {
    /// The presence connection (apart from the adapter's pub/sub one, so a flood of messages
    /// never delays a heartbeat).
    client: Client,
    /// This node's name: the owner of `{sb}:node:{node}` and `{sb}:alive:{node}`.
    node: String,
    /// How long the `alive` key lives without renewal.
    ttl: Duration,
    /// `OFFLINE_GRACE_SECS`: how long after a departure its `offline` is due.
    grace: Duration,
    /// The Lua scripts, each sent once and then called by hash.
    scripts: Scripts,
    /// Connects, disconnects and status reads, batched into `CHANGES` runs (`crate::batch`).
    batch: Batcher<Call, Result<Value, PresenceError>>,
    /// This node's live sockets by socket id: what Redis is rewritten from after an outage or
    /// a restart.
    mirror: Mutex<HashMap<Box<str>, Mirrored>>,
    /// Connects and disconnects hold it shared around their mirror update and Redis call; a
    /// resync holds it exclusively, so its snapshot of the mirror is what Redis ends up with.
    /// (A tokio lock: it is held across the Redis call on purpose.)
    gate: RwLock<()>,
    /// Whether Redis may disagree with this node, shared with the task that watches the
    /// client's reconnects.
    drift: Arc<Drift>,
    /// The first heartbeat succeeded (before it, a missing `alive` key is expected).
    joined: AtomicBool,
    /// Resyncs done, for tests.
    #[cfg(any(test, feature = "test-support"))]
    resyncs: std::sync::atomic::AtomicU64,
}

impl RedisPresence {
    /// Presence over an already configured client (see `cluster::redis::RedisConnector`); the
    /// client may still be connecting: calls fail with `Unavailable` until it is up.
    ///
    /// Must be called inside a tokio runtime: it starts the task that marks Redis out of date
    /// after each reconnect of `client` (the task ends with the client).
    pub fn new(client: Client, node: String, ttl: Duration) -> Self {
        let drift = Arc::new(Drift {
            dirty: AtomicBool::new(true),
            no_reaping_until: Mutex::new(None),
            ttl,
        });
        let watched = Arc::downgrade(&drift);
        let node_name = node.clone();
        let _reconnects = client.on_reconnect(move |server| {
            let watched = watched.clone();
            let node = node_name.clone();
            async move {
                if let Some(drift) = watched.upgrade() {
                    tracing::info!(node = %node, server = %server, "presence client reconnected: this node's sockets will be written back at the next heartbeat");
                    drift.out_of_touch();
                }
                Ok(())
            }
        });
        let scripts = Scripts::new();
        let batch = changes::batcher(&client, &scripts.changes, &node, ttl);
        Self {
            client,
            node,
            ttl,
            grace: Duration::ZERO,
            scripts,
            batch,
            mirror: Mutex::new(HashMap::new()),
            gate: RwLock::new(()),
            drift,
            joined: AtomicBool::new(false),
            #[cfg(any(test, feature = "test-support"))]
            resyncs: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A user left offline is due for announcement `grace` later.
    pub fn with_offline_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// When an `offline` noted now is due, in ms since the epoch.
    fn due_ms(&self) -> String {
        (now().timestamp_millis() + i64::try_from(self.grace.as_millis()).unwrap_or(i64::MAX / 2))
            .to_string()
    }

    /// How many times this node rewrote its sockets into Redis.
    #[cfg(any(test, feature = "test-support"))]
    pub fn resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Relaxed)
    }

    /// Loads every script into Redis's script cache (every master of a Redis Cluster), so that
    /// the first calls after a start or a failover do not each meet `NOSCRIPT` and reload.
    pub async fn load_scripts(&self) -> Result<(), PresenceError> {
        // All at once: one round trip, not one per script (a resync holds every connect
        // back while it runs, and a slow Redis made seven round trips seconds).
        let scripts = self.scripts.all();
        lua::load(&self.client, &scripts, CALL_TIMEOUT, "presence").await
    }

    async fn run(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Value, PresenceError> {
        lua::run(&self.client, script, keys, args, CALL_TIMEOUT, "presence").await
    }

    /// Runs a call that changes this node's sockets; a failure leaves Redis out of date.
    async fn change(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Value, PresenceError> {
        let result = self.run(script, keys, args).await;
        if result.is_err() {
            self.drift.dirty.store(true, Ordering::SeqCst);
        }
        result
    }

    /// One call through the batcher (a failed change leaves Redis out of date, as [`Self::change`]).
    async fn batched(&self, call: Call, changes: bool) -> Result<Value, PresenceError> {
        let result = match tokio::time::timeout(CALL_TIMEOUT, self.batch.call(call)).await {
            Ok(Some(answer)) => answer,
            Ok(None) => Err(unavailable("the presence batcher stopped")),
            Err(_) => Err(unavailable("presence call timed out")),
        };
        if changes && result.is_err() {
            self.drift.dirty.store(true, Ordering::SeqCst);
        }
        result
    }

    fn ttl_ms(&self) -> String {
        self.ttl.as_millis().to_string()
    }
}

#[async_trait]
impl Presence for RedisPresence {
    async fn connect_marked(
        &self,
        entry: &SocketEntry,
        mark: Option<&str>,
    ) -> Result<bool, PresenceError> {
        let _shared = self.gate.read().await;
        {
            let mut mirror = self.mirror.lock().unwrap_or_else(|p| p.into_inner());
            if mirror.contains_key(entry.socket_id.as_str()) {
                return Ok(false);
            }
            mirror.insert(entry.socket_id.as_str().into(), Mirrored::new(entry));
        }
        let call = [
            "c".to_owned(),
            entry.socket_id.clone(),
            entry.user_id.clone(),
            Stored::json(entry),
            staff_flag(entry) + mark.unwrap_or_default(),
        ];
        let v = self.batched(call, true).await?.into_array();
        if let Some(m) = self
            .mirror
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(entry.socket_id.as_str())
        {
            m.confirmed = true;
        }
        let lost = v.get(1).and_then(Value::as_i64) == Some(1);
        if lost && self.joined.load(Ordering::SeqCst) {
            self.drift.out_of_touch();
        }
        // A disconnect that took the socket out of the mirror while this call was on its way
        // may have reached Redis first; then Redis holds a socket the mirror does not: have the
        // next heartbeat rewrite this node's sockets from the mirror.
        if !self
            .mirror
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(entry.socket_id.as_str())
        {
            self.drift.dirty.store(true, Ordering::SeqCst);
        }
        Ok(v.first().and_then(Value::as_i64) == Some(1))
    }

    async fn disconnect(&self, user_id: &str, socket_id: &str) -> Result<bool, PresenceError> {
        let _shared = self.gate.read().await;
        if self
            .mirror
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(socket_id)
            .is_none()
        {
            return Ok(false);
        }
        let call = [
            "d".to_owned(),
            socket_id.to_owned(),
            user_id.to_owned(),
            now().timestamp_millis().to_string(),
            self.due_ms(),
        ];
        let v = self.batched(call, true).await?;
        Ok(v.as_i64() == Some(1))
    }

    async fn status(&self, user_id: &str) -> Result<UserPresence, PresenceError> {
        let call = ["s", "", user_id, "", ""].map(str::to_owned);
        let v = self.batched(call, false).await?;
        let v = v.into_array();
        let sockets = v.first().and_then(Value::as_i64).unwrap_or(0).max(0) as u64;
        let last_seen = match sockets {
            0 => v.get(1).and_then(Value::as_i64).map(from_ms),
            _ => None,
        };
        Ok(UserPresence { sockets, last_seen })
    }

    async fn sockets(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<SocketPage, PresenceError> {
        let start = match cursor {
            Some(c) => format!("({c}"),
            None => "-".to_owned(),
        };
        let keys = vec![key("index"), key("sockets"), key("online")];
        let v = self
            .run(&self.scripts.page, keys, vec![start, limit.to_string()])
            .await?;
        let mut parts = v.into_array().into_iter();
        let sockets = parts.next().and_then(|v| v.as_i64()).unwrap_or(0).max(0) as u64;
        let users = parts.next().and_then(|v| v.as_i64()).unwrap_or(0).max(0) as u64;
        let ids = parts.next().map(strings).unwrap_or_default();
        let jsons = parts.next().map(Value::into_array).unwrap_or_default();
        let more = ids.len() > limit;
        let entries: Vec<SocketEntry> = ids
            .into_iter()
            .zip(jsons)
            .take(limit)
            .filter_map(|(id, json)| Stored::entry(id, &json.into_string()?))
            .collect();
        let next_cursor = if more {
            entries.last().map(|e| e.socket_id.clone())
        } else {
            None
        };
        Ok(SocketPage {
            entries,
            next_cursor,
            sockets,
            users,
        })
    }

    async fn heartbeat(&self) -> Result<Vec<Transition>, PresenceError> {
        let args = vec![
            self.node.clone(),
            self.ttl_ms(),
            now().timestamp_millis().to_string(),
            PREFIX.to_owned(),
            TOMBSTONE_TTL.as_millis().to_string(),
            if self.drift.may_reap() { "1" } else { "0" }.to_owned(),
            self.due_ms(),
        ];
        let result = self
            .run(&self.scripts.heartbeat, vec![key("nodes")], args)
            .await;
        let v = result.inspect_err(|_| self.drift.out_of_touch())?;
        let mut parts = v.into_array().into_iter();
        let present = parts.next().and_then(|v| v.as_i64()) == Some(1);
        let mut changes: Vec<Transition> = parts
            .next()
            .map(strings)
            .unwrap_or_default()
            .into_iter()
            .map(|user_id| Transition {
                user_id,
                online: false,
            })
            .collect();
        if !self.joined.swap(true, Ordering::SeqCst) {
            // A first heartbeat rewrites our sockets, which also clears whatever a previous
            // process under the same NODE_ID left behind.
            self.drift.dirty.store(true, Ordering::SeqCst);
        } else if !present {
            tracing::warn!(node = %self.node, "presence heartbeat key was missing: rewriting this node's sockets");
            self.drift.out_of_touch();
        }
        if self.drift.dirty.swap(false, Ordering::SeqCst) {
            changes.extend(self.resync().await?);
        }
        Ok(changes)
    }

    async fn withdraw_node(&self) -> Result<Vec<String>, PresenceError> {
        let _exclusive = self.gate.write().await;
        self.mirror
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let args = vec![
            self.node.clone(),
            now().timestamp_millis().to_string(),
            PREFIX.to_owned(),
            self.due_ms(),
        ];
        let v = self
            .run(&self.scripts.withdraw, vec![key("nodes")], args)
            .await?;
        Ok(strings(v))
    }

    async fn claim_due_offline(&self) -> Result<Vec<String>, PresenceError> {
        let args = vec![
            now().timestamp_millis().to_string(),
            CLAIM_BATCH.to_string(),
        ];
        let v = self
            .run(
                &self.scripts.claim_due,
                vec![key("due"), key("online")],
                args,
            )
            .await?;
        Ok(strings(v))
    }

    async fn due_offline(&self) -> Result<Vec<String>, PresenceError> {
        marks::due(self, CLAIM_BATCH).await
    }

    async fn claim_offline_marked(
        &self,
        claims: &[(String, String)],
    ) -> Result<Vec<String>, PresenceError> {
        marks::claim(self, claims).await
    }

    async fn marked(&self, mark: &str) -> Result<bool, PresenceError> {
        marks::marked(self, mark).await
    }

    async fn staff_online(&self) -> Result<Option<String>, PresenceError> {
        let v = self
            .run(
                &self.scripts.staff_online,
                vec![key("staff"), key("online")],
                Vec::new(),
            )
            .await?;
        Ok(v.into_string())
    }

    async fn ping(&self) -> Result<(), PresenceError> {
        // A keyed read rather than `PING`: in a Redis Cluster it reaches the master that holds
        // presence (the `{sb}` slot), not some node at random.
        let read = self.client.exists::<Value, _>(key("nodes"));
        match tokio::time::timeout(CALL_TIMEOUT, read).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable("ping timed out")),
        }
    }
}
