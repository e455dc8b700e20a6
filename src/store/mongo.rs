//! The MongoDB store: the cluster's shared store, chosen by `MONGODB_URI`.
//!
//! Collections (`docs/mongodb.md` has the full picture):
//! - `chats`: the old backend's Chat model fields plus the chat's `seq` counter;
//! - `messages`: one document per message, keyed by `(chatId, seq)`. The old backend kept
//!   messages in an array inside the chat document, and busy chats hit MongoDB's 16 MiB
//!   document limit; a collection of its own has no such ceiling and pages by index;
//! - `report_messages`: staff-to-user reports;
//! - GridFS bucket `uploads` (`uploads.files`, `uploads.chunks`): uploaded files and their
//!   metadata.
//!
//! `seq` costs one round trip: `findOneAndUpdate` with `$inc` on the chat returns the new value
//! and sets `lastMessage`/`updatedAt` in the same write; then the message is inserted. A
//! `clientMessageId` retry is looked up first, so the normal retry path uses up no `seq`; only
//! two concurrent first attempts with the same id can race, and the loser (stopped by the unique
//! index) returns the winner's save, leaving a gap of one in `seq`.
//!
//! Outages: every operation is bounded by one timeout (`MONGODB_TIMEOUT_MS`) and fails with
//! [`StoreError::Unavailable`] when the server cannot be reached; the driver reconnects by
//! itself, so service resumes without a restart. Building the store never connects: indexes are
//! created by a background task once the server answers, and until they exist, operations (and
//! `ping`, hence `/readyz`) first try to create them.
//!
//! Every query names the index that serves it (`hint`), so the plan does not depend on the
//! server's planner; with the `test-support` feature, `MongoStore::query_plans` runs `explain`
//! on each query shape. BSON types stay in this module: only domain types cross the [`Store`]
//! trait.
//!
//! Files: this one (the store's state, driver errors, the timeout), `mongo/connect.rs` (settings,
//! connecting, starting the index task),
//! `mongo/indexes.rs` (index names, creating them, retention), `mongo/operations.rs` (the
//! [`Store`] operations; saving a message is in `mongo/messages.rs`, reports in
//! `mongo/reports.rs`), `mongo/desk.rs` and `mongo/audit.rs` (the support desk's), `mongo/gridfs.rs` (uploads in GridFS, and who may read one), `mongo/documents.rs`
//! (documents and their domain conversions), `mongo/queries.rs` (filters, sorts and hints,
//! shared with `explain`), `mongo/explain.rs` (`query_plans`, `test-support` only).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

mod assignment;
mod audit;
mod connect;
mod desk;
mod documents;
#[cfg(feature = "test-support")]
mod explain;
mod gridfs;
mod indexes;
mod messages;
mod operations;
mod queries;
mod reports;

pub use connect::MongoSettings;
#[cfg(feature = "test-support")]
pub use explain::QueryPlan;

use mongodb::error::{Error as DbError, ErrorKind};
use mongodb::gridfs::GridFsBucket;
use mongodb::{Collection, Database};

use super::{Store, StoreError, StoreResult};
use documents::{ChatDoc, MessageDoc, ReportDoc};

/// Server error codes meaning "this server cannot serve you right now" (shutting down, stepped
/// down, not primary): the caller sees `Unavailable`, like for a refused connection.
const UNAVAILABLE_CODES: &[i32] = &[
    6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
];

const DUPLICATE_KEY: i32 = 11000;

/// MongoDB behind the [`Store`] trait. Cheap to clone.
#[derive(Clone)]
pub struct MongoStore(Arc<Inner>);

/// What every clone of a [`MongoStore`] shares.
struct Inner {
    db: Database,
    chats: Collection<ChatDoc>,
    messages: Collection<MessageDoc>,
    reports: Collection<ReportDoc>,
    uploads: GridFsBucket,
    /// Bound for one operation; see the module doc.
    timeout: Duration,
    /// The TTL of `messages.timestamp`, if retention is on.
    message_retention: Option<Duration>,
    /// Set once every index exists; until then operations try to create them first.
    indexes_ready: AtomicBool,
    /// One index build at a time per store, so a burst of requests after an outage does not
    /// send a burst of `createIndexes`.
    index_lock: tokio::sync::Mutex<()>,
}

/// Sorts a driver error: unreachable or not-serving servers are `Unavailable` (the client gets
/// `UNAVAILABLE`), everything else is `Internal`.
fn db_err(e: DbError) -> StoreError {
    let unreachable = match e.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::ServerSelection { .. } => true,
        ErrorKind::Command(c) => UNAVAILABLE_CODES.contains(&c.code),
        _ => {
            e.contains_label("RetryableWriteError") || e.contains_label("TransientTransactionError")
        }
    };
    if unreachable {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Internal(e.to_string())
    }
}

fn error_code(e: &DbError) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .and_then(|w| w.first())
            .map(|w| w.code),
        _ => None,
    }
}

impl MongoStore {
    /// Runs `op` within the store's timeout; a timeout is `Unavailable` (nothing was saved, or,
    /// if the server did save, a `clientMessageId` retry finds it).
    async fn bounded<T>(&self, op: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        match tokio::time::timeout(self.0.timeout, op).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(format!(
                "MongoDB did not answer within {:?}",
                self.0.timeout
            ))),
        }
    }
}
