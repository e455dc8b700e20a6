//! The support desk's metrics: removals made (`docs/support-desk.md`), the handshakes and
//! REST calls they refused, and the audit log's entries (recorded, failed, trimmed).

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use super::reg;
use crate::domain::Barred;

/// The support desk's counters.
pub struct DeskMetrics {
    /// `POST /api/users/{id}/disconnect` calls that went through.
    pub removals: IntCounter,
    /// `POST /api/users/{id}/revoke-tokens` calls that went through.
    pub revocations: IntCounter,
    /// Handshakes and REST calls refused by a removal: `[blocked, revoked]`.
    refusals: [IntCounter; 2],
    /// Audit entries recorded, by action (a low-cardinality label: the ten action names).
    pub audited: IntCounterVec,
    /// Audit entries that could not be recorded (the action itself was done; see the logs).
    pub audit_failures: IntCounter,
    /// Audit entries deleted past `AUDIT_RETENTION_DAYS` by this node's trimmer.
    pub audit_trimmed: IntCounter,
}

impl DeskMetrics {
    pub(super) fn register(r: &Registry) -> Self {
        let removals = reg(
            r,
            IntCounterVec::new(
                Opts::new(
                    "desk_removals_total",
                    "Users removed by staff, by action (disconnect, revoke)",
                ),
                &["action"],
            )
            .unwrap(),
        );
        let refusals = reg(
            r,
            IntCounterVec::new(
                Opts::new(
                    "desk_refusals_total",
                    "Handshakes and REST calls refused because their user was removed, by reason",
                ),
                &["reason"],
            )
            .unwrap(),
        );
        let audited = reg(
            r,
            IntCounterVec::new(
                Opts::new(
                    "desk_audit_entries_total",
                    "Audit log entries recorded, by action",
                ),
                &["action"],
            )
            .unwrap(),
        );
        let audit_failures = reg(
            r,
            IntCounter::new(
                "desk_audit_failures_total",
                "Audit log entries that could not be recorded (the store failed)",
            )
            .unwrap(),
        );
        let audit_trimmed = reg(
            r,
            IntCounter::new(
                "desk_audit_trimmed_total",
                "Audit log entries deleted past AUDIT_RETENTION_DAYS",
            )
            .unwrap(),
        );
        DeskMetrics {
            audited,
            audit_failures,
            audit_trimmed,
            removals: removals.with_label_values(&["disconnect"]),
            revocations: removals.with_label_values(&["revoke"]),
            refusals: [
                refusals.with_label_values(&["blocked"]),
                refusals.with_label_values(&["revoked"]),
            ],
        }
    }

    /// Counts a caller refused by a removal.
    pub fn refused(&self, why: Barred) {
        match why {
            Barred::Blocked => self.refusals[0].inc(),
            Barred::Revoked => self.refusals[1].inc(),
        }
    }
}
