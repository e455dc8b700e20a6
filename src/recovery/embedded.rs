//! The recovery backend on a single node: a SQLite file of its own in `DATA_DIR`
//! (`recovery.db`, beside the embedded store's), so a node drained and restarted on the same
//! `DATA_DIR` recovers its clients.
//!
//! The log is a table with an increasing id; an entry's offset is `{ms}-{id}`, with `ms` kept
//! non-decreasing so that offsets order as ids do. Entries older than the window are deleted
//! every [`TRIM_EVERY`] appends (one indexed `DELETE`), and the node's timer trims the oldest
//! entries once a second while the log is over `RECOVERY_LOG_MAX_BYTES` (its size is kept in
//! memory: summed once at open, then counted by the appends and the trims). Sessions are rows with an expiry time;
//! an expired row reads as absent and is deleted with the trim. Writes go through one
//! connection behind a mutex on tokio's blocking pool, in WAL mode without a sync per commit:
//! a node that loses power loses its recovery state, not its messages (those are in the store).
//! Appends are group-committed: they queue, and one writer appends everything waiting in one
//! transaction, so concurrent senders share a commit (and a trip to the blocking pool).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::backend::{
    BackendError, LogStats, LoggedEvent, Offset, RecoveryBackend, Session, Trimmed, now_ms,
};
use super::pid::Pid;
use super::room_index;

/// How many appends between two trims of the log.
const TRIM_EVERY: u64 = 256;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS recovery_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ms INTEGER NOT NULL,
    rooms TEXT NOT NULL,
    except_rooms TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS recovery_log_by_time ON recovery_log (ms, id);
CREATE TABLE IF NOT EXISTS recovery_sessions (
    pid TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    rooms TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    disconnected_ms INTEGER,
    sid TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
"#;

/// Sessions and the log in `DATA_DIR/recovery.db`.
pub struct EmbeddedRecovery {
    inner: Arc<Mutex<Inner>>,
    /// Appends waiting for the writer: group commit, so that many senders' emissions at once
    /// cost one transaction and one trip to the blocking pool, not one each.
    queue: Arc<Mutex<AppendQueue>>,
}

#[derive(Default)]
struct AppendQueue {
    waiting: Vec<Append>,
    /// A writer task is running and will take what is waiting.
    writing: bool,
}

struct Append {
    rooms: String,
    except: String,
    event: String,
    payload: String,
    min_ms: u64,
    done: tokio::sync::oneshot::Sender<Result<Offset, String>>,
}

struct Inner {
    conn: Connection,
    /// The last entry's `ms`: the next one gets at least this (offsets order as ids).
    last_ms: u64,
    appends: u64,
    /// The log's size in the byte budget (`entry_bytes` summed): summed once at open, then
    /// kept by the appends and the trims.
    bytes: u64,
    /// The newest entry a trim dropped.
    cut: Option<Offset>,
}

/// An entry's size in the byte budget, in SQL (`recovery::entry_bytes`: bytes, not
/// characters, hence the casts).
const ENTRY_BYTES_SQL: &str = "64 + length(CAST(rooms AS BLOB)) + length(CAST(except_rooms AS BLOB)) \
     + length(CAST(event AS BLOB)) + length(CAST(payload AS BLOB))";

fn failed(e: impl std::fmt::Display) -> BackendError {
    BackendError(e.to_string())
}

fn split(s: &str) -> Vec<String> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split('\n').map(str::to_owned).collect()
    }
}

impl EmbeddedRecovery {
    /// Opens (or creates) `dir/recovery.db` (and `dir`, `0700`, if it is missing).
    pub fn open(dir: &Path) -> Result<EmbeddedRecovery, BackendError> {
        if !dir.exists() {
            // With the MongoDB store, nothing else made DATA_DIR.
            std::fs::create_dir_all(dir).map_err(failed)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(failed)?;
            }
        }
        let path = dir.join("recovery.db");
        let conn = Connection::open(&path).map_err(failed)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(failed)?;
        }
        conn.busy_timeout(Duration::from_secs(5)).map_err(failed)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(failed)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(failed)?;
        // Appends and session writes touch the last pages; reads are rare (a resume, through
        // the tail cache). SQLite's default 2 MiB page cache would fill with one session row
        // per connected socket: 256 KiB is plenty and keeps idle memory per socket flat.
        conn.pragma_update(None, "cache_size", -256)
            .map_err(failed)?;
        conn.execute_batch(SCHEMA).map_err(failed)?;
        conn.execute_batch(room_index::SCHEMA).map_err(failed)?;
        let last_ms: u64 = conn
            .query_row("SELECT COALESCE(MAX(ms), 0) FROM recovery_log", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(failed)? as u64;
        let bytes: i64 = conn
            .query_row(
                &format!("SELECT COALESCE(SUM({ENTRY_BYTES_SQL}), 0) FROM recovery_log"),
                [],
                |r| r.get(0),
            )
            .map_err(failed)?;
        Ok(EmbeddedRecovery {
            inner: Arc::new(Mutex::new(Inner {
                conn,
                last_ms,
                appends: 0,
                bytes: bytes.max(0) as u64,
                cut: None,
            })),
            queue: Default::default(),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Inner) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, BackendError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(failed)?
        .map_err(failed)
    }
}

/// The writer: takes what is waiting, appends it in one transaction (in queue order, so offsets
/// follow the order the emitters took their turns in), answers each, and repeats until the
/// queue is empty. Runs on the blocking pool; one at a time.
fn write_appends(inner: &Mutex<Inner>, queue: &Mutex<AppendQueue>) {
    // If the writer dies (a panic), the next append starts another.
    struct Stopped<'a>(&'a Mutex<AppendQueue>);
    impl Drop for Stopped<'_> {
        fn drop(&mut self) {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).writing = false;
        }
    }
    let _stopped = Stopped(queue);
    loop {
        let batch = {
            let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.waiting.is_empty() {
                q.writing = false;
                return;
            }
            std::mem::take(&mut q.waiting)
        };
        let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
        match append_all(&mut guard, &batch) {
            Ok(offsets) => {
                for (entry, offset) in batch.into_iter().zip(offsets) {
                    let _ = entry.done.send(Ok(offset));
                }
            }
            Err(e) => {
                for entry in batch {
                    let _ = entry.done.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// Appends a batch in one transaction, trimming when the count of appends passes a multiple of
/// [`TRIM_EVERY`].
fn append_all(inner: &mut Inner, batch: &[Append]) -> rusqlite::Result<Vec<Offset>> {
    let Inner {
        conn,
        last_ms,
        appends,
        bytes,
        ..
    } = inner;
    let tx = conn.transaction()?;
    let mut offsets = Vec::with_capacity(batch.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO recovery_log (ms, rooms, except_rooms, event, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for a in batch {
            let ms = now_ms().max(*last_ms);
            insert.execute(params![int(ms), a.rooms, a.except, a.event, a.payload])?;
            *bytes += super::entry_bytes(&a.rooms, &a.except, &a.event, &a.payload);
            let offset = Offset {
                ms,
                seq: tx.last_insert_rowid() as u64,
            };
            room_index::note(&tx, &a.rooms, offset)?;
            offsets.push(offset);
            *last_ms = ms;
        }
    }
    let before = *appends;
    *appends += batch.len() as u64;
    if *appends / TRIM_EVERY != before / TRIM_EVERY {
        let min_ms = batch.iter().map(|a| a.min_ms).max().unwrap_or(0);
        // SQLite has no DELETE in a CTE: the freed sizes come back a row each.
        let freed: i64 = {
            let mut delete = tx.prepare_cached(&format!(
                "DELETE FROM recovery_log WHERE ms < ?1 RETURNING {ENTRY_BYTES_SQL}"
            ))?;
            let sizes = delete.query_map(params![int(min_ms)], |r| r.get::<_, i64>(0))?;
            sizes.sum::<rusqlite::Result<i64>>()?
        };
        *bytes = bytes.saturating_sub(freed.max(0) as u64);
        tx.execute(
            "DELETE FROM recovery_sessions WHERE expires_ms < ?1",
            params![int(now_ms())],
        )?;
        room_index::forget(
            &tx,
            now_ms().saturating_sub(room_index::ROOM_MEMORY.as_millis() as u64),
        )?;
    }
    tx.commit()?;
    Ok(offsets)
}

fn row_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<LoggedEvent> {
    Ok(LoggedEvent {
        offset: Offset {
            ms: r.get::<_, i64>(1)? as u64,
            seq: r.get::<_, i64>(0)? as u64,
        },
        rooms: split(&r.get::<_, String>(2)?),
        except: split(&r.get::<_, String>(3)?),
        event: r.get(4)?,
        payload: r.get(5)?,
    })
}

/// SQLite integers are signed: an offset beyond them (forged) is clamped, which orders the same.
fn int(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

#[async_trait]
impl RecoveryBackend for EmbeddedRecovery {
    async fn append(
        &self,
        rooms: &[String],
        except: &[String],
        event: &str,
        payload: &str,
        min_ms: u64,
    ) -> Result<Offset, BackendError> {
        let (done, offset) = tokio::sync::oneshot::channel();
        let entry = Append {
            rooms: rooms.join("\n"),
            except: except.join("\n"),
            event: event.to_owned(),
            payload: payload.to_owned(),
            min_ms,
            done,
        };
        let start_writer = {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.waiting.push(entry);
            !std::mem::replace(&mut queue.writing, true)
        };
        if start_writer {
            let (inner, queue) = (self.inner.clone(), self.queue.clone());
            tokio::task::spawn_blocking(move || write_appends(&inner, &queue));
        }
        offset
            .await
            .map_err(|_| BackendError("the recovery log writer stopped".into()))?
            .map_err(BackendError)
    }

    async fn read(
        &self,
        after: Offset,
        until: Option<Offset>,
        limit: usize,
    ) -> Result<Vec<LoggedEvent>, BackendError> {
        let until = until.unwrap_or(Offset {
            ms: u64::MAX,
            seq: u64::MAX,
        });
        self.with(move |inner| {
            let mut stmt = inner.conn.prepare_cached(
                "SELECT id, ms, rooms, except_rooms, event, payload FROM recovery_log
                 WHERE (ms > ?1 OR (ms = ?1 AND id > ?2)) AND (ms < ?3 OR (ms = ?3 AND id <= ?4))
                 ORDER BY ms, id LIMIT ?5",
            )?;
            let rows = stmt.query_map(
                params![
                    int(after.ms),
                    int(after.seq),
                    int(until.ms),
                    int(until.seq),
                    limit as i64
                ],
                row_event,
            )?;
            rows.collect()
        })
        .await
    }

    async fn stats(&self) -> Result<LogStats, BackendError> {
        self.with(|inner| {
            inner
                .conn
                .query_row("SELECT COUNT(*), MIN(ms) FROM recovery_log", [], |r| {
                    Ok(LogStats {
                        entries: r.get::<_, i64>(0)? as u64,
                        oldest_ms: r.get::<_, Option<i64>>(1)?.map(|m| m as u64),
                    })
                })
        })
        .await
    }

    async fn trim(
        &self,
        max_bytes: u64,
        min_ms: u64,
        limit: usize,
    ) -> Result<Trimmed, BackendError> {
        self.with(move |inner| {
            // Oldest first: find the last entry to drop, then one ranged DELETE.
            let mut last: Option<Offset> = None;
            let mut left = inner.bytes;
            {
                let mut oldest = inner.conn.prepare_cached(&format!(
                    "SELECT id, ms, {ENTRY_BYTES_SQL} FROM recovery_log ORDER BY id LIMIT ?1"
                ))?;
                let mut rows = oldest.query(params![limit as i64])?;
                while let Some(row) = rows.next()? {
                    let (id, ms, size): (i64, i64, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
                    if left <= max_bytes && ms as u64 >= min_ms {
                        break;
                    }
                    left = left.saturating_sub(size.max(0) as u64);
                    last = Some(Offset {
                        ms: ms as u64,
                        seq: id as u64,
                    });
                }
            }
            if let Some(cut) = last {
                inner.conn.execute(
                    "DELETE FROM recovery_log WHERE id <= ?1",
                    params![int(cut.seq)],
                )?;
                inner.bytes = left;
                inner.cut = inner.cut.max(Some(cut));
            }
            Ok(Trimmed {
                bytes: inner.bytes,
                cut: inner.cut,
            })
        })
        .await
    }

    async fn cut(&self) -> Result<Option<Offset>, BackendError> {
        self.with(|inner| Ok(inner.cut)).await
    }

    async fn newest_for_rooms(&self, rooms: &[String]) -> Result<Option<Offset>, BackendError> {
        let rooms = rooms.to_vec();
        self.with(move |inner| room_index::newest(&inner.conn, &rooms))
            .await
    }

    async fn put_session(&self, s: &Session, ttl: Duration) -> Result<(), BackendError> {
        let s = s.clone();
        let expires = now_ms() + ttl.as_millis() as u64;
        self.with(move |inner| {
            inner.conn.execute(
                "INSERT OR REPLACE INTO recovery_sessions
                 (pid, user_id, rooms, started_ms, disconnected_ms, sid, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    s.pid.as_str(),
                    s.user_id,
                    s.rooms.join("\n"),
                    int(s.started_ms),
                    s.disconnected_ms.map(int),
                    s.sid,
                    int(expires)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_session(&self, pid: &Pid) -> Result<Option<Session>, BackendError> {
        let pid = pid.clone();
        self.with(move |inner| {
            inner
                .conn
                .query_row(
                    "SELECT user_id, rooms, started_ms, disconnected_ms, sid FROM recovery_sessions
                     WHERE pid = ?1 AND expires_ms >= ?2",
                    params![pid.as_str(), int(now_ms())],
                    |r| {
                        Ok(Session {
                            pid: pid.clone(),
                            user_id: r.get(0)?,
                            rooms: split(&r.get::<_, String>(1)?),
                            started_ms: r.get::<_, i64>(2)? as u64,
                            disconnected_ms: r.get::<_, Option<i64>>(3)?.map(|d| d as u64),
                            sid: r.get(4)?,
                        })
                    },
                )
                .optional()
        })
        .await
    }

    async fn end_session(
        &self,
        pid: &Pid,
        sid: &str,
        at_ms: u64,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        let (pid, sid) = (pid.clone(), sid.to_owned());
        let expires = now_ms() + ttl.as_millis() as u64;
        self.with(move |inner| {
            let n = inner.conn.execute(
                "UPDATE recovery_sessions SET disconnected_ms = ?3, expires_ms = ?4
                 WHERE pid = ?1 AND sid = ?2",
                params![pid.as_str(), sid, int(at_ms), int(expires)],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn remove_session(&self, pid: &Pid, sid: &str) -> Result<bool, BackendError> {
        let (pid, sid) = (pid.clone(), sid.to_owned());
        self.with(move |inner| {
            let n = inner.conn.execute(
                "DELETE FROM recovery_sessions WHERE pid = ?1 AND sid = ?2",
                params![pid.as_str(), sid],
            )?;
            Ok(n == 1)
        })
        .await
    }
}
