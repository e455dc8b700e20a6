//! Removing someone, cluster-wide: `POST /api/users/{id}/disconnect` (with an optional block),
//! `DELETE /api/users/{id}/block` and `POST /api/users/{id}/revoke-tokens`, and the check
//! ([`Removals::check_removal`]) that enforces them at every handshake, every REST call and
//! every resume.
//!
//! The record is written to the store first (every node reads it there, and it outlives
//! restarts), then the user's sockets are disconnected through the adapter on every node. A
//! socket disconnected by the server ends its recovery session (`realtime/handshake.rs`); a
//! session already dropped is not resumed because it started before the record's `removedAt`.
//!
//! Staff act on users, only superadmins on staff: an admin naming a target the user directory
//! knows as staff (the role its latest token named, recorded at every first handshake and REST
//! call: `state/directory.rs`), or naming themself, is refused `FORBIDDEN` and nothing
//! changes. An id no token ever named may still be removed by an admin; should it turn out to
//! be staff, the removal is not applied to its staff tokens ([`Removal::bars`]) and disconnects
//! only its `user`-role sockets, while a superadmin's reaches everyone.
//!
//! Every removal, block, unblock and revocation is recorded in the audit log (`audit.rs`).

use serde::Serialize;
use serde_json::json;

use crate::domain::{
    Actor, AuditAction, AuditTarget, AuthUser, DisconnectRequest, Removal, RemovalChange, Role,
    Timestamp, now, parse_plain_id, rfc3339, rfc3339_opt,
};
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::service::desk::audit::Audit;
use crate::state::{LocalSockets, NodeState};
use crate::store::Store;

/// What [`Removals::check_removal`] found about a caller it lets in.
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

/// The removal use cases, and the check that enforces them.
#[derive(Clone, Copy)]
pub struct Removals<'a> {
    /// Removal records, and the directory of known staff.
    store: &'a dyn Store,
    /// How many sockets a removed user had.
    presence: &'a dyn Presence,
    /// Disconnects a user's sockets on every node.
    sockets: &'a dyn LocalSockets,
    /// Removals, revocations and refusals.
    metrics: &'a Metrics,
    /// Records every removal.
    audit: Audit<'a>,
}

impl<'a> Removals<'a> {
    /// The node's removal use cases.
    pub fn of(node: &'a NodeState) -> Self {
        Removals {
            store: &*node.store,
            presence: &*node.presence,
            sockets: &*node.sockets,
            metrics: &node.metrics,
            audit: Audit::of(node),
        }
    }

    /// Who may act: staff; an admin only on a target not known as staff, and not on themself
    /// (only superadmins act on staff). A directory that cannot answer refuses (`UNAVAILABLE`):
    /// the rule is not skipped because the store is down.
    async fn authorize_removal(&self, actor: &AuthUser, target: &str) -> Result<String, AppError> {
        if !actor.is_staff() {
            return Err(AppError::forbidden("only staff remove users"));
        }
        let target = parse_plain_id("userId", target)?;
        if actor.role != Role::Superadmin {
            let staff = target == actor.id
                || self
                    .store
                    .known_user(&target)
                    .await?
                    .is_some_and(|known| known.role.is_staff());
            if staff {
                return Err(AppError::forbidden("only superadmins act on staff"));
            }
        }
        Ok(target)
    }

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
        let target = self.authorize_removal(actor, target).await?;
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
        let (action, details) = match blocked_until {
            Some(until) => (
                AuditAction::UserBlock,
                json!({
                    "sockets": sockets,
                    "blockSecs": request.block_secs,
                    "blockedUntil": until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "reason": request.reason,
                }),
            ),
            None => (
                AuditAction::UserDisconnect,
                json!({ "sockets": sockets, "reason": request.reason }),
            ),
        };
        self.audit
            .record(
                &Actor::of(actor),
                action,
                AuditTarget::user(&target),
                details,
            )
            .await;
        Ok(Disconnected {
            user_id: target,
            sockets,
            blocked_until,
        })
    }

    /// Ends `target`'s block now.
    pub async fn unblock_user(&self, actor: &AuthUser, target: &str) -> Result<String, AppError> {
        let target = self.authorize_removal(actor, target).await?;
        self.store
            .change_removal(&target, RemovalChange::Unblock)
            .await?;
        tracing::info!(actor = %actor.id, user_id = %target, "user unblocked");
        self.audit
            .record(
                &Actor::of(actor),
                AuditAction::UserUnblock,
                AuditTarget::user(&target),
                json!({}),
            )
            .await;
        Ok(target)
    }

    /// Refuses every token of `target` issued before now (the next whole second: a token
    /// issued in this second may be the one being revoked) and disconnects their sockets.
    pub async fn revoke_tokens(&self, actor: &AuthUser, target: &str) -> Result<Revoked, AppError> {
        let target = self.authorize_removal(actor, target).await?;
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
        // A later revocation made at the same time by someone else wins.
        let revoked_before = kept.and_then(|r| r.revoked_before).unwrap_or(before);
        let details = json!({
            "revokedBefore": revoked_before.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        self.audit
            .record(
                &Actor::of(actor),
                AuditAction::UserRevoke,
                AuditTarget::user(&target),
                details,
            )
            .await;
        Ok(Revoked {
            user_id: target,
            revoked_before,
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
