//! A resumed socket's replay: what its session missed, written before anything broadcast
//! since it joined its rooms (`docs/recovery.md`, "Why nothing is lost, duplicated or
//! reordered").

use std::sync::Arc;

use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use crate::domain::{AuthUser, ChatId, MessageId, Side};
use crate::recovery::{Claim, Recovery, Refusal, Replayed};
use crate::service::events::{LoggedMessageNew, MessageNew, ServerEvent};
use crate::state::AppState;

/// Reads what the claimed session missed and sends it, then the broadcasts held since the
/// handshake (minus those the replay carried), then hands the session to the new socket. Runs
/// in the connect handler: the socket is in its namespace and its rooms, its broadcasts held
/// (the middleware did both) and its `CONNECT` answer (with the session's old `pid`) sent.
/// Replayed messages to `user`'s side are then noted as delivered (`service/delivery.rs`), as a
/// live hand-off would be.
///
/// Its client believes itself recovered from the answer on, and hears nothing while its
/// broadcasts are held (issue 28's deaf recovered sockets), so the only wait before the release
/// is the read, bounded by [`REPLAY_READ_DEADLINE`]; the hand-over (a Redis write) comes after
/// the release. A read that fails or passes the deadline closes the transport with the held
/// packets dropped: its client reconnects by itself, with the same `pid` and offset, and is
/// recovered on that attempt (the session was not handed over, so it is still claimable); so
/// is a replay the socket's queue cannot take whole. A session the log cannot serve (`too_far_behind`, ...) is forgotten instead: the client's
/// next attempt is refused as `unknown` and starts a new session.
pub async fn replay<A: Adapter>(
    state: &AppState,
    recovery: &Recovery,
    s: &SocketRef<A>,
    claim: Claim,
    rooms: &[String],
    user: &AuthUser,
) {
    let sid = s.id.to_string();
    let read = tokio::time::timeout(REPLAY_READ_DEADLINE, recovery.missed(&claim, rooms)).await;
    let missed = match read {
        Ok(Ok(missed)) => {
            state.readiness.adapter.note_answer();
            missed
        }
        outcome => {
            let refusal = match outcome {
                Ok(Err(r)) => r,
                _ => Refusal::Unavailable,
            };
            state.metrics.recovery.attempt(Err(refusal));
            tracing::info!(
                reason = refusal.as_str(),
                "recovery replay not read; closing the transport"
            );
            if refusal != Refusal::Unavailable
                && let Err(e) = recovery.ended(&claim.session.pid, &claim.session.sid).await
            {
                tracing::warn!(error = %e, "could not forget the recovery session");
            }
            // Nothing held goes out, and the transport is closed under the hold (see below).
            s.release_broadcasts(|| false, |_| false);
            return;
        }
    };
    let replayed = Arc::new(Replayed::new(missed.iter().map(|e| e.offset)));
    // Broadcasts of what the replay carries may still reach this node after the release (a
    // publish on its way, an outage replay from another node: `recovery/seen.rs`): dropped for
    // this socket alone. Set before the release, so each one is either held (and dropped by
    // `keep` below) or skipped.
    if !replayed.is_empty() {
        let skip = replayed.clone();
        s.skip_broadcasts(move |packet| skip.covers(packet));
    }
    // The replayed `message:new` of the other side: a delivery trigger, noted after the replay.
    let side = Side::of(user.role);
    let mut delivered = Vec::new();
    // Queued whole, or not at all: a replay or held packet the socket's queue cannot take
    // (full, or closed) ends the release there and closes the transport under the hold, so no
    // later event can move the client's offset past one it lacks. It reconnects by itself and
    // resumes from the last event it got; the session was not handed over, so that attempt is
    // recovered with the rest.
    let queued = s.release_broadcasts(
        || {
            for entry in &missed {
                let payload: serde_json::Value = match serde_json::from_str(&entry.payload) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "unreadable recovery log entry skipped");
                        continue;
                    }
                };
                let offset = entry.offset.to_string();
                let message = (entry.event == MessageNew::NAME)
                    .then(|| delivered_message(&payload, side))
                    .flatten();
                if let Err(e) = s.emit(entry.event.as_str(), &(payload, offset)) {
                    tracing::warn!(error = %e, "replay not queued");
                    return false;
                }
                delivered.extend(message);
            }
            true
        },
        |held| !replayed.covers(held),
    );
    if !queued {
        state.metrics.recovery.attempt(Err(Refusal::Unavailable));
        tracing::info!("recovery replay not queued whole; transport closed for a retry");
        return;
    }
    // Handed over after the release: a slow Redis delays only the hand-over, never what the
    // client hears.
    if let Err(e) = recovery.take(&claim, &sid).await {
        tracing::warn!(error = %e, "could not hand the recovery session to the new socket");
    }
    state.metrics.recovery.attempt(Ok(()));
    state
        .metrics
        .recovery
        .events_replayed
        .inc_by(missed.len() as u64);
    tracing::debug!(socket_id = %sid, events = missed.len(), "session recovered");
    if !delivered.is_empty() {
        // Off the connect path: presence registration does not wait for the chat reads.
        let (state, user) = (state.clone(), user.clone());
        tokio::spawn(async move { state.deliveries().note_replayed(&user, &delivered).await });
    }
}

/// How long a resumed socket's replay may wait for its read (the node's batched log read,
/// `recovery/tail.rs`: the read in flight, then the one that serves it) while its client, told
/// it is recovered, hears nothing.
pub const REPLAY_READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// A replayed `message:new` payload's (chat, seq, message) when the replay delivers it: its
/// recipients are `side` (the socket's own side sent nothing it receives as a delivery).
fn delivered_message(payload: &serde_json::Value, side: Side) -> Option<(ChatId, u64, MessageId)> {
    let message = LoggedMessageNew::read(payload)?.message;
    if Side::of(message.sender_role).other() != side {
        return None;
    }
    Some((
        ChatId::from_trusted(message.chat_id),
        message.seq,
        MessageId::from_trusted(message.id),
    ))
}
