//! Every [`Store`] operation of the embedded store, in SQL, each on the one connection in the
//! blocking pool (`EmbeddedStore::run`); uploads (files in the data directory, their rows
//! here) are in `uploads.rs`, each operation handed on in one line.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::rows::{
    CHAT_COLUMN_COUNT, CHAT_COLUMNS, MESSAGE_COLUMNS, REPORT_COLUMNS, add_participant,
    chat_from_row, delivered_column, find_by_client_id, load_chat, load_report, message_from_row,
    report_from_row,
};
use super::{EmbeddedStore, ms};
use crate::domain::{
    Chat, ChatId, ChatPatch, ChatQuery, ChatStatus, ChatSummary, FileId, FileMeta, HistoryPage,
    Message, MessageId, MessageStatus, NewChat, NewMessage, NewReport, Priority, Report, ReportId,
    ReportQuery, Saved, Side, Timestamp, now,
};
use crate::store::{FileReader, FileStream, Store, StoreError, StoreResult};

/// A save's update of its chat: the next `seq` and the list-view fields; the `DELIVERED` forms
/// also move the recipients' mark to that `seq` (a save whose recipient is on the saving node).
const TAKE_SEQ: &str = "UPDATE chats SET seq = seq + 1, last_text = ?2, last_at = ?3, \
     last_sender = ?4, updated_at = ?3 WHERE id = ?1 RETURNING seq";
const TAKE_SEQ_DELIVERED_TO_USER: &str = "UPDATE chats SET seq = seq + 1, last_text = ?2, \
     last_at = ?3, last_sender = ?4, updated_at = ?3, delivered_user = MAX(delivered_user, seq + 1) \
     WHERE id = ?1 RETURNING seq";
const TAKE_SEQ_DELIVERED_TO_STAFF: &str = "UPDATE chats SET seq = seq + 1, last_text = ?2, \
     last_at = ?3, last_sender = ?4, updated_at = ?3, delivered_staff = MAX(delivered_staff, seq + 1) \
     WHERE id = ?1 RETURNING seq";

#[async_trait]
impl Store for EmbeddedStore {
    async fn ping(&self) -> StoreResult<()> {
        self.run(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }

    async fn create_chat(&self, chat: NewChat) -> StoreResult<Chat> {
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let id = chat.id.clone();
            let t = ms(now());
            tx.execute(
                "INSERT INTO chats (id, title, status, priority, assigned_admin, created_at, updated_at, \
                 queued_at, assigned_at) VALUES (?1, ?2, 'open', ?3, ?4, ?5, ?5, ?6, ?7)",
                params![
                    id.as_str(),
                    chat.title,
                    chat.priority.as_str(),
                    chat.assigned_admin,
                    t,
                    chat.queued.then_some(t),
                    chat.assigned_admin.is_some().then_some(t)
                ],
            )?;
            for p in &chat.participants {
                add_participant(&tx, id.as_str(), p)?;
            }
            let created = load_chat(&tx, id.as_str())?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            tx.commit()?;
            Ok(created)
        })
        .await
    }

    async fn chat(&self, id: &ChatId) -> StoreResult<Option<Chat>> {
        let id = id.as_str().to_owned();
        self.run(move |conn| load_chat(conn, &id)).await
    }

    async fn list_chats(&self, query: &ChatQuery) -> StoreResult<Vec<ChatSummary>> {
        let q = query.clone();
        self.run(move |conn| {
            let mut sql = format!(
                "SELECT {CHAT_COLUMNS}, \
                   (SELECT COUNT(*) FROM messages m WHERE m.chat_id = c.id AND m.status = 'sent' \
                      AND m.sender_id <> ?1) \
                 FROM chats c WHERE 1 = 1"
            );
            let mut args: Vec<rusqlite::types::Value> = vec![q.reader.clone().into()];
            if let Some(p) = &q.participant {
                args.push(p.clone().into());
                sql += &format!(
                    " AND c.id IN (SELECT chat_id FROM chat_participants WHERE user_id = ?{})",
                    args.len()
                );
            }
            if let Some(s) = q.status {
                args.push(s.as_str().to_owned().into());
                sql += &format!(" AND c.status = ?{}", args.len());
            }
            let (cmp, order) = if q.ascending {
                ('>', "ASC")
            } else {
                ('<', "DESC")
            };
            if let Some(after) = &q.after {
                args.push(ms(after.updated_at).into());
                args.push(after.id.as_str().to_owned().into());
                sql += &format!(
                    " AND (c.updated_at {cmp} ?{a} OR (c.updated_at = ?{a} AND c.id {cmp} ?{b}))",
                    a = args.len() - 1,
                    b = args.len()
                );
            }
            args.push((q.limit as i64).into());
            sql += &format!(
                " ORDER BY c.updated_at {order}, c.id {order} LIMIT ?{}",
                args.len()
            );
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), |row| {
                Ok(ChatSummary {
                    chat: chat_from_row(row)?,
                    unread_count: row.get::<_, i64>(CHAT_COLUMN_COUNT)? as u64,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn update_chat(&self, id: &ChatId, patch: ChatPatch) -> StoreResult<Chat> {
        let id = id.as_str().to_owned();
        let updated = self
            .run(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let Some(before) = load_chat(&tx, &id)? else {
                    return Ok(None);
                };
                // The assigned admin is the chat's one staff participant: another replaces them
                // (the chat's own user, its first participant, always stays).
                if let Some(prev) = crate::domain::replaced_admin(&before, patch.assigned_admin.as_deref()) {
                    tx.execute(
                        "DELETE FROM chat_participants WHERE chat_id = ?1 AND user_id = ?2",
                        params![id, prev],
                    )?;
                }
                // An assignment (a new admin) takes the chat out of the queue and restarts
                // `assignedAt`; closing it takes it out of the queue too.
                let t = ms(now());
                let reassigned = patch.assigned_admin.is_some()
                    && patch.assigned_admin != before.assigned_admin;
                let leaves_queue = patch.assigned_admin.is_some() || patch.status == Some(ChatStatus::Closed);
                // A reopened chat with nobody assigned goes back to the queue (`patch.queue`).
                tx.execute(
                    "UPDATE chats SET status = COALESCE(?2, status), priority = COALESCE(?3, priority), \
                     assigned_admin = COALESCE(?4, assigned_admin), updated_at = ?5, \
                     assigned_at = CASE WHEN ?6 THEN ?5 ELSE assigned_at END, \
                     queued_at = CASE WHEN ?7 THEN NULL \
                       WHEN ?8 AND COALESCE(?2, status) = 'open' AND COALESCE(?4, assigned_admin) IS NULL \
                         THEN COALESCE(queued_at, ?5) \
                       ELSE queued_at END WHERE id = ?1",
                    params![
                        id,
                        patch.status.map(ChatStatus::as_str),
                        patch.priority.map(Priority::as_str),
                        patch.assigned_admin,
                        t,
                        reassigned,
                        leaves_queue,
                        patch.queue
                    ],
                )?;
                if let Some(admin) = &patch.assigned_admin {
                    add_participant(&tx, &id, admin)?;
                }
                super::assignment::record_change(&tx, &id, patch.change.as_deref())?;
                let chat = load_chat(&tx, &id)?;
                tx.commit()?;
                Ok(chat)
            })
            .await?;
        updated.ok_or(StoreError::NotFound("chat"))
    }

    async fn chat_partners_of(
        &self,
        user_ids: &[String],
    ) -> StoreResult<Vec<(String, Vec<String>)>> {
        let users = user_ids.to_vec();
        self.run(move |conn| {
            let mut partners: std::collections::HashMap<String, Vec<String>> =
                users.iter().map(|u| (u.clone(), Vec::new())).collect();
            // SQLite binds at most 32,766 parameters; a few hundred at a time is plenty.
            for chunk in users.chunks(500) {
                let marks = vec!["?"; chunk.len()].join(",");
                let mut stmt = conn.prepare(&format!(
                    "SELECT DISTINCT me.user_id, o.user_id FROM chat_participants me \
                     JOIN chats c ON c.id = me.chat_id AND c.status = 'open' \
                     JOIN chat_participants o ON o.chat_id = me.chat_id AND o.user_id <> me.user_id \
                     WHERE me.user_id IN ({marks})"
                ))?;
                let rows = stmt.query_map(rusqlite::params_from_iter(chunk.iter()), |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?;
                for row in rows {
                    let (me, other) = row?;
                    partners.entry(me).or_default().push(other);
                }
            }
            Ok(users
                .iter()
                .map(|u| (u.clone(), partners.remove(u).unwrap_or_default()))
                .collect())
        })
        .await
    }

    async fn chat_partners(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let user = user_id.to_owned();
        self.run(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT DISTINCT o.user_id FROM chat_participants me \
                 JOIN chats c ON c.id = me.chat_id AND c.status = 'open' \
                 JOIN chat_participants o ON o.chat_id = me.chat_id AND o.user_id <> me.user_id \
                 WHERE me.user_id = ?1",
            )?;
            let rows = stmt.query_map(params![user], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    async fn save_message(&self, m: NewMessage) -> StoreResult<Saved<Message>> {
        let saved = self
            .run(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                if let Some(cid) = &m.client_message_id
                    && let Some(first) = find_by_client_id(&tx, &m.sender.id, cid)?
                {
                    return Ok(Some(Saved::Existing(first)));
                }
                let ts = now();
                let preview = m.body.preview();
                // Delivered by the save: the recipients' mark moves to the new seq in the same
                // statement (`seq` on the right-hand side is the value before the update).
                let take_seq = match (m.delivered, m.recipient_side()) {
                    (false, _) => TAKE_SEQ,
                    (true, Side::User) => TAKE_SEQ_DELIVERED_TO_USER,
                    (true, Side::Staff) => TAKE_SEQ_DELIVERED_TO_STAFF,
                };
                let seq: Option<i64> = tx
                    .query_row(
                        take_seq,
                        params![m.chat_id.as_str(), preview, ms(ts), m.sender.id],
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(seq) = seq else { return Ok(None) };
                let message = Message {
                    id: m.id,
                    chat_id: m.chat_id,
                    seq: seq as u64,
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
                tx.execute(
                    &format!("INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'sent', ?12)"),
                    params![
                        message.id.as_str(),
                        message.chat_id.as_str(),
                        seq,
                        message.sender_id,
                        message.sender_name,
                        message.sender_role.as_str(),
                        message.content,
                        message.kind.as_str(),
                        message.file_url,
                        message.file_name,
                        ms(ts),
                        message.client_message_id,
                    ],
                )?;
                tx.commit()?;
                Ok(Some(Saved::Created(message)))
            })
            .await?;
        saved.ok_or(StoreError::NotFound("chat"))
    }

    async fn message(&self, chat: &ChatId, id: &MessageId) -> StoreResult<Option<Message>> {
        let (chat, id) = (chat.as_str().to_owned(), id.as_str().to_owned());
        self.run(move |conn| {
            conn.query_row(
                &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1 AND chat_id = ?2"),
                params![id, chat],
                message_from_row,
            )
            .optional()
        })
        .await
    }

    async fn messages(
        &self,
        chat: &ChatId,
        page: HistoryPage,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        let chat = chat.as_str().to_owned();
        self.run(move |conn| {
            let (cond, order, bound) = match page {
                HistoryPage::Latest => ("seq < ?2", "DESC", i64::MAX),
                HistoryPage::Before(s) => ("seq < ?2", "DESC", s as i64),
                HistoryPage::After(s) => ("seq > ?2", "ASC", s as i64),
            };
            let mut stmt = conn.prepare(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE chat_id = ?1 AND {cond} \
                 ORDER BY seq {order} LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![chat, bound, limit as i64], message_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn mark_read(&self, chat: &ChatId, up_to_seq: u64, reader: &str) -> StoreResult<u64> {
        let (chat, reader) = (chat.as_str().to_owned(), reader.to_owned());
        self.run(move |conn| {
            let n = conn.execute(
                "UPDATE messages SET status = 'read' WHERE chat_id = ?1 AND status = 'sent' \
                 AND seq <= ?2 AND sender_id <> ?3",
                params![chat, up_to_seq as i64, reader],
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn advance_delivered(
        &self,
        chat: &ChatId,
        side: Side,
        up_to_seq: u64,
    ) -> StoreResult<bool> {
        let chat = chat.as_str().to_owned();
        let column = delivered_column(side);
        let moved = self
            .run(move |conn| {
                // The condition makes the write forward-only; SQLite applies it atomically.
                let n = conn.execute(
                    &format!("UPDATE chats SET {column} = ?2 WHERE id = ?1 AND {column} < ?2"),
                    params![chat, up_to_seq as i64],
                )?;
                if n > 0 {
                    return Ok(Some(true));
                }
                let exists = conn
                    .query_row("SELECT 1 FROM chats WHERE id = ?1", params![chat], |_| {
                        Ok(())
                    })
                    .optional()?;
                Ok(exists.map(|_| false))
            })
            .await?;
        moved.ok_or(StoreError::NotFound("chat"))
    }

    async fn create_report(&self, r: NewReport) -> StoreResult<Report> {
        self.run(move |conn| {
            let report = Report {
                id: r.id,
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
                created_at: now(),
            };
            conn.execute(
                &format!("INSERT INTO reports ({REPORT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, NULL, ?11)"),
                params![
                    report.id.as_str(),
                    report.user_id,
                    report.order_id,
                    report.payment_id,
                    report.invoice_id,
                    report.title,
                    report.message,
                    report.status.as_str(),
                    report.sent_by,
                    report.sent_by_name,
                    ms(report.created_at),
                ],
            )?;
            Ok(report)
        })
        .await
    }

    async fn report(&self, id: &ReportId) -> StoreResult<Option<Report>> {
        let id = id.as_str().to_owned();
        self.run(move |conn| load_report(conn, &id)).await
    }

    async fn list_reports(&self, query: &ReportQuery) -> StoreResult<Vec<Report>> {
        let q = query.clone();
        self.run(move |conn| {
            let mut sql = format!("SELECT {REPORT_COLUMNS} FROM reports WHERE 1 = 1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(u) = &q.user_id {
                args.push(u.clone().into());
                sql += &format!(" AND user_id = ?{}", args.len());
            }
            if q.unread_only {
                sql += " AND is_read = 0";
            }
            if let Some(after) = &q.after {
                args.push(ms(after.created_at).into());
                args.push(after.id.as_str().to_owned().into());
                sql += &format!(
                    " AND (created_at < ?{a} OR (created_at = ?{a} AND id < ?{b}))",
                    a = args.len() - 1,
                    b = args.len()
                );
            }
            args.push((q.limit as i64).into());
            sql += &format!(" ORDER BY created_at DESC, id DESC LIMIT ?{}", args.len());
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), report_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn mark_report_read(&self, id: &ReportId, at: Timestamp) -> StoreResult<Report> {
        let id = id.as_str().to_owned();
        let report = self
            .run(move |conn| {
                conn.execute(
                    "UPDATE reports SET is_read = 1, read_at = ?2 WHERE id = ?1 AND is_read = 0",
                    params![id, ms(at)],
                )?;
                load_report(conn, &id)
            })
            .await?;
        report.ok_or(StoreError::NotFound("report"))
    }

    async fn unread_report_count(&self, user_id: &str) -> StoreResult<u64> {
        let user = user_id.to_owned();
        self.run(move |conn| {
            conn.query_row(
                "SELECT COUNT(*) FROM reports WHERE user_id = ?1 AND is_read = 0",
                params![user],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
        })
        .await
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
