//! The graceful drain of a node that was told to stop.

use std::time::Duration;

use crate::state::AppState;

/// The graceful drain: turn `/readyz` 503 and refuse new sockets, wait `DRAIN_DELAY_SECS`
/// so load balancers notice, withdraw our presence (announcing users left offline while the
/// adapter can still reach other nodes), close our sockets' connections so clients reconnect
/// elsewhere, let in-flight events finish, and only then close the namespace. Every step is
/// bounded so that the drain ends within `grace`.
pub async fn drain(state: &AppState, grace: Duration) {
    let deadline = drain_deadline(grace);
    state.drain.start();
    tracing::info!(node = %state.node_id, "draining");
    tokio::time::sleep(state.config.drain_delay.min(grace / 2)).await;
    let withdraw = async {
        match state.presence.withdraw_node().await {
            Ok(users) => {
                // Through the grace: most of them reconnect to another node meanwhile. Their
                // `offline` is due in presence, so another node (or this one, restarted on the
                // same DATA_DIR) announces it if this one is gone by then.
                if !users.is_empty() {
                    state.statuses().offline_after_grace().await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not withdraw presence"),
        }
    };
    if tokio::time::timeout_at(deadline, withdraw).await.is_err() {
        tracing::warn!(node = %state.node_id, "grace period over before presence was withdrawn");
    }
    // Another node assigns chats from now on, without waiting for the gate's lease to lapse.
    crate::service::desk::assignment::release_assignment_gate(state, deadline).await;
    // Another node sends the webhooks from now on, without waiting for the lease to lapse.
    if let Some(webhooks) = state.webhooks.running() {
        let _ = tokio::time::timeout_at(deadline, webhooks.lease.release()).await;
    }
    // Close the connections a few hundred at a time: each client sees its transport close
    // and reconnects (through the load balancer, to a ready node) without a stampede.
    // Whatever is left (long-polling sessions between requests) has its transport closed at
    // once after.
    let close = async {
        state
            .connections
            .close_paced(DRAIN_BATCH, DRAIN_PAUSE)
            .await;
        state.sockets.close_transports();
    };
    if tokio::time::timeout_at(deadline, close).await.is_err() {
        tracing::warn!(node = %state.node_id, "grace period over before every socket was closed");
    }
    // The events still being handled finish with the namespace open: a message saved (and
    // logged for recovery) whose broadcast came after the namespace closed reached no other
    // node and no ack (its fan-out found no namespace: a panic in the Redis adapter's `to`),
    // so the clients of other nodes never heard it live (issue 32). Webhook events published
    // here are in the outbox before the node stops.
    while (state.drain.events_in_flight() > 0
        || state.fanout.unconfirmed() > 0
        || state.webhooks.unwritten() > 0)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if tokio::time::timeout_at(deadline, state.sockets.close_all())
        .await
        .is_err()
    {
        tracing::warn!(node = %state.node_id, "grace period over before the namespace was closed");
    }
    tracing::info!(node = %state.node_id, in_flight = state.drain.events_in_flight(), "drained");
}

/// Connections closed per batch during a drain, and the pause between batches.
const DRAIN_BATCH: usize = 200;
const DRAIN_PAUSE: Duration = Duration::from_millis(100);

/// When a drain that starts now must be over: the grace period less a margin for the process
/// to exit, so that it exits within `SHUTDOWN_GRACE_SECS` of the signal.
pub fn drain_deadline(grace: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + grace.saturating_sub(Duration::from_millis(500))
}
