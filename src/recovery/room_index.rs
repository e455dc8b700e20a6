//! The log's room index: for each room, the newest entry ever logged for it (kept for
//! [`ROOM_MEMORY`], whether or not the log still holds the entry).
//!
//! A resume needs the entries after the client's offset that reached its rooms. The log is one
//! stream for the whole cluster, so without an index that read grows with everyone's traffic
//! since the offset: a client that received nothing for minutes (most clients of a big cluster)
//! has an offset as old as its connection, and its resume would scan, or be refused for, minutes
//! of other people's events. With the index, a resume whose rooms got nothing after its offset
//! is answered from a few keys, without reading the log: it missed nothing.
//!
//! Why forgetting after [`ROOM_MEMORY`] is safe: a connected socket receives every entry for
//! its rooms, and each carries its offset, so a client's offset is at least its rooms' newest
//! entry up to the moment its connection broke. Only entries from that moment on can be
//! missed, and a session is kept at most [`ROOM_MEMORY`] (its `LIVE_TTL`), so an entry older
//! than that can concern no session that still exists.
//!
//! Redis keeps one key per room, `{sb}:rlog:room:{room}` (the `{sb}` slot, like the log),
//! written by the append script with a [`ROOM_MEMORY`] expiry; the embedded log a table,
//! written in the append's transaction and pruned by its trims.

use std::time::Duration;

use rusqlite::{Connection, Transaction, params_from_iter};

use super::backend::Offset;

/// How long a room's newest entry is remembered: as long as a session is kept.
pub const ROOM_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// The Redis key of `room`'s newest entry.
pub fn redis_key(room: &str) -> String {
    format!("{{sb}}:rlog:room:{room}")
}

/// The embedded table.
pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS recovery_rooms (
    room TEXT PRIMARY KEY,
    ms INTEGER NOT NULL,
    id INTEGER NOT NULL
);
"#;

/// Records `offset` as the newest entry of each of `rooms` (`\n`-joined, as the log stores
/// them), in the append's transaction.
pub fn note(tx: &Transaction<'_>, rooms: &str, offset: Offset) -> rusqlite::Result<()> {
    let mut upsert = tx.prepare_cached(
        "INSERT INTO recovery_rooms (room, ms, id) VALUES (?1, ?2, ?3)
         ON CONFLICT(room) DO UPDATE SET ms = excluded.ms, id = excluded.id",
    )?;
    for room in rooms.split('\n').filter(|r| !r.is_empty()) {
        upsert.execute(rusqlite::params![
            room,
            sql_int(offset.ms),
            sql_int(offset.seq)
        ])?;
    }
    Ok(())
}

/// Forgets the rooms whose newest entry is older than `before_ms`.
pub fn forget(tx: &Transaction<'_>, before_ms: u64) -> rusqlite::Result<usize> {
    tx.execute(
        "DELETE FROM recovery_rooms WHERE ms < ?1",
        rusqlite::params![sql_int(before_ms)],
    )
}

/// The newest entry of any of `rooms`, if one is remembered.
pub fn newest(conn: &Connection, rooms: &[String]) -> rusqlite::Result<Option<Offset>> {
    let mut newest: Option<Offset> = None;
    // A few rooms per session; in chunks below SQLite's bound on parameters all the same.
    for chunk in rooms.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(",");
        let mut q = conn.prepare(&format!(
            "SELECT ms, id FROM recovery_rooms WHERE room IN ({marks}) ORDER BY ms DESC, id DESC LIMIT 1"
        ))?;
        let found = q
            .query_map(params_from_iter(chunk.iter()), |r| {
                Ok(Offset {
                    ms: r.get::<_, i64>(0)?.max(0) as u64,
                    seq: r.get::<_, i64>(1)?.max(0) as u64,
                })
            })?
            .next()
            .transpose()?;
        newest = newest.max(found);
    }
    Ok(newest)
}

fn sql_int(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}
