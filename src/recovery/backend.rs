//! The recovery data and its seam: what the log holds ([`LoggedEvent`] at an [`Offset`]), what
//! a recoverable [`Session`] is, and the [`RecoveryBackend`] trait that keeps both outside the
//! process (Redis in cluster mode, the embedded SQLite file on a single node). No rules here:
//! those are [`super::Recovery`]'s.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::Pid;

/// What an entry costs on top of its fields' bytes in the byte budgets (its id, field names and
/// the structures around it), so that a flood of tiny entries is counted too.
pub const ENTRY_OVERHEAD: u64 = 64;

/// The default byte budget of the log and of the tail (`RECOVERY_LOG_MAX_BYTES`,
/// `RECOVERY_TAIL_MAX_BYTES`).
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// An entry's size in the byte budgets: its fields as stored (rooms `\n`-joined) plus
/// [`ENTRY_OVERHEAD`]. The Redis scripts count the same.
pub fn entry_bytes(rooms: &str, except: &str, event: &str, payload: &str) -> u64 {
    ENTRY_OVERHEAD + (rooms.len() + except.len() + event.len() + payload.len()) as u64
}

/// The length of `list` joined with `\n`.
fn joined_len(list: &[String]) -> usize {
    list.iter().map(String::len).sum::<usize>() + list.len().saturating_sub(1)
}

/// A position in the recovery log. Log order is the order of `(ms, seq)`: for Redis the stream
/// id (`ms` is Redis's clock), for the embedded log the row's time (kept non-decreasing) and id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset {
    pub ms: u64,
    pub seq: u64,
}

impl Offset {
    /// Parses `"{ms}-{seq}"`, decimal digits only (what clients send back is untrusted).
    pub fn parse(s: &str) -> Option<Offset> {
        let (ms, seq) = s.split_once('-')?;
        let digits = |p: &str| {
            (!p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u64>().ok())
                .flatten()
        };
        Some(Offset {
            ms: digits(ms)?,
            seq: digits(seq)?,
        })
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A recoverable session, as the backend keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub pid: Pid,
    /// The user it belongs to: only a token naming this user may resume it.
    pub user_id: String,
    /// The rooms its socket was in (what a replay may show it).
    pub rooms: Vec<String>,
    /// When it began (ms since the epoch): a resume without an offset replays from here.
    pub started_ms: u64,
    /// When its socket went away; `None` while a socket holds it (or its node died).
    pub disconnected_ms: Option<u64>,
    /// The socket that holds it now: only that socket's disconnect ends or removes it.
    pub sid: String,
}

/// One logged emission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedEvent {
    pub offset: Offset,
    pub rooms: Vec<String>,
    /// Rooms excluded from the emission (a `user:status` skips the user's own room).
    pub except: Vec<String>,
    pub event: String,
    /// The payload as JSON text (the event's first argument).
    pub payload: String,
}

impl LoggedEvent {
    /// Its size in the byte budgets ([`entry_bytes`]).
    pub fn bytes(&self) -> u64 {
        ENTRY_OVERHEAD
            + (joined_len(&self.rooms)
                + joined_len(&self.except)
                + self.event.len()
                + self.payload.len()) as u64
    }

    /// Whether a socket in `rooms` received this emission.
    pub fn reaches(&self, rooms: &[String]) -> bool {
        rooms.iter().any(|r| self.rooms.contains(r))
            && !rooms.iter().any(|r| self.except.contains(r))
    }
}

/// What a trim of the log left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// The log's size after it ([`entry_bytes`] summed).
    pub bytes: u64,
    /// The newest entry ever trimmed from the log (for its age or its budget), if the backend
    /// knows it: a resume that needs an entry at or before it cannot be served.
    pub cut: Option<Offset>,
}

/// How big the log is, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    pub entries: u64,
    /// The oldest entry's time (ms), if any.
    pub oldest_ms: Option<u64>,
}

/// Why a backend call failed (the backend is unreachable or answered nonsense).
#[derive(Debug, thiserror::Error)]
#[error("recovery backend: {0}")]
pub struct BackendError(pub String);

/// Where sessions and the log live. Only domain types cross it.
#[async_trait]
pub trait RecoveryBackend: Send + Sync + 'static {
    /// Logs one emission and drops entries older than `min_ms` (maybe lazily); returns its offset.
    async fn append(
        &self,
        rooms: &[String],
        except: &[String],
        event: &str,
        payload: &str,
        min_ms: u64,
    ) -> Result<Offset, BackendError>;

    /// Entries after `after` (exclusive) up to `until` (inclusive, `None`: the end), oldest
    /// first, at most `limit`.
    async fn read(
        &self,
        after: Offset,
        until: Option<Offset>,
        limit: usize,
    ) -> Result<Vec<LoggedEvent>, BackendError>;

    /// One page of each range (`(after, until)` as [`RecoveryBackend::read`] takes them, at most
    /// `limit` entries each), then the cut ([`RecoveryBackend::cut`]) read after them: what a
    /// node's batched replay read needs, in one call. A backend that can send the reads and the
    /// cut in one round trip, in that order, does (Redis: one pipeline).
    async fn read_ranges(
        &self,
        ranges: &[(Offset, Option<Offset>)],
        limit: usize,
    ) -> Result<(Vec<Vec<LoggedEvent>>, Option<Offset>), BackendError> {
        let mut pages = Vec::with_capacity(ranges.len());
        for &(after, until) in ranges {
            pages.push(self.read(after, until, limit).await?);
        }
        Ok((pages, self.cut().await?))
    }

    /// The log's size now.
    async fn stats(&self) -> Result<LogStats, BackendError>;

    /// Drops the oldest entries until the log holds at most `max_bytes` and none older than
    /// `min_ms` (at most `limit` entries per call: the next call goes on).
    async fn trim(
        &self,
        max_bytes: u64,
        min_ms: u64,
        limit: usize,
    ) -> Result<Trimmed, BackendError>;

    /// The newest entry any trim dropped (any node's, for a shared log), read now: a replay
    /// checks it after its read, so a trim another node made a moment ago is never missed.
    async fn cut(&self) -> Result<Option<Offset>, BackendError>;

    /// The newest entry ever logged for any of `rooms` (remembered for
    /// `room_index::ROOM_MEMORY`, whether or not the log still holds it), if any.
    async fn newest_for_rooms(&self, rooms: &[String]) -> Result<Option<Offset>, BackendError>;

    /// Stores (or replaces) a session, kept for `ttl`.
    async fn put_session(&self, session: &Session, ttl: Duration) -> Result<(), BackendError>;

    async fn get_session(&self, pid: &Pid) -> Result<Option<Session>, BackendError>;

    /// Marks the session disconnected at `at_ms` and keeps it `ttl` more, if `sid` holds it.
    async fn end_session(
        &self,
        pid: &Pid,
        sid: &str,
        at_ms: u64,
        ttl: Duration,
    ) -> Result<bool, BackendError>;

    /// Forgets the session, if `sid` holds it.
    async fn remove_session(&self, pid: &Pid, sid: &str) -> Result<bool, BackendError>;
}

/// Milliseconds since the epoch now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
