//! The resync: after an outage, a failover or a restart, this node's sockets are rewritten
//! into Redis from its mirror in one script (a diff), and the transitions that produced are
//! announced, minus the `online`s that only restore what Redis forgot.

use std::collections::HashSet;
#[cfg(any(test, feature = "test-support"))]
use std::sync::atomic::Ordering;

use super::RedisPresence;
use super::drift::{staff_flag, strings};
use super::scripts::{PREFIX, Stored, key};
use crate::domain::now;
use crate::presence::{PresenceError, Transition};

impl RedisPresence {
    /// Rewrites this node's sockets from the mirror. Returns the transitions it caused, minus
    /// the `online` ones that only restore what Redis forgot.
    pub(super) async fn resync(&self) -> Result<Vec<Transition>, PresenceError> {
        let _exclusive = self.gate.write().await;
        // A resync follows a reconnect or a lost key: the server may have an empty script cache.
        self.load_scripts().await?;
        let mut args = vec![
            self.node.clone(),
            self.ttl_ms(),
            now().timestamp_millis().to_string(),
            PREFIX.to_owned(),
            self.due_ms(),
        ];
        // Users of whom Redis had already counted a socket here: their `online` went out then.
        let announced: HashSet<String> = {
            let mirror = self.mirror.lock().unwrap_or_else(|p| p.into_inner());
            args.reserve(mirror.len() * 4);
            for (socket_id, m) in mirror.iter() {
                let e = &m.entry(socket_id, &self.node);
                args.extend([
                    e.socket_id.clone(),
                    e.user_id.clone(),
                    Stored::json(e),
                    staff_flag(e),
                ]);
            }
            mirror
                .values()
                .filter(|m| m.confirmed)
                .map(|m| m.user_id().to_owned())
                .collect()
        };
        let v = self
            .change(&self.scripts.resync, vec![key("nodes")], args)
            .await?;
        let mut parts = v.into_array().into_iter();
        let reaped = parts.next().and_then(|v| v.as_i64()).unwrap_or(0) == 1;
        let online = parts.next().map(strings).unwrap_or_default();
        let offline = parts.next().map(strings).unwrap_or_default();
        // Redis now counts every socket of the mirror (the exclusive gate kept it unchanged).
        for m in self
            .mirror
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values_mut()
        {
            m.confirmed = true;
        }
        #[cfg(any(test, feature = "test-support"))]
        self.resyncs.fetch_add(1, Ordering::Relaxed);
        tracing::info!(node = %self.node, reaped, online = online.len(), offline = offline.len(), "presence resynced");
        let mut changes = Vec::with_capacity(online.len() + offline.len());
        // A reaped node's users were announced offline: bringing them back is news.
        changes.extend(
            online
                .into_iter()
                .filter(|user| reaped || !announced.contains(user))
                .map(|user_id| Transition {
                    user_id,
                    online: true,
                }),
        );
        changes.extend(offline.into_iter().map(|user_id| Transition {
            user_id,
            online: false,
        }));
        Ok(changes)
    }
}
