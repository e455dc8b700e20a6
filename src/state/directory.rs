//! This node's writer of the user directory (`DeskStore::see_users`): the role and name each
//! identity's tokens name, recorded where a token is first seen (the handshake and the REST
//! removal gate), so that the removal rule ("only superadmins act on staff") knows a target's
//! role though it has no socket.
//!
//! Hot path: every handshake and REST call passes here. An identity this node recorded with the
//! same role within [`REFRESH`] costs one map lookup; a new one joins a batch (`batch.rs`), so a
//! handshake storm of new identities is a few store writes, not one each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::batch::Batcher;
use crate::domain::{AuthUser, Role, now};
use crate::store::Store;

/// How long this node trusts its own last write of an identity (its `lastSeen` moves at most
/// this often per node).
pub const REFRESH: Duration = Duration::from_secs(3600);

/// Identities written in one batch at most.
const BATCH: usize = 256;

/// Identities remembered at most; past it the memory starts again (each is written once more).
const MAX_REMEMBERED: usize = 200_000;

/// The node's record of which identities it wrote, and the batched writer.
pub struct Directory {
    /// Identity -> the role written and when.
    written: Mutex<HashMap<String, (Role, Instant)>>,
    /// Sends the sightings to the store in batches.
    writer: Batcher<AuthUser, bool>,
}

impl Directory {
    /// A directory writing through `store` (starts the batch task: inside a tokio runtime).
    pub fn new(store: Arc<dyn Store>) -> Self {
        let writer = Batcher::new(BATCH, move |users: Vec<AuthUser>| {
            let store = store.clone();
            async move {
                let ok = match store.see_users(&users, now()).await {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::warn!(%error, users = users.len(), "could not record identities in the user directory");
                        false
                    }
                };
                vec![ok; users.len()]
            }
        });
        Self {
            written: Mutex::new(HashMap::new()),
            writer,
        }
    }

    /// Records `user` unless this node wrote it with this role within [`REFRESH`]. A failed
    /// write is logged and tried again at the next sighting.
    pub async fn see(&self, user: &AuthUser) {
        if self.is_fresh(user) {
            return;
        }
        if self.writer.call(user.clone()).await == Some(true) {
            let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
            if written.len() >= MAX_REMEMBERED {
                written.clear();
            }
            written.insert(user.id.clone(), (user.role, Instant::now()));
        }
    }

    fn is_fresh(&self, user: &AuthUser) -> bool {
        let written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        written
            .get(&user.id)
            .is_some_and(|(role, at)| *role == user.role && at.elapsed() < REFRESH)
    }
}
