//! Saving a message on MongoDB: the one-round-trip `seq` and the `clientMessageId` retry (see
//! the module doc of `mongo.rs`); `operations.rs` hands `Store::save_message` on to it.

use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ReturnDocument;

use super::documents::{MessageDoc, bson_time, delivered_field, oid};
use super::indexes::*;
use super::queries::*;
use super::{DUPLICATE_KEY, MongoStore, StoreError, StoreResult, db_err, error_code};
use crate::domain::{Message, MessageId, MessageStatus, NewMessage, Saved, now};

impl MongoStore {
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

    pub(super) async fn insert_message(&self, m: NewMessage) -> StoreResult<Saved<Message>> {
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
            let last =
                doc! { "text": m.body.preview(), "createdAt": ts, "sender": m.sender.id.as_str() };
            // One round trip takes the next seq, updates the chat's list-view fields and, when
            // the save delivers the message, moves the recipients' mark to that seq.
            let delivered = m.delivered.then(|| delivered_field(m.recipient_side()));
            let update = take_seq_update(last, ts, delivered);
            let chat = self
                .0
                .chats
                .clone_with_type::<Document>()
                .find_one_and_update(doc! { "_id": chat_id }, update)
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
                Err(e)
                    if error_code(&e) == Some(DUPLICATE_KEY) && doc.client_message_id.is_some() =>
                {
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
}
