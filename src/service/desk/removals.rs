//! Removing someone, cluster-wide: `POST /api/users/{id}/disconnect` (with an optional block),
//! `DELETE /api/users/{id}/block` and `POST /api/users/{id}/revoke-tokens`, and the check
//! ([`AppState::check_removal`]) that enforces them at every handshake, every REST call and
//! every resume.
//!
//! The record is written to the store first (every node reads it there, and it outlives
//! restarts), then the user's sockets are disconnected through the adapter on every node. A
//! socket disconnected by the server ends its recovery session (`realtime/handshake.rs`); a
//! session already dropped is not resumed because it started before the record's `removedAt`.
//!
//! Staff act on users, only superadmins on staff. A node cannot know the role of an id that
//! has no socket, so the rule is kept where the role is known: an admin's removal disconnects
//! only the target's `user`-role sockets, and is not applied to staff tokens
//! ([`Removal::bars`]); a superadmin's reaches everyone.

use serde::Serialize;

use crate::domain::{
    AuthUser, DisconnectRequest, Removal, RemovalChange, Role, Timestamp, now, parse_plain_id,
    rfc3339, rfc3339_opt,
};
use crate::error::AppError;
use crate::state::AppState;

/// What [`AppState::check_removal`] found about a caller it lets in.
#[derive(Debug)]
pub enum RemovalCheck {
    /// Never removed.
    Clear,
    /// Removed before, but not barred now (a block that ended, a token issued after a
    /// revocation): a resume checks the record's `removedAt`.
    Removed(Removal),
    /// The store could not answer.
    Unknown,
}

impl RemovalCheck {
    /// Whether a recovery session that started at `started_ms` may be resumed.
    pub fn allows_resume(&self, started_ms: u64) -> bool {
        match self {
            RemovalCheck::Clear => true,
            RemovalCheck::Removed(r) => !r.ended_session(started_ms),
            RemovalCheck::Unknown => false,
        }
    }
}

/// The answer to a disconnect.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Disconnected {
    pub user_id: String,
    /// The user's sockets in the cluster when they were disconnected.
    pub sockets: u64,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "rfc3339_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub blocked_until: Option<Timestamp>,
}

/// The answer to a revocation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revoked {
    pub user_id: String,
    /// Tokens issued before this instant (whole seconds) are refused.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub revoked_before: Timestamp,
}

/// Who may act: staff; an admin not on themself (only superadmins act on staff).
fn authorize(actor: &AuthUser, target: &str) -> Result<String, AppError> {
    if !actor.is_staff() {
        return Err(AppError::forbidden("only staff remove users"));
    }
    let target = parse_plain_id("userId", target)?;
    if actor.role != Role::Superadmin && target == actor.id {
        return Err(AppError::forbidden("only superadmins act on staff"));
    }
    Ok(target)
}

impl AppState {
    /// Whether the caller a verified token names may come in: their removal record, if any
    /// (a resume checks its `removedAt`), or the refusal (`FORBIDDEN: blocked`,
    /// `UNAUTHORIZED: invalid token (revoked)`). A store that cannot answer lets the caller
    /// in without a record: a store outage must not lock everyone out, and such a caller's
    /// resume starts a new session (see `realtime/handshake.rs`).
    pub async fn check_removal(
        &self,
        user: &AuthUser,
        issued_at: Option<u64>,
    ) -> Result<RemovalCheck, AppError> {
        match self.store.removal(&user.id).await.map_err(AppError::from) {
            Ok(Some(removal)) => match removal.bars(user.role, issued_at, now()) {
                Some(barred) => {
                    self.metrics.desk.refused(barred);
                    Err(barred.error())
                }
                None => Ok(RemovalCheck::Removed(removal)),
            },
            Ok(None) => Ok(RemovalCheck::Clear),
            Err(e) => {
                tracing::warn!(user_id = %user.id, error = %e.message, "removal check failed: let in");
                Ok(RemovalCheck::Unknown)
            }
        }
    }

    /// Disconnects every socket of `target` in the cluster, blocking them for
    /// `request.block_secs` if that is not 0.
    pub async fn disconnect_user(
        &self,
        actor: &AuthUser,
        target: &str,
        request: DisconnectRequest,
    ) -> Result<Disconnected, AppError> {
        let target = authorize(actor, target)?;
        let at = now();
        let blocked_until = (request.block_secs > 0)
            .then(|| at + chrono::Duration::seconds(request.block_secs as i64));
        let by_superadmin = actor.role == Role::Superadmin;
        let change = RemovalChange::Disconnect {
            at,
            blocked_until,
            by_superadmin,
        };
        self.store.change_removal(&target, change).await?;
        let sockets = self.disconnect_everywhere(&target, by_superadmin).await;
        self.metrics.desk.removals.inc();
        tracing::info!(actor = %actor.id, user_id = %target, sockets, block_secs = request.block_secs, reason = request.reason.as_deref().unwrap_or(""), "user disconnected");
        Ok(Disconnected {
            user_id: target,
            sockets,
            blocked_until,
        })
    }

    /// Ends `target`'s block now.
    pub async fn unblock_user(&self, actor: &AuthUser, target: &str) -> Result<String, AppError> {
        let target = authorize(actor, target)?;
        self.store
            .change_removal(&target, RemovalChange::Unblock)
            .await?;
        tracing::info!(actor = %actor.id, user_id = %target, "user unblocked");
        Ok(target)
    }

    /// Refuses every token of `target` issued before now (the next whole second: a token
    /// issued in this second may be the one being revoked) and disconnects their sockets.
    pub async fn revoke_tokens(&self, actor: &AuthUser, target: &str) -> Result<Revoked, AppError> {
        let target = authorize(actor, target)?;
        let at = now();
        let before = chrono::DateTime::from_timestamp(at.timestamp() + 1, 0).unwrap_or(at);
        let by_superadmin = actor.role == Role::Superadmin;
        let change = RemovalChange::Revoke {
            at,
            before,
            by_superadmin,
        };
        let kept = self.store.change_removal(&target, change).await?;
        self.disconnect_everywhere(&target, by_superadmin).await;
        self.metrics.desk.revocations.inc();
        tracing::info!(actor = %actor.id, user_id = %target, "tokens revoked");
        Ok(Revoked {
            user_id: target,
            // A later revocation made at the same time by someone else wins.
            revoked_before: kept.and_then(|r| r.revoked_before).unwrap_or(before),
        })
    }

    /// Disconnects the user's sockets on every node (staff sockets too only for a superadmin);
    /// how many the cluster counted just before.
    async fn disconnect_everywhere(&self, user_id: &str, staff_too: bool) -> u64 {
        let sockets = self.presence.status(user_id).await.map_or(0, |p| p.sockets);
        if let Err(error) = self.sockets.disconnect_user(user_id, staff_too).await {
            tracing::warn!(user_id, %error, "could not disconnect every socket of a removed user");
        }
        sockets
    }
}
