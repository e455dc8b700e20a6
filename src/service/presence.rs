//! Presence transitions: a socket comes or goes, and a user's first or last socket anywhere
//! is announced (`user:status`) to staff and their chat partners.

use super::events::{self, UserStatus};
use crate::cluster::rooms;
use crate::domain::AuthUser;
use crate::error::{AppError, ErrorCode};
use crate::presence::{PresenceError, SocketEntry, SocketPage, UserPresence};
use crate::state::AppState;
use crate::store::StoreOp;

/// A presence failure as clients see it (the cause goes to the logs only).
fn presence_error(e: PresenceError) -> AppError {
    match e {
        PresenceError::BadCursor => AppError::validation("malformed cursor"),
        PresenceError::Unavailable(cause) => {
            tracing::warn!(error = %cause, "presence unavailable");
            AppError::new(ErrorCode::Unavailable, "presence is unavailable")
        }
    }
}

impl AppState {
    /// One page of every socket in the cluster (staff only). `limit` is parsed only once the
    /// caller is known to be staff, so a user is told `FORBIDDEN`, whatever the limit.
    pub async fn active_sockets(
        &self,
        user: &AuthUser,
        cursor: Option<&str>,
        limit: impl FnOnce() -> Result<usize, AppError>,
    ) -> Result<SocketPage, AppError> {
        if !user.is_staff() {
            return Err(AppError::forbidden("only staff list active users"));
        }
        let limit = limit()?;
        if cursor.is_some_and(|c| c.len() > 256) {
            return Err(AppError::validation("malformed cursor"));
        }
        self.presence
            .sockets(cursor, limit)
            .await
            .map_err(presence_error)
    }

    /// A user's presence: staff ask about anyone, a user about themself only.
    pub async fn user_presence(
        &self,
        user: &AuthUser,
        user_id: &str,
    ) -> Result<UserPresence, AppError> {
        if !user.is_staff() && user.id != user_id {
            return Err(AppError::forbidden("users see their own status only"));
        }
        self.presence.status(user_id).await.map_err(presence_error)
    }

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
            .timed(StoreOp::ChatPartners, self.store.chat_partners(user_id))
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
