//! The loops every node runs beside its listener: the presence heartbeat and the recovery
//! log's trim and statistics.

use std::time::Duration;

use crate::ordering::Turn;
use crate::state::AppState;

/// Keeps the recovery log's size and trim lag current in the metrics (two cheap reads every
/// 15 s: `XLEN` and the first entry, or one SQLite count).
pub async fn recovery_log_stats(state: AppState) {
    let Some(recovery) = state.recovery.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match recovery.stats().await {
            Ok(stats) => {
                let m = &state.metrics.recovery;
                m.log_entries.set(stats.entries as i64);
                let age_ms = stats
                    .oldest_ms
                    .map_or(0, |o| crate::recovery::now_ms().saturating_sub(o));
                let lag = age_ms.saturating_sub(recovery.window().as_millis() as u64);
                m.trim_lag.set(lag as f64 / 1000.0);
            }
            Err(e) => tracing::debug!(error = %e, "recovery log stats unavailable"),
        }
    }
}

/// Keeps the recovery log and this node's tail within their byte budgets and the log within
/// its window: one trim a second (a script in Redis, or one `DELETE` of the SQLite log), so a
/// burst of big messages is trimmed within a second of passing the budget (issue 25, item 7).
pub async fn trim_recovery_log(state: AppState) {
    let Some(recovery) = state.recovery.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match recovery.trim().await {
            Ok((log, tail)) => {
                let m = &state.metrics.recovery;
                m.log_bytes.set(i64::try_from(log).unwrap_or(i64::MAX));
                m.tail_bytes.set(i64::try_from(tail).unwrap_or(i64::MAX));
            }
            Err(e) => tracing::debug!(error = %e, "recovery log trim failed"),
        }
    }
}

/// The renewal loop: one per node, every `HEARTBEAT_INTERVAL_SECS`; announces the transitions
/// presence reports (users whose node died, sockets written back after an outage).
pub async fn heartbeat(state: AppState) {
    let mut tick = tokio::time::interval(state.config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if state.drain.is_draining() {
            continue;
        }
        let result = state.presence.heartbeat().await;
        state.metrics.presence_heartbeat(result.is_ok());
        match result {
            Ok(changes) => {
                state.readiness.adapter.note_answer();
                let offline = changes.iter().filter(|c| !c.online).count();
                state.metrics.presence_reaped_users.inc_by(offline as u64);
                for change in changes.iter().filter(|c| c.online) {
                    state
                        .statuses()
                        .announce_status(&change.user_id, true, Turn::unordered(), None)
                        .await;
                }
                // A dead node's users: offline after the grace, unless they came back.
                if offline > 0 {
                    state.statuses().offline_after_grace().await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "presence heartbeat failed"),
        }
        // Whatever is due and unclaimed: left by a node that drained or died before its grace
        // ended (or by this one, before a restart).
        state.statuses().announce_due_offline().await;
        // The desk's availability gauge, counted once per heartbeat on every node.
        if let Ok(n) = state.availability.available().await {
            state.metrics.desk.staff_available.set(n as i64);
        }
    }
}
