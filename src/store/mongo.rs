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
//! server's planner; [`MongoStore::query_plans`] runs `explain` on each query shape.
//! BSON types stay in this module: only domain types cross the [`Store`] trait.
//!
//! Files: this one (settings, errors, set-up, indexes, the [`Store`] operations),
//! `mongo/documents.rs` (documents and their domain conversions), `mongo/queries.rs` (filters,
//! sorts and hints, shared with `explain`), `mongo/explain.rs` ([`MongoStore::query_plans`]).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

mod documents;
mod explain;
mod queries;

pub use explain::QueryPlan;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use futures_util::stream::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::{Error as DbError, ErrorKind};
use mongodb::gridfs::GridFsBucket;
use mongodb::options::{ClientOptions, GridFsBucketOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, Database, IndexModel};

use super::{Store, StoreError, StoreResult};
use crate::domain::{
    CHAT_TYPE_SUPPORT, Chat, ChatId, ChatPatch, ChatQuery, ChatStatus, ChatSummary, FileId,
    FileMeta, HistoryPage, Message, MessageId, MessageStatus, NewChat, NewMessage, NewReport,
    Report, ReportId, ReportQuery, Saved, Timestamp, now,
};
use documents::{ChatDoc, MessageDoc, ReportDoc, bson_time, domain_time, oid};
use queries::*;

/// How to reach MongoDB and how the store behaves there.
#[derive(Debug, Clone)]
pub struct MongoSettings {
    /// The connection string (`MONGODB_URI`).
    pub uri: String,
    /// The database holding every collection (`MONGODB_DATABASE`).
    pub database: String,
    /// Upper bound for one store operation, and for finding a reachable server.
    pub timeout: Duration,
    /// Messages older than this are deleted by a TTL index; `None` keeps them forever.
    pub message_retention: Option<Duration>,
}

// Index names: each query below names the index that serves it.
const IX_ID: &str = "_id_";
const IX_MESSAGES_CHAT_SEQ: &str = "messages_chat_seq";
const IX_MESSAGES_CLIENT_ID: &str = "messages_client_id";
const IX_MESSAGES_UNREAD: &str = "messages_unread";
const IX_MESSAGES_TTL: &str = "messages_ttl";
const IX_CHATS_PARTICIPANT: &str = "chats_participant_updated";
const IX_CHATS_UPDATED: &str = "chats_updated";
const IX_REPORTS_USER: &str = "reports_user_created";
const IX_REPORTS_CREATED: &str = "reports_created";

/// GridFS chunks are written this many bytes at a time (the driver's default chunk size), so an
/// upload never needs a second copy of the file in memory and each write is bounded on its own.
const UPLOAD_SLICE: usize = 255 * 1024;

/// Server error codes meaning "this server cannot serve you right now" (shutting down, stepped
/// down, not primary): the caller sees `Unavailable`, like for a refused connection.
const UNAVAILABLE_CODES: &[i32] = &[
    6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
];

/// `IndexOptionsConflict`, `IndexKeySpecsConflict`: an index of that name exists with other
/// options (a changed retention period).
const INDEX_CONFLICT_CODES: &[i32] = &[85, 86];

const DUPLICATE_KEY: i32 = 11000;

/// MongoDB behind the [`Store`] trait. Cheap to clone.
#[derive(Clone)]
pub struct MongoStore(Arc<Inner>);

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

// ---------------------------------------------------------------------------------------------
// Errors

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

// ---------------------------------------------------------------------------------------------
// Set-up

impl MongoStore {
    /// Builds the store without contacting the server: a node starts while MongoDB is down,
    /// reports not-ready, and becomes ready when MongoDB answers. Fails only on a malformed
    /// connection string. Spawns the background index task, so call it inside a tokio runtime.
    pub async fn connect(settings: MongoSettings) -> StoreResult<Self> {
        let mut options = ClientOptions::parse(&settings.uri)
            .await
            .map_err(|e| StoreError::Internal(format!("MONGODB_URI: {e}")))?;
        // Bounded by our timeout unless the connection string says otherwise.
        options
            .server_selection_timeout
            .get_or_insert(settings.timeout);
        options.connect_timeout.get_or_insert(settings.timeout);
        options
            .app_name
            .get_or_insert_with(|| "switchboard".to_owned());
        let client = Client::with_options(options)
            .map_err(|e| StoreError::Internal(format!("MongoDB client: {e}")))?;
        let db = client.database(&settings.database);
        let uploads = db.gridfs_bucket(
            GridFsBucketOptions::builder()
                .bucket_name("uploads".to_owned())
                .build(),
        );
        let store = Self(Arc::new(Inner {
            chats: db.collection("chats"),
            messages: db.collection("messages"),
            reports: db.collection("report_messages"),
            uploads,
            db,
            timeout: settings.timeout,
            message_retention: settings.message_retention,
            indexes_ready: AtomicBool::new(false),
            index_lock: tokio::sync::Mutex::new(()),
        }));
        tokio::spawn(create_indexes_when_reachable(Arc::downgrade(&store.0)));
        Ok(store)
    }

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

    /// Creates the indexes unless they are known to exist. Idempotent on the server side too:
    /// `createIndexes` with an existing identical index is a no-op.
    async fn ensure_indexes(&self) -> StoreResult<()> {
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
}

impl MongoStore {
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
async fn create_indexes_when_reachable(store: Weak<Inner>) {
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

// ---------------------------------------------------------------------------------------------
// The store

impl MongoStore {
    async fn find_chat(&self, id: ObjectId) -> StoreResult<Option<Chat>> {
        Ok(self
            .0
            .chats
            .find_one(doc! { "_id": id })
            .await
            .map_err(db_err)?
            .map(Chat::from))
    }

    async fn find_by_client_id(
        &self,
        sender: &str,
        client_id: &str,
    ) -> StoreResult<Option<Message>> {
        let found = self
            .0
            .messages
            .find_one(client_id_filter(sender, client_id))
            .hint(hint(IX_MESSAGES_CLIENT_ID))
            .await
            .map_err(db_err)?;
        Ok(found.map(Message::from))
    }

    async fn find_report(&self, id: ObjectId) -> StoreResult<Option<Report>> {
        Ok(self
            .0
            .reports
            .find_one(doc! { "_id": id })
            .await
            .map_err(db_err)?
            .map(Report::from))
    }
}

#[async_trait]
impl Store for MongoStore {
    async fn ping(&self) -> StoreResult<()> {
        self.bounded(async {
            self.0
                .db
                .run_command(doc! { "ping": 1 })
                .await
                .map_err(db_err)?;
            // Ready means usable: the indexes that keep seq and retries safe exist.
            self.ensure_indexes().await
        })
        .await
    }

    async fn create_chat(&self, chat: NewChat) -> StoreResult<Chat> {
        self.bounded(async {
            self.ensure_indexes().await?;
            let t = bson_time(now());
            let mut participants: Vec<String> = Vec::with_capacity(chat.participants.len());
            for p in chat.participants {
                if !participants.contains(&p) {
                    participants.push(p);
                }
            }
            let doc = ChatDoc {
                id: oid(ChatId::generate().as_str())?,
                participants,
                chat_type: CHAT_TYPE_SUPPORT.to_owned(),
                title: chat.title,
                status: ChatStatus::Open,
                priority: chat.priority,
                assigned_admin: chat.assigned_admin,
                last_message: None,
                seq: 0,
                created_at: t,
                updated_at: t,
            };
            self.0.chats.insert_one(&doc).await.map_err(db_err)?;
            Ok(Chat::from(doc))
        })
        .await
    }

    async fn chat(&self, id: &ChatId) -> StoreResult<Option<Chat>> {
        let id = oid(id.as_str())?;
        self.bounded(async {
            self.ensure_indexes().await?;
            self.find_chat(id).await
        })
        .await
    }

    async fn list_chats(&self, query: &ChatQuery) -> StoreResult<Vec<ChatSummary>> {
        let (filter, index) = chat_list_query(query)?;
        self.bounded(async {
            self.ensure_indexes().await?;
            let chats: Vec<ChatDoc> = self
                .0
                .chats
                .find(filter)
                .sort(chat_list_sort())
                .limit(query.limit as i64)
                .hint(hint(index))
                .await
                .map_err(db_err)?
                .try_collect()
                .await
                .map_err(db_err)?;
            if chats.is_empty() {
                return Ok(Vec::new());
            }
            // One aggregation counts the unread messages of the whole page.
            let ids: Vec<ObjectId> = chats.iter().map(|c| c.id).collect();
            let counts: Vec<Document> = self
                .0
                .messages
                .aggregate(unread_pipeline(ids, &query.reader))
                .hint(hint(IX_MESSAGES_UNREAD))
                .await
                .map_err(db_err)?
                .try_collect()
                .await
                .map_err(db_err)?;
            let unread = |id: &ObjectId| {
                counts
                    .iter()
                    .find(|d| d.get_object_id("_id").ok().as_ref() == Some(id))
                    .and_then(|d| match d.get("n") {
                        Some(Bson::Int32(n)) => Some(*n as u64),
                        Some(Bson::Int64(n)) => Some(*n as u64),
                        _ => None,
                    })
                    .unwrap_or(0)
            };
            Ok(chats
                .into_iter()
                .map(|c| {
                    let unread_count = unread(&c.id);
                    ChatSummary {
                        chat: Chat::from(c),
                        unread_count,
                    }
                })
                .collect())
        })
        .await
    }

    async fn update_chat(&self, id: &ChatId, patch: ChatPatch) -> StoreResult<Chat> {
        let id = oid(id.as_str())?;
        self.bounded(async {
            self.ensure_indexes().await?;
            let mut set = doc! { "updatedAt": bson_time(now()) };
            if let Some(s) = patch.status {
                set.insert("status", s.as_str());
            }
            if let Some(p) = patch.priority {
                set.insert("priority", p.as_str());
            }
            let mut update = Document::new();
            if let Some(admin) = &patch.assigned_admin {
                set.insert("assignedAdmin", admin.as_str());
                // `$addToSet` appends at the end and never twice, as the embedded store does.
                update.insert("$addToSet", doc! { "participants": admin.as_str() });
            }
            update.insert("$set", set);
            let updated = self
                .0
                .chats
                .find_one_and_update(doc! { "_id": id }, update)
                .return_document(ReturnDocument::After)
                .await
                .map_err(db_err)?;
            updated.map(Chat::from).ok_or(StoreError::NotFound("chat"))
        })
        .await
    }

    async fn chat_partners(&self, user_id: &str) -> StoreResult<Vec<String>> {
        self.bounded(async {
            self.ensure_indexes().await?;
            let mut cursor = self
                .0
                .chats
                .clone_with_type::<Document>()
                .find(partners_filter(user_id))
                .projection(doc! { "participants": 1 })
                .hint(hint(IX_CHATS_PARTICIPANT))
                .await
                .map_err(db_err)?;
            let mut partners: Vec<String> = Vec::new();
            while let Some(chat) = cursor.try_next().await.map_err(db_err)? {
                let Ok(list) = chat.get_array("participants") else {
                    continue;
                };
                for p in list.iter().filter_map(Bson::as_str) {
                    if p != user_id && !partners.iter().any(|q| q == p) {
                        partners.push(p.to_owned());
                    }
                }
            }
            Ok(partners)
        })
        .await
    }

    async fn save_message(&self, m: NewMessage) -> StoreResult<Saved<Message>> {
        let chat_id = oid(m.chat_id.as_str())?;
        self.bounded(async {
            self.ensure_indexes().await?;
            // The normal retry path: found before any seq is taken.
            if let Some(cid) = &m.client_message_id
                && let Some(first) = self.find_by_client_id(&m.sender.id, cid).await?
            {
                return Ok(Saved::Existing(first));
            }
            let ts = bson_time(now());
            let last = doc! { "text": m.body.preview(), "createdAt": ts, "sender": m.sender.id.as_str() };
            // One round trip takes the next seq and updates the chat's list-view fields.
            let chat = self
                .0
                .chats
                .clone_with_type::<Document>()
                .find_one_and_update(
                    doc! { "_id": chat_id },
                    doc! { "$inc": { "seq": 1_i64 }, "$set": { "lastMessage": last, "updatedAt": ts } },
                )
                .projection(doc! { "seq": 1 })
                .return_document(ReturnDocument::After)
                .await
                .map_err(db_err)?
                .ok_or(StoreError::NotFound("chat"))?;
            let seq = match chat.get("seq") {
                Some(Bson::Int64(s)) => *s,
                Some(Bson::Int32(s)) => *s as i64,
                other => return Err(StoreError::Internal(format!("chat seq is {other:?}"))),
            };
            let doc = MessageDoc {
                id: oid(MessageId::generate().as_str())?,
                chat_id,
                seq,
                sender_id: m.sender.id,
                sender_name: m.sender.name,
                sender_role: m.sender.role,
                content: m.body.content,
                kind: m.body.kind,
                file_url: m.body.file_url,
                file_name: m.body.file_name,
                timestamp: ts,
                status: MessageStatus::Sent,
                client_message_id: m.client_message_id,
            };
            match self.0.messages.insert_one(&doc).await {
                Ok(_) => Ok(Saved::Created(Message::from(doc))),
                // Two first attempts with the same clientMessageId raced; the other one won.
                // This seq stays unused (a gap of one): see the module doc.
                Err(e) if error_code(&e) == Some(DUPLICATE_KEY) && doc.client_message_id.is_some() => {
                    let cid = doc.client_message_id.as_deref().unwrap_or_default();
                    match self.find_by_client_id(&doc.sender_id, cid).await? {
                        Some(first) => Ok(Saved::Existing(first)),
                        None => Err(db_err(e)),
                    }
                }
                Err(e) => Err(db_err(e)),
            }
        })
        .await
    }

    async fn message(&self, chat: &ChatId, id: &MessageId) -> StoreResult<Option<Message>> {
        let (chat, id) = (oid(chat.as_str())?, oid(id.as_str())?);
        self.bounded(async {
            self.ensure_indexes().await?;
            let found = self
                .0
                .messages
                .find_one(doc! { "_id": id, "chatId": chat })
                .hint(hint(IX_ID))
                .await
                .map_err(db_err)?;
            Ok(found.map(Message::from))
        })
        .await
    }

    async fn messages(
        &self,
        chat: &ChatId,
        page: HistoryPage,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        let chat = oid(chat.as_str())?;
        self.bounded(async {
            self.ensure_indexes().await?;
            let (filter, sort) = history_query(chat, page);
            let docs: Vec<MessageDoc> = self
                .0
                .messages
                .find(filter)
                .sort(sort)
                .limit(limit as i64)
                .hint(hint(IX_MESSAGES_CHAT_SEQ))
                .await
                .map_err(db_err)?
                .try_collect()
                .await
                .map_err(db_err)?;
            Ok(docs.into_iter().map(Message::from).collect())
        })
        .await
    }

    async fn mark_read(
        &self,
        chat: &ChatId,
        up_to_seq: u64,
        reader: &str,
        _at: Timestamp,
    ) -> StoreResult<u64> {
        let chat = oid(chat.as_str())?;
        self.bounded(async {
            self.ensure_indexes().await?;
            let result = self
                .0
                .messages
                .update_many(
                    mark_read_filter(chat, up_to_seq, reader),
                    doc! { "$set": { "status": "read" } },
                )
                .hint(hint(IX_MESSAGES_UNREAD))
                .await
                .map_err(db_err)?;
            Ok(result.modified_count)
        })
        .await
    }

    async fn create_report(&self, r: NewReport) -> StoreResult<Report> {
        self.bounded(async {
            self.ensure_indexes().await?;
            let doc = ReportDoc {
                id: oid(ReportId::generate().as_str())?,
                user_id: r.user_id,
                order_id: r.order_id,
                payment_id: r.payment_id,
                invoice_id: r.invoice_id,
                title: r.title,
                message: r.message,
                status: r.status,
                sent_by: r.sent_by,
                sent_by_name: r.sent_by_name,
                is_read: false,
                read_at: None,
                created_at: bson_time(now()),
            };
            self.0.reports.insert_one(&doc).await.map_err(db_err)?;
            Ok(Report::from(doc))
        })
        .await
    }

    async fn report(&self, id: &ReportId) -> StoreResult<Option<Report>> {
        let id = oid(id.as_str())?;
        self.bounded(async {
            self.ensure_indexes().await?;
            self.find_report(id).await
        })
        .await
    }

    async fn list_reports(&self, query: &ReportQuery) -> StoreResult<Vec<Report>> {
        let (filter, index) = report_list_query(query)?;
        self.bounded(async {
            self.ensure_indexes().await?;
            let docs: Vec<ReportDoc> = self
                .0
                .reports
                .find(filter)
                .sort(report_list_sort())
                .limit(query.limit as i64)
                .hint(hint(index))
                .await
                .map_err(db_err)?
                .try_collect()
                .await
                .map_err(db_err)?;
            Ok(docs.into_iter().map(Report::from).collect())
        })
        .await
    }

    async fn mark_report_read(&self, id: &ReportId, at: Timestamp) -> StoreResult<Report> {
        let id = oid(id.as_str())?;
        self.bounded(async {
            self.ensure_indexes().await?;
            // Only an unread report changes, so the first readAt is kept.
            self.0
                .reports
                .update_one(
                    doc! { "_id": id, "isRead": false },
                    doc! { "$set": { "isRead": true, "readAt": bson_time(at) } },
                )
                .hint(hint(IX_ID))
                .await
                .map_err(db_err)?;
            self.find_report(id)
                .await?
                .ok_or(StoreError::NotFound("report"))
        })
        .await
    }

    async fn unread_report_count(&self, user_id: &str) -> StoreResult<u64> {
        self.bounded(async {
            self.ensure_indexes().await?;
            self.0
                .reports
                .count_documents(unread_reports_filter(user_id))
                .hint(hint(IX_REPORTS_USER))
                .await
                .map_err(db_err)
        })
        .await
    }

    async fn save_upload(&self, meta: FileMeta, data: Bytes) -> StoreResult<()> {
        let id = oid(meta.id.as_str())?;
        self.bounded(async { self.ensure_indexes().await }).await?;
        let metadata = doc! {
            "contentType": meta.content_type.as_str(),
            "uploadedBy": meta.uploaded_by.as_str(),
            "createdAt": bson_time(meta.created_at),
        };
        let mut stream = self
            .bounded(async {
                self.0
                    .uploads
                    .open_upload_stream(&meta.file_name)
                    .id(Bson::ObjectId(id))
                    .metadata(metadata)
                    .await
                    .map_err(db_err)
            })
            .await?;
        // Each slice (one GridFS chunk) is written and bounded on its own, so a 10 MiB file over
        // a slow link is not cut off by a timeout meant for one round trip, and a dead server
        // still fails within one timeout.
        let mut written: StoreResult<()> = Ok(());
        for slice in data.chunks(UPLOAD_SLICE) {
            written = self
                .bounded(async { stream.write_all(slice).await.map_err(io_err) })
                .await;
            if written.is_err() {
                break;
            }
        }
        if written.is_ok() {
            // `close` writes the last chunk and then the files document, which makes the file
            // visible: a failed upload never shows up half-written.
            written = self
                .bounded(async { stream.close().await.map_err(io_err) })
                .await;
        }
        if written.is_err() {
            let _ = tokio::time::timeout(self.0.timeout, stream.abort()).await;
        }
        written
    }

    async fn upload(&self, id: &FileId) -> StoreResult<Option<(FileMeta, Bytes)>> {
        let key = oid(id.as_str())?;
        let file = self
            .bounded(async {
                self.ensure_indexes().await?;
                self.0
                    .uploads
                    .find_one(doc! { "_id": key })
                    .await
                    .map_err(db_err)
            })
            .await?;
        let Some(file) = file else { return Ok(None) };
        let metadata = file.metadata.unwrap_or_default();
        let meta = FileMeta {
            id: id.clone(),
            file_name: file.filename.unwrap_or_default(),
            content_type: metadata
                .get_str("contentType")
                .unwrap_or("application/octet-stream")
                .to_owned(),
            size: file.length,
            uploaded_by: metadata
                .get_str("uploadedBy")
                .unwrap_or_default()
                .to_owned(),
            created_at: metadata
                .get_datetime("createdAt")
                .map(|t| domain_time(*t))
                .unwrap_or_else(|_| domain_time(file.upload_date)),
        };
        let data = self
            .bounded(async {
                let mut stream = self
                    .0
                    .uploads
                    .open_download_stream(Bson::ObjectId(key))
                    .await
                    .map_err(db_err)?;
                let mut data = Vec::with_capacity(file.length as usize);
                stream.read_to_end(&mut data).await.map_err(io_err)?;
                Ok(data)
            })
            .await?;
        Ok(Some((meta, Bytes::from(data))))
    }
}

/// GridFS streams report driver errors wrapped in `std::io::Error`.
fn io_err(e: std::io::Error) -> StoreError {
    match e.into_inner().map(|inner| inner.downcast::<DbError>()) {
        Some(Ok(db)) => db_err(*db),
        Some(Err(other)) => StoreError::Unavailable(other.to_string()),
        None => StoreError::Unavailable("MongoDB connection failed".to_owned()),
    }
}
