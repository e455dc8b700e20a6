//! Presence transitions: a socket comes or goes, and a user's first or last socket anywhere
//! is announced (`user:status`) to staff and their chat partners.

use super::events::{self, UserStatus};
use crate::cluster::rooms;
use crate::presence::SocketEntry;
use crate::state::AppState;

impl AppState {
    /// Registers a socket in presence; announces `online` if it is the user's first anywhere.
    pub async fn socket_online(&self, entry: &SocketEntry) {
        match self.presence.connect(entry).await {
            Ok(true) => self.announce_status(&entry.user_id, true).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "presence connect failed"),
        }
    }

    /// Removes a socket from presence; announces `offline` if it was the user's last.
    pub async fn socket_offline(&self, user_id: &str, socket_id: &str) {
        match self.presence.disconnect(user_id, socket_id).await {
            Ok(true) => self.announce_status(user_id, false).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "presence disconnect failed"),
        }
    }

    /// Sends `user:status` to `admins` and the participants of the user's open chats.
    pub async fn announce_status(&self, user_id: &str, online: bool) {
        if online {
            self.metrics.presence_users_online.inc();
        } else {
            self.metrics.presence_users_online.dec();
        }
        let partners = match self
            .timed("chat_partners", self.store.chat_partners(user_id))
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e.message, "could not load chat partners; telling admins only");
                Vec::new()
            }
        };
        let mut targets: Vec<String> = partners.iter().map(|p| rooms::user(p)).collect();
        targets.push(rooms::ADMINS.to_owned());
        let payload = UserStatus {
            user_id,
            status: if online { "online" } else { "offline" },
        };
        self.emit(
            targets,
            vec![rooms::user(user_id)],
            events::USER_STATUS,
            &payload,
        )
        .await;
    }
}
