//! The query shapes of the MongoDB store: filters, sorts and the index each one names. Shared
//! by the operations and by `explain` (`query_plans`), so the test explains exactly what runs.

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::{Hint, UpdateModifications};

use super::StoreResult;
use super::documents::{bson_time, oid};
use super::indexes::{IX_CHATS_PARTICIPANT, IX_CHATS_UPDATED, IX_REPORTS_CREATED, IX_REPORTS_USER};
use crate::domain::{ChatQuery, HistoryPage, ReportQuery};

pub(super) fn history_query(chat: ObjectId, page: HistoryPage) -> (Document, Document) {
    match page {
        HistoryPage::Latest => (doc! { "chatId": chat }, doc! { "seq": -1 }),
        HistoryPage::Before(s) => (
            doc! { "chatId": chat, "seq": { "$lt": s as i64 } },
            doc! { "seq": -1 },
        ),
        HistoryPage::After(s) => (
            doc! { "chatId": chat, "seq": { "$gt": s as i64 } },
            doc! { "seq": 1 },
        ),
    }
}

pub(super) fn chat_list_query(q: &ChatQuery) -> StoreResult<(Document, &'static str)> {
    let mut filter = Document::new();
    if let Some(p) = &q.participant {
        filter.insert("participants", p.as_str());
    }
    if let Some(s) = q.status {
        filter.insert("status", s.as_str());
    }
    if let Some(after) = &q.after {
        let t = bson_time(after.updated_at);
        let id = oid(after.id.as_str())?;
        let cmp = if q.ascending { "$gt" } else { "$lt" };
        filter.insert(
            "$or",
            vec![
                doc! { "updatedAt": { cmp: t } },
                doc! { "updatedAt": t, "_id": { cmp: id } },
            ],
        );
    }
    let index = if q.participant.is_some() {
        IX_CHATS_PARTICIPANT
    } else {
        IX_CHATS_UPDATED
    };
    Ok((filter, index))
}

pub(super) fn chat_list_sort(ascending: bool) -> Document {
    let order = if ascending { 1 } else { -1 };
    doc! { "updatedAt": order, "_id": order }
}

pub(super) fn unread_pipeline(chats: Vec<ObjectId>, reader: &str) -> Vec<Document> {
    vec![
        doc! { "$match": { "chatId": { "$in": chats }, "status": "sent", "senderId": { "$ne": reader } } },
        doc! { "$group": { "_id": "$chatId", "n": { "$sum": 1 } } },
    ]
}

/// A save's update of its chat, the one round trip that takes the next `seq`: the list-view
/// fields, and, with `delivered_field`, that mark moved to the new `seq` (a message whose
/// recipient is on the saving node). The second form is an update pipeline, whose second stage
/// sees the new `seq`; `$literal` keeps a preview that starts with `$` from reading as a field
/// path.
pub(super) fn take_seq_update(
    last: Document,
    at: DateTime,
    delivered_field: Option<&str>,
) -> UpdateModifications {
    match delivered_field {
        None => doc! { "$inc": { "seq": 1_i64 }, "$set": { "lastMessage": last, "updatedAt": at } }
            .into(),
        Some(field) => vec![
            doc! { "$set": {
                "seq": { "$add": [ { "$ifNull": [ "$seq", 0_i64 ] }, 1_i64 ] },
                "lastMessage": { "$literal": last },
                "updatedAt": at,
            } },
            doc! { "$set": { field: { "$max": [ { "$ifNull": [ format!("${field}"), 0_i64 ] }, "$seq" ] } } },
        ]
        .into(),
    }
}

pub(super) fn partners_filter(user: &str) -> Document {
    doc! { "participants": user, "status": "open" }
}

pub(super) fn client_id_filter(sender: &str, client_id: &str) -> Document {
    doc! { "senderId": sender, "clientMessageId": client_id }
}

pub(super) fn mark_read_filter(chat: ObjectId, up_to_seq: u64, reader: &str) -> Document {
    doc! { "chatId": chat, "status": "sent", "seq": { "$lte": up_to_seq as i64 }, "senderId": { "$ne": reader } }
}

pub(super) fn report_list_query(q: &ReportQuery) -> StoreResult<(Document, &'static str)> {
    let mut filter = Document::new();
    if let Some(u) = &q.user_id {
        filter.insert("userId", u.as_str());
    }
    if q.unread_only {
        filter.insert("isRead", false);
    }
    if let Some(after) = &q.after {
        let t = bson_time(after.created_at);
        let id = oid(after.id.as_str())?;
        filter.insert(
            "$or",
            vec![
                doc! { "createdAt": { "$lt": t } },
                doc! { "createdAt": t, "_id": { "$lt": id } },
            ],
        );
    }
    let index = if q.user_id.is_some() {
        IX_REPORTS_USER
    } else {
        IX_REPORTS_CREATED
    };
    Ok((filter, index))
}

pub(super) fn report_list_sort() -> Document {
    doc! { "createdAt": -1, "_id": -1 }
}

pub(super) fn unread_reports_filter(user: &str) -> Document {
    doc! { "userId": user, "isRead": false }
}

pub(super) fn hint(index: &str) -> Hint {
    Hint::Name(index.to_owned())
}
