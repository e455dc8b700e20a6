//! The outbox of a node on the embedded store: `webhooks.db` in `DATA_DIR` (its own SQLite
//! file, so the outbox's writes never wait behind the store's), WAL mode, one connection used
//! from tokio's blocking pool, private like the store's files.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{
    Backlog, Batch, Delivery, Outbox, OutboxError, OutboxResult, Pledge, State, UnreadWatch,
};
use crate::private_files;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS deliveries (
    endpoint TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    pos INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    data TEXT NOT NULL,
    state INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    next_ms INTEGER NOT NULL,
    queued_ms INTEGER NOT NULL,
    done_ms INTEGER,
    last_error TEXT,
    seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (endpoint, id)
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (endpoint, state, pos);
CREATE TABLE IF NOT EXISTS unread_watches (
    chat_id TEXT NOT NULL,
    side TEXT NOT NULL,
    due_ms INTEGER,
    fired_upto INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (chat_id, side)
);
CREATE INDEX IF NOT EXISTS unread_due ON unread_watches (due_ms) WHERE due_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS pledges (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    pos INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    check_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pledges_pos ON pledges (pos);
"#;

const COLUMNS: &str = "endpoint, id, kind, key, pos, at_ms, data, state, attempts, next_ms, \
                       queued_ms, last_error, seq";

/// The outbox in `DATA_DIR/webhooks.db`.
pub struct SqliteOutbox {
    conn: Arc<Mutex<Connection>>,
}

fn err(e: impl std::fmt::Display) -> OutboxError {
    OutboxError(e.to_string())
}

impl SqliteOutbox {
    pub fn open(dir: &Path) -> OutboxResult<Self> {
        private_files::ensure_dir(dir).map_err(err)?;
        let db = dir.join("webhooks.db");
        for suffix in ["", "-wal", "-shm"] {
            private_files::tighten_file(&dir.join(format!("webhooks.db{suffix}"))).map_err(err)?;
        }
        if !db.exists() {
            private_files::create_file(&db).map_err(err)?;
        }
        let conn = Connection::open(&db).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        // An outbox from before deliveries knew the message they follow.
        if conn.prepare("SELECT seq FROM deliveries LIMIT 0").is_err() {
            conn.execute_batch("ALTER TABLE deliveries ADD COLUMN seq INTEGER NOT NULL DEFAULT 0")
                .map_err(err)?;
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn run<T, F>(&self, f: F) -> OutboxResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn).map_err(err)
        })
        .await
        .map_err(err)?
    }
}

fn delivery(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        endpoint: r.get(0)?,
        id: r.get(1)?,
        kind: r.get(2)?,
        key: r.get(3)?,
        pos: r.get(4)?,
        at_ms: r.get(5)?,
        data: r.get(6)?,
        state: State::from_i64(r.get(7)?),
        attempts: r.get(8)?,
        next_ms: r.get(9)?,
        queued_ms: r.get(10)?,
        last_error: r.get(11)?,
        seq: r.get::<_, i64>(12)? as u64,
    })
}

#[async_trait]
impl Outbox for SqliteOutbox {
    async fn enqueue(&self, deliveries: &[Delivery]) -> OutboxResult<()> {
        self.write_batch(&Batch {
            deliveries: deliveries.to_vec(),
            ..Batch::default()
        })
        .await
    }

    async fn write_batch(&self, batch: &Batch) -> OutboxResult<()> {
        let batch = batch.clone();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            insert_deliveries(&tx, &batch.deliveries)?;
            delete_pledges(&tx, &batch.fulfilled)?;
            upsert_watches(&tx, &batch.watches)?;
            tx.commit()
        })
        .await
    }

    async fn pledge(&self, p: &Pledge) -> OutboxResult<()> {
        let p = p.clone();
        self.run(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO pledges (id, kind, key, pos, seq, at_ms, check_json) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![p.id, p.kind, p.key, p.pos, p.seq as i64, p.at_ms, p.check],
            )
            .map(|_| ())
        })
        .await
    }

    async fn unpledge(&self, ids: &[String]) -> OutboxResult<()> {
        self.write_batch(&Batch {
            fulfilled: ids.to_vec(),
            ..Batch::default()
        })
        .await
    }

    async fn stale_pledges(&self, before_ms: i64, limit: usize) -> OutboxResult<Vec<Pledge>> {
        self.run(move |c| {
            let mut st = c.prepare_cached(
                "SELECT id, kind, key, pos, seq, at_ms, check_json FROM pledges \
                 WHERE pos < ?1 ORDER BY pos LIMIT ?2",
            )?;
            st.query_map(params![before_ms * 1_000_000, limit as i64], |r| {
                Ok(Pledge {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    key: r.get(2)?,
                    pos: r.get(3)?,
                    seq: r.get::<_, i64>(4)? as u64,
                    at_ms: r.get(5)?,
                    check: r.get(6)?,
                })
            })?
            .collect()
        })
        .await
    }

    async fn pledged_keys(&self, limit: usize) -> OutboxResult<Vec<(String, i64)>> {
        self.run(move |c| {
            let mut st = c.prepare_cached(
                "SELECT key, MIN(pos) FROM pledges GROUP BY key ORDER BY MIN(pos) LIMIT ?1",
            )?;
            st.query_map(params![limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .await
    }

    async fn pending(&self, endpoint: &str, limit: usize) -> OutboxResult<Vec<Delivery>> {
        let endpoint = endpoint.to_owned();
        self.run(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM deliveries WHERE endpoint = ?1 AND state = 0 \
                 ORDER BY pos LIMIT ?2"
            ))?;
            st.query_map(params![endpoint, limit as i64], delivery)?
                .collect()
        })
        .await
    }

    async fn update(&self, d: &Delivery) -> OutboxResult<()> {
        self.update_many(std::slice::from_ref(d)).await
    }

    async fn update_many(&self, ds: &[Delivery]) -> OutboxResult<()> {
        let ds = ds.to_vec();
        self.run(move |c| {
            let done_ms = crate::domain::now().timestamp_millis();
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut st = tx.prepare_cached(
                    "UPDATE deliveries SET state = ?3, attempts = ?4, next_ms = ?5, \
                     queued_ms = ?6, last_error = ?7, done_ms = ?8 WHERE endpoint = ?1 AND id = ?2",
                )?;
                for d in &ds {
                    let done = (d.state == State::Delivered).then_some(done_ms);
                    st.execute(params![
                        d.endpoint,
                        d.id,
                        d.state as i64,
                        d.attempts,
                        d.next_ms,
                        d.queued_ms,
                        d.last_error,
                        done
                    ])?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn failed(&self, endpoint: Option<&str>, limit: usize) -> OutboxResult<Vec<Delivery>> {
        let endpoint = endpoint.map(str::to_owned);
        self.run(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM deliveries WHERE state = 2 \
                 AND (?1 IS NULL OR endpoint = ?1) ORDER BY pos DESC LIMIT ?2"
            ))?;
            st.query_map(params![endpoint, limit as i64], delivery)?
                .collect()
        })
        .await
    }

    async fn resend(
        &self,
        endpoint: Option<&str>,
        ids: Option<&[String]>,
        now_ms: i64,
    ) -> OutboxResult<u64> {
        let endpoint = endpoint.map(str::to_owned);
        let ids = ids.map(<[String]>::to_vec);
        self.run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let sql = "UPDATE deliveries SET state = 0, attempts = 0, next_ms = ?1, \
                       queued_ms = ?1, last_error = NULL \
                       WHERE state = 2 AND (?2 IS NULL OR endpoint = ?2) AND (?3 IS NULL OR id = ?3)";
            let mut n = 0;
            match &ids {
                None => n += tx.execute(sql, params![now_ms, endpoint, None::<String>])?,
                Some(ids) => {
                    for id in ids {
                        n += tx.execute(sql, params![now_ms, endpoint, id])?;
                    }
                }
            }
            tx.commit()?;
            Ok(n as u64)
        })
        .await
    }

    async fn backlog(&self, endpoint: &str) -> OutboxResult<Backlog> {
        let endpoint = endpoint.to_owned();
        self.run(move |c| {
            c.query_row(
                "SELECT COALESCE(SUM(state = 0), 0), COALESCE(SUM(state = 2), 0), \
                 MIN(CASE WHEN state = 0 THEN queued_ms END) FROM deliveries \
                 WHERE endpoint = ?1 AND state != 1",
                params![endpoint],
                |r| {
                    Ok(Backlog {
                        pending: r.get::<_, i64>(0)? as u64,
                        failed: r.get::<_, i64>(1)? as u64,
                        oldest_pending_ms: r.get(2)?,
                    })
                },
            )
        })
        .await
    }

    async fn prune(&self, before_ms: i64) -> OutboxResult<u64> {
        self.run(move |c| {
            c.execute(
                "DELETE FROM deliveries WHERE state = 1 AND done_ms < ?1",
                params![before_ms],
            )
            .map(|n| n as u64)
        })
        .await
    }

    async fn watch_unread(&self, chat_id: &str, side: &str, due_ms: i64) -> OutboxResult<()> {
        self.watch_unread_many(&[(chat_id.to_owned(), side.to_owned(), due_ms)])
            .await
    }

    async fn watch_unread_many(&self, watches: &[(String, String, i64)]) -> OutboxResult<()> {
        self.write_batch(&Batch {
            watches: watches.to_vec(),
            ..Batch::default()
        })
        .await
    }

    async fn due_unread(&self, now_ms: i64, limit: usize) -> OutboxResult<Vec<UnreadWatch>> {
        self.run(move |c| {
            let mut st = c.prepare_cached(
                "SELECT chat_id, side, due_ms, fired_upto FROM unread_watches \
                 WHERE due_ms IS NOT NULL AND due_ms <= ?1 ORDER BY due_ms LIMIT ?2",
            )?;
            st.query_map(params![now_ms, limit as i64], |r| {
                Ok(UnreadWatch {
                    chat_id: r.get(0)?,
                    side: r.get(1)?,
                    due_ms: r.get(2)?,
                    fired_upto: r.get::<_, i64>(3)? as u64,
                })
            })?
            .collect()
        })
        .await
    }

    async fn set_unread(&self, w: &UnreadWatch) -> OutboxResult<()> {
        let w = w.clone();
        self.run(move |c| {
            c.execute(
                "UPDATE unread_watches SET due_ms = ?3, fired_upto = ?4 \
                 WHERE chat_id = ?1 AND side = ?2",
                params![w.chat_id, w.side, w.due_ms, w.fired_upto as i64],
            )
            .map(|_| ())
        })
        .await
    }
}

/// Queues deliveries (one already there is left as it is).
fn insert_deliveries(tx: &rusqlite::Transaction<'_>, rows: &[Delivery]) -> rusqlite::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut st = tx.prepare_cached(&format!(
        "INSERT OR IGNORE INTO deliveries ({COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    ))?;
    for d in rows {
        st.execute(params![
            d.endpoint,
            d.id,
            d.kind,
            d.key,
            d.pos,
            d.at_ms,
            d.data,
            d.state as i64,
            d.attempts,
            d.next_ms,
            d.queued_ms,
            d.last_error,
            d.seq as i64
        ])?;
    }
    Ok(())
}

/// Forgets pledges.
fn delete_pledges(tx: &rusqlite::Transaction<'_>, ids: &[String]) -> rusqlite::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut st = tx.prepare_cached("DELETE FROM pledges WHERE id = ?1")?;
    for id in ids {
        st.execute(params![id])?;
    }
    Ok(())
}

/// Plans `chat.unread` looks (an earlier planned one stays).
fn upsert_watches(
    tx: &rusqlite::Transaction<'_>,
    watches: &[(String, String, i64)],
) -> rusqlite::Result<()> {
    if watches.is_empty() {
        return Ok(());
    }
    let mut st = tx.prepare_cached(
        "INSERT INTO unread_watches (chat_id, side, due_ms, fired_upto) \
         VALUES (?1, ?2, ?3, 0) ON CONFLICT (chat_id, side) \
         DO UPDATE SET due_ms = COALESCE(due_ms, excluded.due_ms)",
    )?;
    for (chat_id, side, due_ms) in watches {
        st.execute(params![chat_id, side, due_ms])?;
    }
    Ok(())
}

/// Reads one delivery (tests).
impl SqliteOutbox {
    pub async fn get(&self, endpoint: &str, id: &str) -> OutboxResult<Option<Delivery>> {
        let (endpoint, id) = (endpoint.to_owned(), id.to_owned());
        self.run(move |c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM deliveries WHERE endpoint = ?1 AND id = ?2"),
                params![endpoint, id],
                delivery,
            )
            .optional()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `webhooks.db` written before deliveries knew the message they follow opens, keeps its
    /// rows (as following none) and takes new ones.
    #[tokio::test]
    async fn an_outbox_from_before_the_seq_column_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let old = SCHEMA.replace("    seq INTEGER NOT NULL DEFAULT 0,\n", "");
        assert_ne!(old, SCHEMA);
        {
            let conn = Connection::open(dir.path().join("webhooks.db")).unwrap();
            conn.execute_batch(&old).unwrap();
            conn.execute(
                "INSERT INTO deliveries (endpoint, id, kind, key, pos, at_ms, data, state, \
                 attempts, next_ms, queued_ms) VALUES ('e', 'old', 'chat.created', 'chat:c', 1, \
                 1, 'null', 0, 0, 0, 0)",
                [],
            )
            .unwrap();
        }
        let outbox = SqliteOutbox::open(dir.path()).unwrap();
        let mut new = outbox.get("e", "old").await.unwrap().expect("kept");
        assert_eq!(new.seq, 0);
        new.id = "new".into();
        new.seq = 7;
        new.pos = 2;
        outbox.enqueue(&[new]).await.unwrap();
        let pending = outbox.pending("e", 10).await.unwrap();
        let seqs: Vec<(String, u64)> = pending.into_iter().map(|d| (d.id, d.seq)).collect();
        assert_eq!(seqs, [("old".to_owned(), 0), ("new".to_owned(), 7)]);
    }
}
