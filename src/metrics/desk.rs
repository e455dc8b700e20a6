//! The support desk's metrics: removals made (`docs/support-desk.md`), the handshakes and
//! REST calls they refused, the audit log's entries (recorded, failed, trimmed), assignments,
//! chats put back in the queue, the queue itself, and the staff available.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

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
    /// Chats given an assigned admin: `[auto, manual]`.
    assignments: [IntCounter; 2],
    /// Chats put back in the queue (their admin away or offline for `REASSIGN_AFTER_SECS`).
    pub requeued: IntCounter,
    /// Assignment passes this node ran (one at a time in the cluster).
    pub passes: IntCounter,
    /// Chats waiting in the queue, as the last assignment pass on this node saw them (at most
    /// one pass's read, 200).
    pub queue_length: IntGauge,
    /// How long the oldest waiting chat has waited, as that pass saw it.
    pub queue_oldest_wait: Gauge,
    /// Staff available in the whole cluster, as this node last counted them (every heartbeat).
    pub staff_available: IntGauge,
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
        let assignments = reg(
            r,
            IntCounterVec::new(
                Opts::new(
                    "desk_assignments_total",
                    "Chats given an assigned admin, by who assigned (auto, manual)",
                ),
                &["by"],
            )
            .unwrap(),
        );
        DeskMetrics {
            audited,
            audit_failures,
            audit_trimmed,
            assignments: [
                assignments.with_label_values(&["auto"]),
                assignments.with_label_values(&["manual"]),
            ],
            requeued: reg(
                r,
                IntCounter::new(
                    "desk_requeued_total",
                    "Chats put back in the queue because their admin stayed away or offline",
                )
                .unwrap(),
            ),
            passes: reg(
                r,
                IntCounter::new(
                    "desk_assignment_passes_total",
                    "Auto-assignment passes this node ran",
                )
                .unwrap(),
            ),
            queue_length: reg(
                r,
                IntGauge::new(
                    "desk_queue_length",
                    "Chats waiting for auto-assignment (as the last pass on this node read them)",
                )
                .unwrap(),
            ),
            queue_oldest_wait: reg(
                r,
                Gauge::new(
                    "desk_queue_oldest_wait_seconds",
                    "How long the oldest chat waiting for auto-assignment has waited",
                )
                .unwrap(),
            ),
            staff_available: reg(
                r,
                IntGauge::new(
                    "desk_staff_available",
                    "Staff available in the cluster, as this node last counted them",
                )
                .unwrap(),
            ),
            removals: removals.with_label_values(&["disconnect"]),
            revocations: removals.with_label_values(&["revoke"]),
            refusals: [
                refusals.with_label_values(&["blocked"]),
                refusals.with_label_values(&["revoked"]),
            ],
        }
    }

    /// Counts an assignment, by auto-assignment or by staff.
    pub fn assigned(&self, auto: bool) {
        self.assignments[usize::from(!auto)].inc();
    }

    /// Counts a caller refused by a removal.
    pub fn refused(&self, why: Barred) {
        match why {
            Barred::Blocked => self.refusals[0].inc(),
            Barred::Revoked => self.refusals[1].inc(),
        }
    }
}
