//! The audit log (PROTOCOL.md, "The support desk"): staff actions recorded as `{ id, at,
//! actor: { id, role }, action, target: { type, id }, details }`, listed for superadmins
//! (`GET /api/audit`) newest first, and kept `AUDIT_RETENTION_DAYS` ([`trim_audit_log`]).
//!
//! Recording never fails the action it records: the action is done by then, so a store that
//! cannot keep the entry is logged (with the whole entry) and counted
//! (`switchboard_desk_audit_failures_total`), and the caller gets its answer.
//!
//! What records what: [`Audit::chat_change`] (assignments, status and priority, by staff or by
//! `system`), called by `announce_chat_updated` for every `chat:updated`; reports
//! (`service/reports.rs`) and removals (`removals.rs`) call [`Audit::record`].

use serde_json::{Value, json};

use crate::domain::{
    Actor, AuditAction, AuditEntry, AuditQuery, AuthUser, Chat, Role, new_object_id, now,
};
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::paging::encode_cursor;
use crate::state::{AppState, NodeState};
use crate::store::Store;

/// How often each node deletes entries past the retention period.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// A page of the audit log and the cursor of the next (`None` on the last page).
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next: Option<String>,
}

/// The audit log's use cases: record an action, read a page.
#[derive(Clone, Copy)]
pub struct Audit<'a> {
    /// Where entries are kept.
    store: &'a dyn Store,
    /// Entries recorded, and those the store could not keep.
    metrics: &'a Metrics,
}

impl<'a> Audit<'a> {
    /// The node's audit log.
    pub fn of(node: &'a NodeState) -> Self {
        Audit {
            store: &*node.store,
            metrics: &node.metrics,
        }
    }

    /// Records one action. Never fails: see the module doc.
    pub async fn record(
        &self,
        actor: &Actor,
        action: AuditAction,
        target: crate::domain::AuditTarget,
        details: Value,
    ) {
        let entry = AuditEntry {
            id: new_object_id(),
            at: now(),
            actor: actor.clone(),
            action,
            target,
            details,
        };
        match self.store.record_audit(&entry).await {
            Ok(()) => self
                .metrics
                .desk
                .audited
                .with_label_values(&[action.as_str()])
                .inc(),
            Err(error) => {
                self.metrics.desk.audit_failures.inc();
                tracing::error!(%error, entry = ?entry, "could not record an audit entry");
            }
        }
    }

    /// Records what a change of a chat did: its assignment (`chat.assign`, `chat.reassign`,
    /// `chat.unassign`), its status and its priority, one entry each, by `actor`
    /// ([`Actor::system`] for auto-assignment). A change of nothing records nothing.
    pub async fn chat_change(&self, actor: &Actor, before: &Chat, after: &Chat) {
        let target = || crate::domain::AuditTarget::chat(after.id.as_str());
        let assignment = match (&before.assigned_admin, &after.assigned_admin) {
            (a, b) if a == b => None,
            (None, Some(_)) => Some(AuditAction::ChatAssign),
            (Some(_), Some(_)) => Some(AuditAction::ChatReassign),
            (Some(_), None) => Some(AuditAction::ChatUnassign),
            (None, None) => None,
        };
        if let Some(action) = assignment {
            let details = json!({ "from": before.assigned_admin, "to": after.assigned_admin });
            self.record(actor, action, target(), details).await;
        }
        if before.status != after.status {
            let details = json!({ "from": before.status, "to": after.status });
            self.record(actor, AuditAction::ChatStatus, target(), details)
                .await;
        }
        if before.priority != after.priority {
            let details = json!({ "from": before.priority, "to": after.priority });
            self.record(actor, AuditAction::ChatPriority, target(), details)
                .await;
        }
    }

    /// A page of the audit log (superadmins only), newest first.
    pub async fn page(
        &self,
        caller: &AuthUser,
        mut query: AuditQuery,
    ) -> Result<AuditPage, AppError> {
        if caller.role != Role::Superadmin {
            return Err(AppError::forbidden("only superadmins read the audit log"));
        }
        let limit = query.limit;
        query.limit = limit + 1;
        let mut entries = self.store.audit_entries(&query).await?;
        let next = if entries.len() > limit {
            entries.truncate(limit);
            entries.last().map(|e| encode_cursor(e.at, &e.id))
        } else {
            None
        };
        Ok(AuditPage { entries, next })
    }
}

/// Deletes audit entries older than `AUDIT_RETENTION_DAYS`, at start-up and every hour, on
/// every node (the deletes are idempotent; a cluster's nodes need no coordination for them).
pub async fn trim_audit_log(state: AppState) {
    let keep = chrono::Duration::days(i64::from(state.config.audit_retention_days));
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match state.store.trim_audit(now() - keep).await {
            Ok(0) => {}
            Ok(n) => {
                state.metrics.desk.audit_trimmed.inc_by(n);
                tracing::info!(deleted = n, "audit log trimmed");
            }
            Err(error) => tracing::warn!(%error, "could not trim the audit log; retrying later"),
        }
    }
}
