//! Presence transitions: a socket comes or goes, and a user's first or last socket anywhere
//! is announced (`user:status`) to staff and their chat partners.

use std::time::Duration;

use super::events::{self, UserStatus};
use crate::cluster::rooms;
use crate::domain::AuthUser;
use crate::error::{AppError, ErrorCode};
use crate::presence::{PresenceError, SocketEntry, SocketPage, UserPresence};
use crate::state::{AppState, Session};
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

    /// `OFFLINE_GRACE_SECS`.
    fn offline_grace(&self) -> Duration {
        Duration::from_secs(self.config.offline_grace_secs)
    }

    /// Whether a user with no socket left is still inside the offline grace (still `online`
    /// to everyone: the status API, and no `offline` announced yet).
    pub fn in_offline_grace(&self, p: &UserPresence) -> bool {
        p.sockets == 0
            && p.last_seen.is_some_and(|seen| {
                (crate::domain::now() - seen)
                    .to_std()
                    .is_ok_and(|gone| gone < self.offline_grace())
            })
    }

    /// Registers a socket in presence; announces `online` if it is the user's first anywhere,
    /// unless the user's last socket went away inside the grace (a reload, a blip, a drain the
    /// user came back from): then `offline` was never announced, and neither is `online`.
    ///
    /// Every registration (the connect handler's, a legacy `user:online`) passes here, and none
    /// can leave a socket that is gone behind: the disconnect marks the session gone *before* it
    /// takes the socket out, and a registration checks the mark *after* its own write is done,
    /// so either the disconnect's removal comes after this write, or this check sees the mark
    /// and removes the socket itself.
    pub async fn socket_online(&self, socket_id: &str, session: &Session) {
        if session.is_gone() {
            return;
        }
        let entry = SocketEntry {
            user_id: session.user.id.clone(),
            socket_id: socket_id.to_owned(),
            user_name: session.user.name.clone(),
            user_role: session.user.role,
            connected_at: session.connected_at,
            node: self.node_id.clone(),
        };
        // Read before the connect: once the user has a socket, presence shows no `last_seen`.
        let before = match self.offline_grace().is_zero() {
            true => None,
            false => self.presence.status(&entry.user_id).await.ok(),
        };
        #[cfg(any(test, feature = "test-support"))]
        self.test_hooks.before_registration(socket_id).await;
        match self.presence.connect(&entry).await {
            Ok(true) => {
                if !before.is_some_and(|p| self.in_offline_grace(&p)) {
                    self.announce_status(&entry.user_id, true).await;
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "presence connect failed"),
        }
        if session.is_gone() {
            self.remove_socket(&entry.user_id, socket_id).await;
        }
    }

    /// Removes a disconnected socket from presence for good; if it was the user's last,
    /// `offline` follows after the grace unless a socket of theirs comes back meanwhile.
    pub async fn socket_offline(&self, socket_id: &str, session: &Session) {
        session.mark_gone();
        self.remove_socket(&session.user.id, socket_id).await;
        #[cfg(any(test, feature = "test-support"))]
        self.test_hooks.departed(socket_id);
    }

    async fn remove_socket(&self, user_id: &str, socket_id: &str) {
        match self.presence.disconnect(user_id, socket_id).await {
            Ok(true) => self.offline_after_grace(user_id).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "presence disconnect failed"),
        }
    }

    /// A user's last socket is gone (a disconnect, a drain, a dead node reaped): announces
    /// `offline` once `OFFLINE_GRACE_SECS` have passed, if the user still has no socket and no
    /// later departure took over the announcement (its `last_seen` is still this one). Checked
    /// against the cluster-wide presence, so of all the nodes that saw the user go, only the
    /// one that saw the last departure announces. One task per departing user (not per socket).
    pub async fn offline_after_grace(&self, user_id: &str) {
        let grace = self.offline_grace();
        if grace.is_zero() {
            return self.announce_status(user_id, false).await;
        }
        let seen = self
            .presence
            .status(user_id)
            .await
            .ok()
            .and_then(|p| p.last_seen);
        let state = self.clone();
        let user_id = user_id.to_owned();
        tokio::spawn(async move { state.confirm_offline(&user_id, seen, grace).await });
    }

    /// The end of the grace for `user_id` (see [`AppState::offline_after_grace`]).
    pub async fn confirm_offline(
        &self,
        user_id: &str,
        seen: Option<crate::domain::Timestamp>,
        grace: Duration,
    ) {
        tokio::time::sleep(grace).await;
        match self.presence.status(user_id).await {
            Ok(p) if p.sockets == 0 && p.last_seen == seen => {
                self.announce_status(user_id, false).await
            }
            Ok(_) => {}
            // Unknown: better one `offline` than a user shown online for ever.
            Err(_) => self.announce_status(user_id, false).await,
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
