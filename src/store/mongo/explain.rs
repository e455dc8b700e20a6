//! `explain` for every query shape of the MongoDB store: which index serves each one.

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, Document, doc};

use super::documents::bson_time;
use super::indexes::*;
use super::queries::*;
use super::*;
use crate::domain::{
    ChatCursor, ChatId, ChatQuery, ChatStatus, HistoryPage, ReportCursor, ReportId, ReportQuery,
    now,
};

/// How the server plans one of the store's queries.
#[derive(Debug, Clone)]
pub struct QueryPlan {
    /// Which store operation issues the query.
    pub query: &'static str,
    /// The index the store names for it.
    pub expected_index: &'static str,
    /// Indexes the winning plan scans.
    pub used_indexes: Vec<String>,
    /// Whether the winning plan scans the whole collection anywhere.
    pub collection_scan: bool,
}

impl QueryPlan {
    /// Served by the index the store names, and by no collection scan.
    pub fn uses_expected_index(&self) -> bool {
        !self.collection_scan && self.used_indexes.iter().any(|i| i == self.expected_index)
    }
}

fn collect_plan(v: &Bson, in_winning: bool, indexes: &mut Vec<String>, collscan: &mut bool) {
    match v {
        Bson::Document(d) => {
            for (k, v) in d {
                if k == "rejectedPlans" {
                    continue;
                }
                let winning = in_winning || k == "winningPlan";
                if winning
                    && k == "indexName"
                    && let Bson::String(s) = v
                {
                    indexes.push(s.clone());
                }
                if winning && k == "stage" && v.as_str() == Some("COLLSCAN") {
                    *collscan = true;
                }
                collect_plan(v, winning, indexes, collscan);
            }
        }
        Bson::Array(a) => a
            .iter()
            .for_each(|v| collect_plan(v, in_winning, indexes, collscan)),
        _ => {}
    }
}

impl MongoStore {
    /// Runs `explain` on every query shape the store issues, with the same filter, sort and
    /// hint, and reports which index serves each. Updates are explained as the equivalent `find`
    /// (same filter and hint), because some MongoDB-wire servers ignore hints when explaining
    /// updates; the update itself carries the hint.
    pub async fn query_plans(&self) -> StoreResult<Vec<QueryPlan>> {
        self.ensure_indexes_bounded().await?;
        let (chat, msg, report, file) = (
            ObjectId::new(),
            ObjectId::new(),
            ObjectId::new(),
            ObjectId::new(),
        );
        let at = bson_time(now());
        // The save's update as it runs, as the command's `update` field.
        let take_seq = |delivered: Option<&str>| match take_seq_update(
            doc! { "text": "t", "createdAt": at, "sender": "u1" },
            at,
            delivered,
        ) {
            mongodb::options::UpdateModifications::Document(d) => Bson::Document(d),
            mongodb::options::UpdateModifications::Pipeline(p) => {
                Bson::Array(p.into_iter().map(Bson::Document).collect())
            }
            _ => Bson::Null,
        };
        // `hint` as the operation passes it; queries on `_id` alone pass none.
        let find = |coll: &str, filter: Document, sort: Option<Document>, hint: Option<&str>| {
            let mut cmd = doc! { "find": coll, "filter": filter, "limit": 50_i64 };
            if let Some(s) = sort {
                cmd.insert("sort", s);
            }
            if let Some(h) = hint {
                cmd.insert("hint", h);
            }
            cmd
        };
        let staff_list = ChatQuery {
            participant: None,
            status: Some(ChatStatus::Open),
            limit: 50,
            after: None,
            ascending: false,
            reader: "a1".into(),
        };
        let user_list = ChatQuery {
            participant: Some("u1".into()),
            status: None,
            limit: 50,
            after: Some(ChatCursor {
                updated_at: now(),
                id: ChatId::from_trusted(chat.to_hex()),
            }),
            ascending: false,
            reader: "u1".into(),
        };
        let (staff_filter, staff_ix) = chat_list_query(&staff_list)?;
        let (user_filter, user_ix) = chat_list_query(&user_list)?;
        let user_reports = ReportQuery {
            user_id: Some("u1".into()),
            unread_only: true,
            limit: 50,
            after: Some(ReportCursor {
                created_at: now(),
                id: ReportId::from_trusted(report.to_hex()),
            }),
        };
        let all_reports = ReportQuery {
            user_id: None,
            unread_only: false,
            limit: 50,
            after: None,
        };
        let (ur_filter, ur_ix) = report_list_query(&user_reports)?;
        let (ar_filter, ar_ix) = report_list_query(&all_reports)?;
        let shapes: Vec<(&'static str, &'static str, Document)> = vec![
            (
                "chat",
                IX_ID,
                find("chats", doc! { "_id": chat }, None, None),
            ),
            (
                "list_chats (participant)",
                user_ix,
                find(
                    "chats",
                    user_filter,
                    Some(chat_list_sort(false)),
                    Some(user_ix),
                ),
            ),
            (
                "list_chats (staff)",
                staff_ix,
                find(
                    "chats",
                    staff_filter,
                    Some(chat_list_sort(false)),
                    Some(staff_ix),
                ),
            ),
            (
                "list_chats (unread counts)",
                IX_MESSAGES_UNREAD,
                doc! { "aggregate": "messages", "pipeline": unread_pipeline(vec![chat], "u1"), "cursor": {}, "hint": IX_MESSAGES_UNREAD },
            ),
            (
                "update_chat",
                IX_ID,
                doc! { "findAndModify": "chats", "query": { "_id": chat }, "update": { "$set": { "updatedAt": at } }, "new": true },
            ),
            (
                "chat_partners",
                IX_CHATS_PARTICIPANT,
                find(
                    "chats",
                    partners_filter("u1"),
                    None,
                    Some(IX_CHATS_PARTICIPANT),
                ),
            ),
            (
                "save_message (retry lookup)",
                IX_MESSAGES_CLIENT_ID,
                find(
                    "messages",
                    client_id_filter("u1", "c1"),
                    None,
                    Some(IX_MESSAGES_CLIENT_ID),
                ),
            ),
            (
                "save_message (seq)",
                IX_ID,
                doc! { "findAndModify": "chats", "query": { "_id": chat }, "update": take_seq(None), "new": true },
            ),
            (
                "save_message (seq, delivered by the save)",
                IX_ID,
                doc! { "findAndModify": "chats", "query": { "_id": chat }, "update": take_seq(Some("deliveredToStaff")), "new": true },
            ),
            (
                "advance_delivered",
                IX_ID,
                find("chats", doc! { "_id": chat }, None, None),
            ),
            (
                "message",
                IX_ID,
                find(
                    "messages",
                    doc! { "_id": msg, "chatId": chat },
                    None,
                    Some(IX_ID),
                ),
            ),
            ("messages (latest)", IX_MESSAGES_CHAT_SEQ, {
                let (f, s) = history_query(chat, HistoryPage::Latest);
                find("messages", f, Some(s), Some(IX_MESSAGES_CHAT_SEQ))
            }),
            ("messages (before)", IX_MESSAGES_CHAT_SEQ, {
                let (f, s) = history_query(chat, HistoryPage::Before(10));
                find("messages", f, Some(s), Some(IX_MESSAGES_CHAT_SEQ))
            }),
            ("messages (after)", IX_MESSAGES_CHAT_SEQ, {
                let (f, s) = history_query(chat, HistoryPage::After(10));
                find("messages", f, Some(s), Some(IX_MESSAGES_CHAT_SEQ))
            }),
            (
                "mark_read",
                IX_MESSAGES_UNREAD,
                find(
                    "messages",
                    mark_read_filter(chat, 10, "u1"),
                    None,
                    Some(IX_MESSAGES_UNREAD),
                ),
            ),
            (
                "report",
                IX_ID,
                find("report_messages", doc! { "_id": report }, None, None),
            ),
            (
                "list_reports (user)",
                ur_ix,
                find(
                    "report_messages",
                    ur_filter,
                    Some(report_list_sort()),
                    Some(ur_ix),
                ),
            ),
            (
                "list_reports (staff)",
                ar_ix,
                find(
                    "report_messages",
                    ar_filter,
                    Some(report_list_sort()),
                    Some(ar_ix),
                ),
            ),
            (
                "mark_report_read",
                IX_ID,
                find(
                    "report_messages",
                    doc! { "_id": report, "isRead": false },
                    None,
                    Some(IX_ID),
                ),
            ),
            (
                "unread_report_count",
                IX_REPORTS_USER,
                doc! { "count": "report_messages", "query": unread_reports_filter("u1"), "hint": IX_REPORTS_USER },
            ),
            (
                "upload",
                IX_ID,
                find("uploads.files", doc! { "_id": file }, None, None),
            ),
            (
                "uploaded_bytes_since",
                IX_UPLOADS_USER,
                find(
                    "uploads.files",
                    super::gridfs::uploads_by_user_filter("u1", now()),
                    None,
                    Some(IX_UPLOADS_USER),
                ),
            ),
        ];
        let mut plans = Vec::with_capacity(shapes.len());
        for (query, expected_index, command) in shapes {
            let explained = self
                .bounded(async {
                    self.0
                        .db
                        .run_command(doc! { "explain": command, "verbosity": "queryPlanner" })
                        .await
                        .map_err(db_err)
                })
                .await?;
            let (mut used_indexes, mut collection_scan) = (Vec::new(), false);
            collect_plan(
                &Bson::Document(explained),
                false,
                &mut used_indexes,
                &mut collection_scan,
            );
            plans.push(QueryPlan {
                query,
                expected_index,
                used_indexes,
                collection_scan,
            });
        }
        Ok(plans)
    }

    async fn ensure_indexes_bounded(&self) -> StoreResult<()> {
        self.bounded(self.ensure_indexes()).await
    }
}
