//! Connection state recovery: the sessions a dropped client can resume and the log of what it
//! missed (Socket.IO's protocol, served cluster-wide; see `docs/recovery.md`). This file holds
//! one concern, the recovery rules and the tail cache they read through; the data they work on
//! and the backend seam are in `backend.rs`.
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

pub use pid::Pid;
pub use refusal::Refusal;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

pub use backend::{
    BackendError, DEFAULT_MAX_BYTES, ENTRY_OVERHEAD, LogStats, LoggedEvent, Offset,
    RecoveryBackend, Session, Trimmed, entry_bytes,
};
pub use embedded::EmbeddedRecovery;
pub use redis::RedisRecovery;

/// The most events one recovery replays. A socket's queue holds 1,024 packets; a session that
/// missed more than this gets a new session and catches up with `chat:sync` instead.
pub const MAX_REPLAY: usize = 500;

/// How many log entries one backend read returns at most.
const PAGE: usize = 500;

/// The most entries the per-node tail cache keeps (older ones are read from the backend).
const TAIL_CAP: usize = 20_000;

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
    /// The tail's byte budget (`RECOVERY_TAIL_MAX_BYTES`): no read loads more than this.
    tail_max_bytes: u64,
    /// The newest entry trimmed from the log, as the last trim saw it: resumes that need it are
    /// refused as expired (a plain mutex, held for a copy).
    cut: std::sync::Mutex<Option<Offset>>,
    /// The log's tail as this node last read it; shared by every replay on this node.
    tail: tokio::sync::Mutex<Tail>,
}

/// A contiguous piece of the log: every entry after `from` up to the last one, complete as of
/// `read_at` (the instant the last read of the end was sent).
#[derive(Default)]
struct Tail {
    from: Option<Offset>,
    entries: VecDeque<Arc<LoggedEvent>>,
    read_at: Option<Instant>,
    /// The entries' [`LoggedEvent::bytes`], summed.
    bytes: u64,
}

impl Tail {
    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= e.bytes();
            self.from = Some(e.offset);
        }
    }

    /// Drops the oldest entries until at most `max_bytes` and [`TAIL_CAP`] entries are left,
    /// and none older than `oldest_ms`.
    fn trim(&mut self, max_bytes: u64, oldest_ms: u64) {
        while self
            .entries
            .front()
            .is_some_and(|e| e.offset.ms < oldest_ms)
            || self.bytes > max_bytes
            || self.entries.len() > TAIL_CAP
        {
            self.pop_front();
        }
    }

    fn clear(&mut self) {
        *self = Tail::default();
    }
}

/// Why a bounded read of the log stopped.
enum ReadError {
    Backend(BackendError),
    /// It would have loaded more than the tail's byte budget.
    OverBudget,
}

/// Milliseconds since the epoch now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Recovery {
    pub fn new(backend: Arc<dyn RecoveryBackend>, window: Duration) -> Recovery {
        Recovery {
            backend,
            window,
            log_max_bytes: DEFAULT_MAX_BYTES,
            tail_max_bytes: DEFAULT_MAX_BYTES,
            cut: Default::default(),
            tail: Default::default(),
        }
    }

    /// The byte budgets of the log and of this node's tail.
    pub fn with_budgets(mut self, log_max_bytes: u64, tail_max_bytes: u64) -> Recovery {
        self.log_max_bytes = log_max_bytes;
        self.tail_max_bytes = tail_max_bytes;
        self
    }

    /// Trims the log to its window and byte budget (the backend's oldest entries first), then
    /// this node's tail: what the node's timer calls every second. Returns the log's and the
    /// tail's bytes after it (the tail's `None` when a replay holds it).
    pub async fn trim(&self) -> Result<(u64, Option<u64>), BackendError> {
        let oldest = now_ms().saturating_sub(self.window_ms());
        let trimmed = self
            .backend
            .trim(self.log_max_bytes, oldest, TRIM_LIMIT)
            .await?;
        if let Some(cut) = trimmed.cut {
            let mut known = self.cut.lock().unwrap_or_else(|p| p.into_inner());
            *known = (*known).max(Some(cut));
        }
        // A replay holds the tail while it reads; the next tick trims it.
        let tail_bytes = self.tail.try_lock().ok().map(|mut tail| {
            tail.trim(self.tail_max_bytes, oldest);
            tail.bytes
        });
        Ok((trimmed.bytes, tail_bytes))
    }

    /// The tail's bytes now, if no replay holds it.
    pub fn tail_bytes(&self) -> Option<u64> {
        self.tail.try_lock().ok().map(|t| t.bytes)
    }

    /// Whether the log has dropped an entry after `from` (exclusive) that a replay from there
    /// would need.
    fn cut_after(&self, from: Offset) -> bool {
        let cut = *self.cut.lock().unwrap_or_else(|p| p.into_inner());
        cut.is_some_and(|c| c > from)
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
        let pid = Pid::parse(pid).ok_or(Refusal::Malformed)?;
        let after = match offset {
            None => None,
            Some(o) => Some(Offset::parse(o).ok_or(Refusal::Malformed)?),
        };
        // An offset from the future was not made here (a minute of clock skew allowed).
        if after.is_some_and(|o| o.ms > now_ms() + 60_000) {
            return Err(Refusal::Malformed);
        }
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
        // What the log may already have dropped cannot be replayed exactly.
        let from_ms = after.map_or(session.started_ms, |o| o.ms);
        if from_ms < oldest {
            return Err(Refusal::Expired);
        }
        // Nor what the byte budget trimmed (issue 25, item 7).
        if self.cut_after(replay_start(&session, after)) {
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
    pub async fn missed(
        &self,
        claim: &Claim,
        rooms: &[String],
    ) -> Result<Vec<Arc<LoggedEvent>>, Refusal> {
        let requested = Instant::now();
        let rooms: Vec<String> = rooms
            .iter()
            .filter(|r| claim.session.rooms.contains(r))
            .cloned()
            .collect();
        let start = claim.session.started_ms;
        let after = replay_start(&claim.session, claim.after);
        let keep = |e: &LoggedEvent| e.offset.ms >= start && e.reaches(&rooms);
        let missed = self
            .entries_after(after, requested, keep, MAX_REPLAY + 1)
            .await?;
        // The log may have been trimmed for its budget since the check, by any node: the cut
        // read after the entries (by `entries_after`, once per log read however many replays
        // that read serves) says whether the read may lack one this replay needs.
        if self.cut_after(after) {
            return Err(Refusal::Expired);
        }
        if missed.len() > MAX_REPLAY {
            return Err(Refusal::TooFarBehind);
        }
        Ok(missed)
    }

    /// The entries after `after` that `keep` accepts (at most `limit`), complete as of
    /// `requested`: from the tail when it covers them, else read once and kept for the next
    /// replays. Filtered here, under the lock, so a replay copies what it sends and not the
    /// whole tail after its offset (up to [`TAIL_CAP`] entries, per replay, in a storm).
    async fn entries_after(
        &self,
        after: Offset,
        requested: Instant,
        keep: impl Fn(&LoggedEvent) -> bool,
        limit: usize,
    ) -> Result<Vec<Arc<LoggedEvent>>, Refusal> {
        let refused = |e: ReadError| match e {
            ReadError::Backend(e) => {
                tracing::warn!(error = %e, "recovery log read failed");
                Refusal::Unavailable
            }
            ReadError::OverBudget => Refusal::TooFarBehind,
        };
        // One reader at a time on purpose (a lock held across the reads): replays queued behind
        // a read that started after them take its result instead of reading again.
        let mut tail = self.tail.lock().await;
        let oldest = now_ms().saturating_sub(self.window_ms());
        tail.trim(self.tail_max_bytes, oldest);
        // Whether this call read the log (then it reads the cut after, see below).
        let mut read = false;
        match tail.from {
            Some(from) if after >= from => {}
            Some(from) => {
                // Older than the tail: read the gap before it and keep it (within the budget:
                // a gap bigger than the whole tail may hold cannot be replayed).
                let room = self.tail_max_bytes.saturating_sub(tail.bytes);
                read = true;
                let gap = self
                    .read_all(after, Some(from), room)
                    .await
                    .map_err(refused)?;
                for e in gap.into_iter().rev() {
                    tail.bytes += e.bytes();
                    tail.entries.push_front(e);
                }
                tail.from = Some(after);
            }
            None => {
                tail.from = Some(after);
                tail.read_at = None;
            }
        }
        if tail.read_at.is_none_or(|at| at < requested) {
            read = true;
            let sent = Instant::now();
            let end = tail.entries.back().map(|e| e.offset).or(tail.from).unwrap();
            let fresh = match self.read_all(end, None, self.tail_max_bytes).await {
                Ok(fresh) => fresh,
                Err(e) => {
                    if matches!(e, ReadError::OverBudget) {
                        // More than the budget since the end: start again from the next replay.
                        tail.clear();
                    }
                    return Err(refused(e));
                }
            };
            for e in fresh {
                tail.bytes += e.bytes();
                tail.entries.push_back(e);
            }
            tail.read_at = Some(sent);
        }
        if read {
            // The cut, read after the entries: a trim any node made before the read is known
            // to every replay this read serves (those queued behind it take its result), so a
            // storm reads it once per log read, not once per client.
            match self.backend.cut().await {
                Ok(cut) => {
                    let mut known = self.cut.lock().unwrap_or_else(|p| p.into_inner());
                    *known = (*known).max(cut);
                }
                Err(e) => {
                    // The entries stay; the next replay reads again, then the cut.
                    tail.read_at = None;
                    tracing::warn!(error = %e, "recovery log cut read failed");
                    return Err(Refusal::Unavailable);
                }
            }
        }
        tail.trim(self.tail_max_bytes, 0);
        if tail.from.is_some_and(|from| after < from) {
            // The budget dropped part of what this replay needs.
            return Err(Refusal::TooFarBehind);
        }
        let start = tail.entries.partition_point(|e| e.offset <= after);
        Ok(tail
            .entries
            .range(start..)
            .filter(|e| keep(e))
            .take(limit)
            .cloned()
            .collect())
    }

    /// Reads `(after, until]` page by page, up to [`TAIL_CAP`] entries (the window bounds it
    /// anyway: older entries are trimmed) and `max_bytes`: a read that would load more stops
    /// there and fails, so one resume of an old session cannot load the whole log.
    async fn read_all(
        &self,
        after: Offset,
        until: Option<Offset>,
        max_bytes: u64,
    ) -> Result<Vec<Arc<LoggedEvent>>, ReadError> {
        let mut out = Vec::new();
        let mut cursor = after;
        let mut bytes = 0;
        loop {
            let page = self
                .backend
                .read(cursor, until, PAGE)
                .await
                .map_err(ReadError::Backend)?;
            let full = page.len() == PAGE;
            if let Some(last) = page.last() {
                cursor = last.offset;
            }
            for e in page {
                bytes += e.bytes();
                if bytes > max_bytes {
                    return Err(ReadError::OverBudget);
                }
                out.push(Arc::new(e));
            }
            if !full || out.len() >= TAIL_CAP {
                return Ok(out);
            }
        }
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
