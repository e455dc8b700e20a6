//! The [`Store`] operations on MongoDB: chats and messages here; the save of a message (with
//! the one-round-trip `seq`) in `messages.rs`, reports in `reports.rs`, uploads in `gridfs.rs`,
//! each operation handed on in one line. One concern: the `Store` trait's implementation on
//! MongoDB, one method per operation.

use async_trait::async_trait;
use futures_util::stream::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ReturnDocument;

use super::documents::{ChatDoc, MessageDoc, bson_time, delivered_field, oid};
use super::indexes::*;
use super::queries::*;
use super::{MongoStore, Store, StoreError, StoreResult, db_err};
use crate::domain::{
    CHAT_TYPE_SUPPORT, Chat, ChatId, ChatPatch, ChatQuery, ChatStatus, ChatSummary, FileId,
    FileMeta, HistoryPage, Message, MessageId, NewChat, NewMessage, NewReport, Report, ReportId,
    ReportQuery, Saved, Side, Timestamp, now,
};
use crate::store::{FileReader, FileStream};

/// How often a reassignment reads the chat again when another one landed in between.
const REASSIGN_ATTEMPTS: usize = 5;

impl MongoStore {
    pub(super) async fn find_chat(&self, id: ObjectId) -> StoreResult<Option<Chat>> {
        Ok(self
            .0
            .chats
            .find_one(doc! { "_id": id })
            .await
            .map_err(db_err)?
            .map(Chat::from))
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
                id: oid(chat.id.as_str())?,
                participants,
                chat_type: CHAT_TYPE_SUPPORT.to_owned(),
                title: chat.title,
                status: ChatStatus::Open,
                priority: chat.priority,
                queued_at: chat.queued.then_some(t),
                assigned_at: chat.assigned_admin.is_some().then_some(t),
                assigned_admin: chat.assigned_admin,
                last_message: None,
                seq: 0,
                delivered_to_user: 0,
                delivered_to_staff: 0,
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
                .sort(chat_list_sort(query.ascending))
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
            // A reassignment replaces the previous admin in `participants`: written only if
            // nobody reassigned the chat since it was read (else read again).
            let mut queue = patch.queue
                && patch.assigned_admin.is_none()
                && patch.status == Some(ChatStatus::Open);
            for _ in 0..REASSIGN_ATTEMPTS {
                let mut set = doc! { "updatedAt": bson_time(now()) };
                if let Some(s) = patch.status {
                    set.insert("status", s.as_str());
                }
                if let Some(p) = patch.priority {
                    set.insert("priority", p.as_str());
                }
                let mut filter = doc! { "_id": id };
                let mut update = Document::new();
                // Closing or assigning takes the chat out of the auto-assignment queue.
                if patch.assigned_admin.is_some() || patch.status == Some(ChatStatus::Closed) {
                    update.insert("$unset", doc! { "queuedAt": "" });
                }
                if let Some(admin) = &patch.assigned_admin {
                    set.insert("assignedAdmin", admin.as_str());
                    let before = self
                        .find_chat(id)
                        .await?
                        .ok_or(StoreError::NotFound("chat"))?;
                    if before.assigned_admin.as_deref() != Some(admin.as_str()) {
                        set.insert("assignedAt", bson_time(now()));
                    }
                    match crate::domain::replaced_admin(&before, Some(admin)) {
                        Some(prev) => {
                            let mut participants: Vec<&str> = before
                                .participants
                                .iter()
                                .map(String::as_str)
                                .filter(|p| *p != prev)
                                .collect();
                            if !participants.contains(&admin.as_str()) {
                                participants.push(admin);
                            }
                            set.insert("participants", participants);
                            filter.insert("assignedAdmin", prev);
                        }
                        // `$addToSet` appends at the end and never twice, as the embedded
                        // store does.
                        // Written only if the assigned admin is still the one read (none,
                        // or this one): an auto-assignment at the same moment is not joined
                        // by a second staff participant.
                        None => {
                            update.insert("$addToSet", doc! { "participants": admin.as_str() });
                            filter.insert(
                                "assignedAdmin",
                                before
                                    .assigned_admin
                                    .as_deref()
                                    .map_or(Bson::Null, Bson::from),
                            );
                        }
                    }
                }
                if queue {
                    // A reopened chat goes back to the queue if nobody is assigned to it
                    // (else it is written again without).
                    filter.insert("assignedAdmin", Bson::Null);
                    set.insert("queuedAt", bson_time(now()));
                }
                let conditional = filter.contains_key("assignedAdmin");
                update.insert("$set", set);
                if let Some(change) = &patch.change {
                    update.insert("$push", super::assignment::push_change(change));
                }
                let updated = self
                    .0
                    .chats
                    .find_one_and_update(filter, update)
                    .return_document(ReturnDocument::After)
                    .await
                    .map_err(db_err)?;
                match updated {
                    Some(chat) => return Ok(Chat::from(chat)),
                    None if conditional => {
                        queue = false;
                        continue;
                    }
                    None => return Err(StoreError::NotFound("chat")),
                }
            }
            Err(StoreError::Internal(
                "the chat was reassigned concurrently too often".into(),
            ))
        })
        .await
    }

    async fn chat_partners_of(
        &self,
        user_ids: &[String],
    ) -> StoreResult<Vec<(String, Vec<String>)>> {
        self.bounded(async {
            self.ensure_indexes().await?;
            let mut partners: std::collections::HashMap<&str, Vec<String>> =
                user_ids.iter().map(|u| (u.as_str(), Vec::new())).collect();
            for chunk in user_ids.chunks(500) {
                let mut cursor = self
                    .0
                    .chats
                    .clone_with_type::<Document>()
                    .find(doc! { "participants": { "$in": chunk }, "status": "open" })
                    .projection(doc! { "participants": 1 })
                    .hint(hint(IX_CHATS_PARTICIPANT))
                    .await
                    .map_err(db_err)?;
                while let Some(chat) = cursor.try_next().await.map_err(db_err)? {
                    let Ok(list) = chat.get_array("participants") else {
                        continue;
                    };
                    let names: Vec<&str> = list.iter().filter_map(Bson::as_str).collect();
                    for me in &names {
                        let Some(mine) = partners.get_mut(*me) else {
                            continue;
                        };
                        for p in &names {
                            if p != me && !mine.iter().any(|q| q == p) {
                                mine.push((*p).to_owned());
                            }
                        }
                    }
                }
            }
            Ok(user_ids
                .iter()
                .map(|u| (u.clone(), partners.remove(u.as_str()).unwrap_or_default()))
                .collect())
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
        self.insert_message(m).await
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

    async fn mark_read(&self, chat: &ChatId, up_to_seq: u64, reader: &str) -> StoreResult<u64> {
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

    async fn advance_delivered(
        &self,
        chat: &ChatId,
        side: Side,
        up_to_seq: u64,
    ) -> StoreResult<bool> {
        let chat = oid(chat.as_str())?;
        let field = delivered_field(side);
        let seq = up_to_seq as i64;
        self.bounded(async {
            // One write on the chat's `_id`: `$max` moves the mark only forward (and sets it in
            // a chat made before delivery status, which lacks the field), atomically per
            // document, so of two nodes racing only a forward move lands, and only a write
            // that changed the document counts as modified. One round trip: no second query
            // for "not found" (`matched` says it), and no `$or` filter (which the
            // MongoDB-wire test server answers with a scan: 2.3 ms against 0.7 ms a write).
            let result = self
                .0
                .chats
                .update_one(doc! { "_id": chat }, doc! { "$max": { field: seq } })
                .await
                .map_err(db_err)?;
            if result.matched_count == 0 {
                return Err(StoreError::NotFound("chat"));
            }
            Ok(result.modified_count > 0)
        })
        .await
    }

    async fn create_report(&self, r: NewReport) -> StoreResult<Report> {
        self.insert_report(r).await
    }

    async fn report(&self, id: &ReportId) -> StoreResult<Option<Report>> {
        self.report_by_id(id).await
    }

    async fn list_reports(&self, query: &ReportQuery) -> StoreResult<Vec<Report>> {
        self.report_page(query).await
    }

    async fn mark_report_read(&self, id: &ReportId, at: Timestamp) -> StoreResult<Report> {
        self.set_report_read(id, at).await
    }

    async fn unread_report_count(&self, user_id: &str) -> StoreResult<u64> {
        self.count_unread_reports(user_id).await
    }

    async fn save_upload(&self, meta: FileMeta, data: FileReader) -> StoreResult<()> {
        self.put_file(meta, data).await
    }

    async fn upload(&self, id: &FileId) -> StoreResult<Option<(FileMeta, FileStream)>> {
        self.get_file(id).await
    }

    async fn uploaded_bytes_since(&self, user_id: &str, since: Timestamp) -> StoreResult<u64> {
        self.uploaded_since(user_id, since).await
    }

    async fn file_shared_with(&self, user_id: &str, file_urls: &[String]) -> StoreResult<bool> {
        self.carried_in_chat_of(user_id, file_urls).await
    }
}
