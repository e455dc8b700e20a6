//! Connection state recovery: the sessions a dropped client can resume and the log of what it
//! missed (Socket.IO's protocol, served cluster-wide; see `docs/recovery.md`). This file holds
//! one concern, the recovery rules; the data they work on and the backend seam are in
//! `backend.rs`, the tail cache they read through in `tail.rs`.
//!
//! Two seams meet here. [`RecoveryBackend`] keeps the data outside the process (Redis in cluster
//! mode, [`redis::RedisRecovery`]; the embedded SQLite file on a single node,
//! [`embedded::EmbeddedRecovery`]) and knows nothing of rules. [`Recovery`] holds the rules
//! (who may resume which session, how old it may be, what a session may see) and a per-node
//! cache of the log's tail, so that a mass reconnect reads the log once rather than once per
//! client.
//!
//! Every recoverable emission is logged once, with its rooms, before it is broadcast; its
//! [`Offset`] travels as the event's last argument. Because an event reaches a socket only after
//! its entry exists, a read of the log started after a socket joined its rooms holds every event
//! the socket did not get live.

mod backend;
pub mod embedded;
mod pid;
pub mod redis;
mod refusal;
mod room_index;
mod seen;
mod tail;

pub use pid::Pid;
pub use refusal::Refusal;

use std::sync::Arc;
use std::time::Duration;

pub use backend::{
    BackendError, DEFAULT_MAX_BYTES, ENTRY_OVERHEAD, LogStats, LoggedEvent, Offset,
    RecoveryBackend, Session, Trimmed, entry_bytes, now_ms,
};
pub use embedded::EmbeddedRecovery;
pub use redis::RedisRecovery;
pub use seen::{MAX_SEEN, Replayed, SeenOffsets};
pub use tail::TAIL_CAP;

use tail::TailReader;

/// The most events one recovery replays. A socket's queue holds 1,024 packets; a session that
/// missed more than this gets a new session and catches up with `chat:sync` instead.
pub const MAX_REPLAY: usize = 500;

/// A session accepted for resuming: where its replay starts.
#[derive(Clone, Debug)]
pub struct Claim {
    pub session: Session,
    /// Replay entries after this offset (`None`: from the session's start).
    pub after: Option<Offset>,
}

/// The recovery rules over a backend, with the per-node tail of the log.
pub struct Recovery {
    backend: Arc<dyn RecoveryBackend>,
    window: Duration,
    /// The log's byte budget (`RECOVERY_LOG_MAX_BYTES`), kept by [`Recovery::trim`].
    log_max_bytes: u64,
    /// The log's tail as this node last read it, and the one batched reader that fills it:
    /// shared by every replay on this node (its budget: `RECOVERY_TAIL_MAX_BYTES`).
    tail: TailReader,
}

impl Recovery {
    pub fn new(backend: Arc<dyn RecoveryBackend>, window: Duration) -> Recovery {
        let window_ms = window.as_millis() as u64;
        Recovery {
            tail: TailReader::new(backend.clone(), window_ms, DEFAULT_MAX_BYTES),
            backend,
            window,
            log_max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    /// The byte budgets of the log and of this node's tail.
    pub fn with_budgets(mut self, log_max_bytes: u64, tail_max_bytes: u64) -> Recovery {
        self.log_max_bytes = log_max_bytes;
        self.tail.state.set_max_bytes(tail_max_bytes);
        self
    }

    /// Trims the log to its window and byte budget (the backend's oldest entries first), then
    /// this node's tail: what the node's timer calls every second. Returns the log's and the
    /// tail's bytes after it.
    pub async fn trim(&self) -> Result<(u64, u64), BackendError> {
        let oldest = now_ms().saturating_sub(self.window_ms());
        let trimmed = self
            .backend
            .trim(self.log_max_bytes, oldest, TRIM_LIMIT)
            .await?;
        self.tail.state.note_cut(trimmed.cut);
        Ok((trimmed.bytes, self.tail.state.trim(oldest)))
    }

    /// The tail's bytes now.
    pub fn tail_bytes(&self) -> u64 {
        self.tail.state.bytes()
    }

    /// Whether the log has dropped an entry after `from` (exclusive) that a replay from there
    /// would need.
    fn cut_after(&self, from: Offset) -> bool {
        self.tail.state.cut_after(from)
    }

    /// How long a dropped session stays recoverable.
    pub fn window(&self) -> Duration {
        self.window
    }

    fn window_ms(&self) -> u64 {
        self.window.as_millis() as u64
    }

    /// Logs an emission; its offset goes out as the event's last argument.
    pub async fn log(
        &self,
        rooms: &[String],
        except: &[String],
        event: &str,
        payload: &str,
    ) -> Result<Offset, BackendError> {
        let min_ms = now_ms().saturating_sub(self.window_ms());
        self.backend
            .append(rooms, except, event, payload, min_ms)
            .await
    }

    /// Records a new session held by socket `sid`. It is kept while the socket lives (up to a
    /// day; a longer-lived socket's session is simply not recoverable any more).
    pub async fn open(
        &self,
        pid: &Pid,
        user_id: &str,
        rooms: &[String],
        sid: &str,
    ) -> Result<(), BackendError> {
        let session = Session {
            pid: pid.clone(),
            user_id: user_id.to_owned(),
            rooms: rooms.to_vec(),
            started_ms: now_ms(),
            disconnected_ms: None,
            sid: sid.to_owned(),
        };
        self.backend.put_session(&session, LIVE_TTL).await
    }

    /// Decides whether `user_id` may resume session `pid` from `offset` (both as the client
    /// sent them). Changes nothing: a refused attempt leaves the session to its owner.
    pub async fn check(
        &self,
        pid: &str,
        offset: Option<&str>,
        user_id: &str,
    ) -> Result<Claim, Refusal> {
        let (pid, after) = parse_resume(pid, offset, now_ms())?;
        let session = self
            .backend
            .get_session(&pid)
            .await
            .map_err(|_| Refusal::Unavailable)?
            .ok_or(Refusal::Unknown)?;
        if session.user_id != user_id {
            return Err(Refusal::Foreign);
        }
        let oldest = now_ms().saturating_sub(self.window_ms());
        if session.disconnected_ms.is_some_and(|d| d < oldest) {
            return Err(Refusal::Expired);
        }
        // What the log may already have dropped (for its age, or for its byte budget: issue
        // 25, item 7) cannot be replayed exactly, unless the session's rooms got nothing since
        // its offset: then it missed nothing, whatever the log dropped.
        let start = replay_start(&session, after);
        let from_ms = after.map_or(session.started_ms, |o| o.ms);
        if (from_ms < oldest || self.cut_after(start))
            && !self.nothing_since(&session.rooms, start).await?
        {
            return Err(Refusal::Expired);
        }
        Ok(Claim { session, after })
    }

    /// Hands the session to socket `sid` (after [`Recovery::check`] accepted it).
    pub async fn take(&self, claim: &Claim, sid: &str) -> Result<(), BackendError> {
        let mut session = claim.session.clone();
        session.sid = sid.to_owned();
        session.disconnected_ms = None;
        self.backend.put_session(&session, LIVE_TTL).await
    }

    /// The events a claimed session missed, for the rooms it is in now (`rooms`: what its
    /// socket joined again), oldest first. Call it after the socket joined its rooms and holds
    /// its broadcasts: the read then covers everything it did not get live.
    ///
    /// The read is the node's batched one (`tail.rs`): the replays that queue while one read
    /// is on its way share the next; each filters the shared snapshot for its own rooms here,
    /// on its own task, copying only what it sends (at most [`MAX_REPLAY`] + 1 entries).
    pub async fn missed(
        &self,
        claim: &Claim,
        rooms: &[String],
    ) -> Result<Vec<Arc<LoggedEvent>>, Refusal> {
        let rooms: Vec<String> = rooms
            .iter()
            .filter(|r| claim.session.rooms.contains(r))
            .cloned()
            .collect();
        let start = claim.session.started_ms;
        let after = replay_start(&claim.session, claim.after);
        // Most resumes missed nothing (a client hears its rooms' every entry until its
        // connection breaks): the room index says so without reading the log, however much
        // of everyone else's traffic came after the offset.
        if self.nothing_since(&rooms, after).await? {
            return Ok(Vec::new());
        }
        let snapshot = self.tail.read(after).await?;
        // The log may have been trimmed for its budget since the check, by any node: the cut
        // read after the entries (once per log read however many replays that read serves)
        // says whether the read may lack one this replay needs.
        if self.cut_after(after) {
            return Err(Refusal::Expired);
        }
        let keep = |e: &LoggedEvent| e.offset.ms >= start && e.reaches(&rooms);
        let missed = snapshot.after(after, keep, MAX_REPLAY + 1);
        if missed.len() > MAX_REPLAY {
            return Err(Refusal::TooFarBehind);
        }
        Ok(missed)
    }

    /// Whether no entry for any of `rooms` was logged after `after` (the log's room index).
    async fn nothing_since(&self, rooms: &[String], after: Offset) -> Result<bool, Refusal> {
        let newest = self
            .backend
            .newest_for_rooms(rooms)
            .await
            .map_err(|_| Refusal::Unavailable)?;
        Ok(newest.is_none_or(|n| n <= after))
    }

    /// The socket holding the session went away without its client ending it: keep the
    /// session for the window.
    pub async fn dropped(&self, pid: &Pid, sid: &str) -> Result<bool, BackendError> {
        self.backend
            .end_session(pid, sid, now_ms(), self.window)
            .await
    }

    /// The client ended the session (`socket.disconnect()`): forget it.
    pub async fn ended(&self, pid: &Pid, sid: &str) -> Result<bool, BackendError> {
        self.backend.remove_session(pid, sid).await
    }

    /// The log's size now.
    pub async fn stats(&self) -> Result<LogStats, BackendError> {
        self.backend.stats().await
    }
}

/// The `pid` and `offset` a client sent, checked for shape before anything is read: the shapes
/// [`Pid::generate`] and the log make, and no offset from more than a minute after `now_ms`
/// (clock skew), which was not made here. Pure, so the fuzzer reaches it
/// (`fuzz/fuzz_targets/handshake_auth.rs`).
pub fn parse_resume(
    pid: &str,
    offset: Option<&str>,
    now_ms: u64,
) -> Result<(Pid, Option<Offset>), Refusal> {
    let pid = Pid::parse(pid).ok_or(Refusal::Malformed)?;
    let after = match offset {
        None => None,
        Some(o) => Some(Offset::parse(o).ok_or(Refusal::Malformed)?),
    };
    if after.is_some_and(|o| o.ms > now_ms.saturating_add(60_000)) {
        return Err(Refusal::Malformed);
    }
    Ok((pid, after))
}

/// Where a replay starts: after the client's offset, or from the session's start.
fn replay_start(session: &Session, after: Option<Offset>) -> Offset {
    after.unwrap_or(Offset {
        ms: session.started_ms.saturating_sub(1),
        seq: u64::MAX,
    })
}

/// The most entries one trim call drops (the next second's call goes on): a trim never holds
/// Redis or the SQLite file for long.
const TRIM_LIMIT: usize = 10_000;

/// How long a session is kept while a socket holds it.
const LIVE_TTL: Duration = Duration::from_secs(24 * 3600);

/// The offset an encoded event packet carries as its last argument, if any: the packet text
/// ends with `,"{ms}-{seq}"]`. Used to drop a held broadcast that the replay already sent.
pub fn offset_of_packet(text: &str) -> Option<Offset> {
    let body = text.strip_suffix("\"]")?;
    let start = body.rfind('"')?;
    if !body[..start].ends_with(',') {
        return None;
    }
    Offset::parse(&body[start + 1..])
}

#[cfg(test)]
mod tests;
