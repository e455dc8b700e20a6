//! The MongoDB store's indexes: their names (each query names the index that serves it), their
//! creation once the server answers, and the TTL index that applies message retention.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[cfg(feature = "test-support")]
use futures_util::stream::TryStreamExt;
use mongodb::Collection;
use mongodb::IndexModel;
use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;

use super::{Inner, MongoStore, StoreError, StoreResult, db_err, error_code};

// Index names: each query below names the index that serves it.
pub(super) const IX_ID: &str = "_id_";
pub(super) const IX_MESSAGES_CHAT_SEQ: &str = "messages_chat_seq";
pub(super) const IX_MESSAGES_CLIENT_ID: &str = "messages_client_id";
pub(super) const IX_MESSAGES_UNREAD: &str = "messages_unread";
pub(super) const IX_MESSAGES_TTL: &str = "messages_ttl";
pub(super) const IX_MESSAGES_FILE_URL: &str = "messages_file_url";
pub(super) const IX_CHATS_PARTICIPANT: &str = "chats_participant_updated";
pub(super) const IX_CHATS_UPDATED: &str = "chats_updated";
pub(super) const IX_CHATS_QUEUE: &str = "chats_queue";
pub(super) const IX_CHATS_ASSIGNED: &str = "chats_assigned";
pub(super) const IX_REPORTS_USER: &str = "reports_user_created";
pub(super) const IX_REPORTS_CREATED: &str = "reports_created";
pub(super) const IX_UPLOADS_USER: &str = "uploads_by_user";

/// `IndexOptionsConflict`, `IndexKeySpecsConflict`: an index of that name exists with other
/// options (a changed retention period).
const INDEX_CONFLICT_CODES: &[i32] = &[85, 86];

impl MongoStore {
    /// Creates the indexes unless they are known to exist. Idempotent on the server side too:
    /// `createIndexes` with an existing identical index is a no-op.
    pub(super) async fn ensure_indexes(&self) -> StoreResult<()> {
        let inner = &self.0;
        if inner.indexes_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one_at_a_time = inner.index_lock.lock().await;
        if inner.indexes_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let named = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_owned()).build())
                .build()
        };
        inner
            .messages
            .create_indexes([
                IndexModel::builder()
                    .keys(doc! { "chatId": 1, "seq": 1 })
                    .options(
                        IndexOptions::builder()
                            .name(IX_MESSAGES_CHAT_SEQ.to_owned())
                            .unique(true)
                            .build(),
                    )
                    .build(),
                IndexModel::builder()
                    .keys(doc! { "senderId": 1, "clientMessageId": 1 })
                    .options(
                        IndexOptions::builder()
                            .name(IX_MESSAGES_CLIENT_ID.to_owned())
                            .unique(true)
                            .partial_filter_expression(
                                doc! { "clientMessageId": { "$exists": true } },
                            )
                            .build(),
                    )
                    .build(),
                named(
                    doc! { "chatId": 1, "status": 1, "senderId": 1 },
                    IX_MESSAGES_UNREAD,
                ),
                // Which chats carry a file: who besides its uploader and staff may open it.
                named(doc! { "fileUrl": 1, "chatId": 1 }, IX_MESSAGES_FILE_URL),
            ])
            .await
            .map_err(db_err)?;
        inner
            .chats
            .create_indexes([
                named(
                    doc! { "participants": 1, "updatedAt": -1, "_id": -1 },
                    IX_CHATS_PARTICIPANT,
                ),
                named(doc! { "updatedAt": -1, "_id": -1 }, IX_CHATS_UPDATED),
                // Auto-assignment: the queue, oldest first, and each staff member's load.
                named(
                    doc! { "status": 1, "queuedAt": 1, "_id": 1 },
                    IX_CHATS_QUEUE,
                ),
                named(
                    doc! { "assignedAdmin": 1, "status": 1, "assignedAt": -1 },
                    IX_CHATS_ASSIGNED,
                ),
            ])
            .await
            .map_err(db_err)?;
        inner
            .reports
            .create_indexes([
                named(
                    doc! { "userId": 1, "createdAt": -1, "_id": -1 },
                    IX_REPORTS_USER,
                ),
                named(doc! { "createdAt": -1, "_id": -1 }, IX_REPORTS_CREATED),
            ])
            .await
            .map_err(db_err)?;
        // GridFS's own indexes, under the names the drivers give them, so a driver that checks
        // for them finds them.
        let files: Collection<Document> = inner.db.collection("uploads.files");
        let chunks: Collection<Document> = inner.db.collection("uploads.chunks");
        files
            .create_index(named(
                doc! { "filename": 1, "uploadDate": 1 },
                "filename_1_uploadDate_1",
            ))
            .await
            .map_err(db_err)?;
        // Each user's recent uploads: the upload budget sums their sizes.
        files
            .create_index(named(
                doc! { "metadata.uploadedBy": 1, "metadata.createdAt": 1 },
                IX_UPLOADS_USER,
            ))
            .await
            .map_err(db_err)?;
        chunks
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "files_id": 1, "n": 1 })
                    .options(
                        IndexOptions::builder()
                            .name("files_id_1_n_1".to_owned())
                            .unique(true)
                            .build(),
                    )
                    .build(),
            )
            .await
            .map_err(db_err)?;
        self.ensure_audit_indexes().await?;
        if let Some(ttl) = inner.message_retention {
            self.ensure_retention(ttl).await?;
        }
        inner.indexes_ready.store(true, Ordering::Release);
        tracing::info!("MongoDB indexes are in place");
        Ok(())
    }

    /// Creates the TTL index on `messages.timestamp`, or changes its period when a previous
    /// start used another one.
    async fn ensure_retention(&self, ttl: Duration) -> StoreResult<()> {
        let model = IndexModel::builder()
            .keys(doc! { "timestamp": 1 })
            .options(
                IndexOptions::builder()
                    .name(IX_MESSAGES_TTL.to_owned())
                    .expire_after(ttl)
                    .build(),
            )
            .build();
        match self.0.messages.create_index(model).await {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e).is_some_and(|c| INDEX_CONFLICT_CODES.contains(&c)) => {
                tracing::info!(
                    days = ttl.as_secs() / 86_400,
                    "changing the message retention period"
                );
                self.0
                    .db
                    .run_command(doc! {
                        "collMod": "messages",
                        "index": { "name": IX_MESSAGES_TTL, "expireAfterSeconds": ttl.as_secs() as i64 },
                    })
                    .await
                    .map(drop)
                    .map_err(db_err)
            }
            Err(e) => Err(db_err(e)),
        }
    }
}

/// Inspection for the integration tests (and operators debugging a deployment by hand).
#[cfg(feature = "test-support")]
impl MongoStore {
    /// The names of the indexes on `collection` (for tests and operators).
    pub async fn index_names(&self, collection: &str) -> StoreResult<Vec<String>> {
        self.bounded(async {
            self.0
                .db
                .collection::<Document>(collection)
                .list_index_names()
                .await
                .map_err(db_err)
        })
        .await
    }

    /// The retention period the server's TTL index on messages applies, if there is one.
    pub async fn message_retention_on_server(&self) -> StoreResult<Option<Duration>> {
        self.bounded(async {
            let indexes: Vec<IndexModel> = self
                .0
                .messages
                .list_indexes()
                .await
                .map_err(db_err)?
                .try_collect()
                .await
                .map_err(db_err)?;
            Ok(indexes.into_iter().find_map(|ix| {
                let options = ix.options?;
                (options.name.as_deref() == Some(IX_MESSAGES_TTL))
                    .then_some(options.expire_after)
                    .flatten()
            }))
        })
        .await
    }
}

/// Creates the indexes as soon as the server answers, retrying with a growing pause; stops once
/// done or when the store is dropped.
pub(super) async fn create_indexes_when_reachable(store: Weak<Inner>) {
    let mut pause = Duration::from_millis(250);
    let mut warned = false;
    loop {
        let Some(inner) = store.upgrade() else { return };
        let store_ = MongoStore(inner);
        match store_.bounded(store_.ensure_indexes()).await {
            Ok(()) => return,
            Err(e @ StoreError::Internal(_)) => {
                // Reachable but refusing (an index of ours exists with other options): this
                // needs an operator, and the node stays not-ready until then.
                tracing::error!(error = %e, "cannot create the MongoDB indexes; retrying");
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "MongoDB is not reachable yet; retrying in the background");
                    warned = true;
                } else {
                    tracing::debug!(error = %e, "MongoDB still not reachable");
                }
            }
        }
        drop(store_);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}
