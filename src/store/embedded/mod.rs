//! The embedded store: SQLite (bundled) in `DATA_DIR`, the single-node default. This file
//! opens the database (schema, pragmas, migrations, file modes) and runs work on its connection;
//! `rows.rs` maps rows to domain types and back, `operations.rs` is every `Store` operation in
//! SQL (uploads' in `uploads.rs`; as `store/mongo/` splits documents, queries and operations);
//! `desk.rs` and `audit.rs`
//! the support desk's.
//!
//! One connection in WAL mode behind a mutex, used from tokio's blocking pool: SQLite serializes
//! writers anyway, and one connection keeps `seq` assignment a plain transaction. Uploaded files
//! live beside the database under `uploads/`, written to a temporary name, synced, then renamed,
//! so a crash never leaves half a file under a real id. Nothing here is readable by other local
//! users: the directories are `0700`, the files `0600` (`private_files`).
//!
//! Write transactions start `IMMEDIATE` (they take the write lock first, waiting up to the busy
//! timeout): a deferred one that read and then wrote failed at once with "database is locked"
//! when another process on the same `DATA_DIR` (two nodes on one host, the cluster smoke test)
//! had written in between.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::{StoreError, StoreResult};
use crate::domain::Timestamp;
use crate::private_files;

mod assignment;
mod audit;
mod desk;
mod operations;
mod rows;
mod uploads;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS chats (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    status TEXT NOT NULL,
    priority TEXT NOT NULL,
    assigned_admin TEXT,
    last_text TEXT,
    last_at INTEGER,
    last_sender TEXT,
    seq INTEGER NOT NULL DEFAULT 0,
    delivered_user INTEGER NOT NULL DEFAULT 0,
    delivered_staff INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS chats_by_update ON chats (updated_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS chat_participants (
    chat_id TEXT NOT NULL REFERENCES chats(id),
    user_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);
CREATE INDEX IF NOT EXISTS participants_by_user ON chat_participants (user_id, chat_id);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    chat_id TEXT NOT NULL REFERENCES chats(id),
    seq INTEGER NOT NULL,
    sender_id TEXT NOT NULL,
    sender_name TEXT NOT NULL,
    sender_role TEXT NOT NULL,
    content TEXT NOT NULL,
    kind TEXT NOT NULL,
    file_url TEXT,
    file_name TEXT,
    ts INTEGER NOT NULL,
    status TEXT NOT NULL,
    client_message_id TEXT,
    UNIQUE (chat_id, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_client_id
    ON messages (sender_id, client_message_id) WHERE client_message_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_unread ON messages (chat_id, status, sender_id);
CREATE INDEX IF NOT EXISTS messages_by_file_url
    ON messages (file_url, chat_id) WHERE file_url IS NOT NULL;
CREATE TABLE IF NOT EXISTS reports (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    order_id TEXT,
    payment_id TEXT,
    invoice_id TEXT,
    title TEXT NOT NULL,
    message TEXT NOT NULL,
    status TEXT NOT NULL,
    sent_by TEXT NOT NULL,
    sent_by_name TEXT NOT NULL,
    is_read INTEGER NOT NULL DEFAULT 0,
    read_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_by_user ON reports (user_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS reports_by_time ON reports (created_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    file_name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    uploaded_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_by_user ON uploads (uploaded_by, created_at);
"#;

/// SQLite in `DATA_DIR`: `switchboard.db` and `uploads/`.
#[derive(Clone)]
pub struct EmbeddedStore {
    /// The one connection; see the module doc for why one.
    conn: Arc<Mutex<Connection>>,
    /// Where uploaded files are kept, one file per id.
    uploads_dir: PathBuf,
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

fn ms(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> Timestamp {
    chrono::DateTime::from_timestamp_millis(v).unwrap_or_default()
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        let uploads_dir = dir.join("uploads");
        private_files::ensure_dir(dir).map_err(internal)?;
        private_files::ensure_dir(&uploads_dir).map_err(internal)?;
        let db = dir.join("switchboard.db");
        for suffix in ["", "-wal", "-shm"] {
            private_files::tighten_file(&dir.join(format!("switchboard.db{suffix}")))
                .map_err(internal)?;
        }
        if !db.exists() {
            // Created here as 0600 (an empty file is an empty database): SQLite gives the -wal
            // and -shm it creates the database file's mode, so they are private too.
            private_files::create_file(&db).map_err(internal)?;
        }
        let conn = Connection::open(&db).map_err(internal)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(internal)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(internal)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(internal)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(internal)?;
        conn.execute_batch(SCHEMA).map_err(internal)?;
        conn.execute_batch(desk::SCHEMA).map_err(internal)?;
        conn.execute_batch(audit::SCHEMA).map_err(internal)?;
        add_delivery_columns(&conn).map_err(internal)?;
        assignment::migrate(&conn).map_err(internal)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            uploads_dir,
        })
    }

    /// Runs `f` on the connection in the blocking pool.
    async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut conn).map_err(internal)
        })
        .await
        .map_err(internal)?
    }
}

/// A database made before delivery status has `chats` without the delivery marks: add them
/// (0: nothing delivered yet, so old messages read as `sent` until something delivers them).
fn add_delivery_columns(conn: &Connection) -> rusqlite::Result<()> {
    let has: bool = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('chats') WHERE name = 'delivered_user'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has {
        conn.execute_batch(
            "ALTER TABLE chats ADD COLUMN delivered_user INTEGER NOT NULL DEFAULT 0; \
             ALTER TABLE chats ADD COLUMN delivered_staff INTEGER NOT NULL DEFAULT 0;",
        )?;
    }
    Ok(())
}
