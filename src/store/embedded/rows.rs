//! Rows of the embedded store's tables and the domain types they hold: column lists, row
//! mappers and the small lookups several operations share.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::from_ms;
use crate::domain::{
    CHAT_TYPE_SUPPORT, Chat, ChatId, ChatStatus, DeliveryMarks, LastMessage, Message, MessageId,
    MessageStatus, MessageType, Priority, Report, ReportId, ReportStatus, Role, Side,
};

/// The column holding `side`'s delivered-up-to mark.
pub(super) fn delivered_column(side: Side) -> &'static str {
    match side {
        Side::User => "delivered_user",
        Side::Staff => "delivered_staff",
    }
}

pub(super) const CHAT_COLUMNS: &str = "c.id, c.title, c.status, c.priority, c.assigned_admin, c.last_text, \
     c.last_at, c.last_sender, c.created_at, c.updated_at, \
     (SELECT group_concat(user_id, char(31)) FROM \
        (SELECT user_id FROM chat_participants p WHERE p.chat_id = c.id ORDER BY position)), \
     c.delivered_user, c.delivered_staff, c.queued_at, c.assigned_at";

/// How many columns [`CHAT_COLUMNS`] has: a query's own columns follow them.
pub(super) const CHAT_COLUMN_COUNT: usize = 15;

pub(super) fn chat_from_row(row: &Row<'_>) -> rusqlite::Result<Chat> {
    let last_text: Option<String> = row.get(5)?;
    let last_message = match last_text {
        Some(text) => Some(LastMessage {
            text,
            created_at: from_ms(row.get(6)?),
            sender: row.get::<_, Option<String>>(7)?.unwrap_or_default(),
        }),
        None => None,
    };
    let participants: Option<String> = row.get(10)?;
    Ok(Chat {
        id: ChatId::from_trusted(row.get(0)?),
        participants: participants
            .map(|p| p.split('\u{1f}').map(str::to_owned).collect())
            .unwrap_or_default(),
        chat_type: CHAT_TYPE_SUPPORT,
        title: row.get(1)?,
        status: ChatStatus::parse(&row.get::<_, String>(2)?).unwrap_or(ChatStatus::Open),
        priority: Priority::parse(&row.get::<_, String>(3)?).unwrap_or(Priority::Medium),
        assigned_admin: row.get(4)?,
        last_message,
        created_at: from_ms(row.get(8)?),
        updated_at: from_ms(row.get(9)?),
        delivered: DeliveryMarks {
            user: row.get::<_, i64>(11)?.max(0) as u64,
            staff: row.get::<_, i64>(12)?.max(0) as u64,
        },
        queued_at: row.get::<_, Option<i64>>(13)?.map(from_ms),
        assigned_at: row.get::<_, Option<i64>>(14)?.map(from_ms),
    })
}

pub(super) fn load_chat(conn: &Connection, id: &str) -> rusqlite::Result<Option<Chat>> {
    conn.query_row(
        &format!("SELECT {CHAT_COLUMNS} FROM chats c WHERE c.id = ?1"),
        params![id],
        chat_from_row,
    )
    .optional()
}

pub(super) fn add_participant(conn: &Connection, chat: &str, user: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO chat_participants (chat_id, user_id, position) \
         VALUES (?1, ?2, (SELECT COUNT(*) FROM chat_participants WHERE chat_id = ?1))",
        params![chat, user],
    )?;
    Ok(())
}

pub(super) const MESSAGE_COLUMNS: &str = "id, chat_id, seq, sender_id, sender_name, sender_role, content, \
     kind, file_url, file_name, ts, status, client_message_id";

pub(super) fn message_from_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: MessageId::from_trusted(row.get(0)?),
        chat_id: ChatId::from_trusted(row.get(1)?),
        seq: row.get::<_, i64>(2)? as u64,
        sender_id: row.get(3)?,
        sender_name: row.get(4)?,
        sender_role: Role::parse(&row.get::<_, String>(5)?).unwrap_or(Role::User),
        content: row.get(6)?,
        kind: MessageType::parse(&row.get::<_, String>(7)?).unwrap_or(MessageType::Text),
        file_url: row.get(8)?,
        file_name: row.get(9)?,
        timestamp: from_ms(row.get(10)?),
        status: if row.get::<_, String>(11)? == "read" {
            MessageStatus::Read
        } else {
            MessageStatus::Sent
        },
        client_message_id: row.get(12)?,
    })
}

pub(super) fn find_by_client_id(
    conn: &Connection,
    sender: &str,
    client_id: &str,
) -> rusqlite::Result<Option<Message>> {
    conn.query_row(
        &format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE sender_id = ?1 AND client_message_id = ?2"
        ),
        params![sender, client_id],
        message_from_row,
    )
    .optional()
}

pub(super) const REPORT_COLUMNS: &str = "id, user_id, order_id, payment_id, invoice_id, title, message, \
     status, sent_by, sent_by_name, is_read, read_at, created_at";

pub(super) fn report_from_row(row: &Row<'_>) -> rusqlite::Result<Report> {
    Ok(Report {
        id: ReportId::from_trusted(row.get(0)?),
        user_id: row.get(1)?,
        order_id: row.get(2)?,
        payment_id: row.get(3)?,
        invoice_id: row.get(4)?,
        title: row.get(5)?,
        message: row.get(6)?,
        status: ReportStatus::parse(&row.get::<_, String>(7)?).unwrap_or(ReportStatus::Info),
        sent_by: row.get(8)?,
        sent_by_name: row.get(9)?,
        is_read: row.get::<_, i64>(10)? != 0,
        read_at: row.get::<_, Option<i64>>(11)?.map(from_ms),
        created_at: from_ms(row.get(12)?),
    })
}

pub(super) fn load_report(conn: &Connection, id: &str) -> rusqlite::Result<Option<Report>> {
    conn.query_row(
        &format!("SELECT {REPORT_COLUMNS} FROM reports WHERE id = ?1"),
        params![id],
        report_from_row,
    )
    .optional()
}
