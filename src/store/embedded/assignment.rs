//! Auto-assignment's operations in the embedded store ([`AssignmentStore`]): the `queued_at` and
//! `assigned_at` columns of `chats`, and conditional writes in one `IMMEDIATE` transaction each
//! (SQLite serializes writers, across the nodes of a test cluster sharing the file too).

use async_trait::async_trait;
use rusqlite::{Connection, params};

use super::rows::{CHAT_COLUMNS, add_participant, chat_from_row, load_chat};
use super::{EmbeddedStore, from_ms, ms};
use crate::domain::{Chat, ChatId, Timestamp};
use crate::store::{AgentLoad, Assign, AssignmentStore, StoreResult};

/// Adds the columns and indexes to a database made before auto-assignment (idempotent).
pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has: bool = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('chats') WHERE name = 'queued_at'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has {
        conn.execute_batch(
            "ALTER TABLE chats ADD COLUMN queued_at INTEGER; \
             ALTER TABLE chats ADD COLUMN assigned_at INTEGER;",
        )?;
    }
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS chat_changes (change TEXT PRIMARY KEY, chat_id TEXT NOT NULL, \
           at_ms INTEGER NOT NULL); \
         CREATE INDEX IF NOT EXISTS chat_changes_at ON chat_changes (at_ms); \
         CREATE INDEX IF NOT EXISTS chats_queue ON chats (queued_at, id) \
           WHERE queued_at IS NOT NULL; \
         CREATE INDEX IF NOT EXISTS chats_by_admin ON chats (assigned_admin, status, assigned_at);",
    )
}

/// How long a change's id is kept (its pledge is settled long before).
const KEEP_CHANGES_MS: i64 = 24 * 3600 * 1000;

/// Records `change` (a webhook pledge's id) for chat `id` in the caller's transaction, so that
/// it is there exactly when the change is; forgets those older than [`KEEP_CHANGES_MS`].
pub(super) fn record_change(
    tx: &Connection,
    id: &str,
    change: Option<&str>,
) -> rusqlite::Result<()> {
    let Some(change) = change else {
        return Ok(());
    };
    let now = ms(crate::domain::now());
    tx.execute(
        "DELETE FROM chat_changes WHERE at_ms < ?1",
        params![now - KEEP_CHANGES_MS],
    )?;
    tx.execute(
        "INSERT OR IGNORE INTO chat_changes (change, chat_id, at_ms) VALUES (?1, ?2, ?3)",
        params![change, id, now],
    )?;
    Ok(())
}

fn chats(
    conn: &Connection,
    sql_where: &str,
    args: impl rusqlite::Params,
) -> rusqlite::Result<Vec<Chat>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {CHAT_COLUMNS} FROM chats c WHERE {sql_where}"
    ))?;
    let rows = stmt.query_map(args, chat_from_row)?;
    rows.collect()
}

#[async_trait]
impl AssignmentStore for EmbeddedStore {
    async fn queued_chats(&self, limit: usize) -> StoreResult<Vec<Chat>> {
        self.run(move |conn| {
            chats(
                conn,
                "c.queued_at IS NOT NULL AND c.status = 'open' \
                 ORDER BY c.queued_at, c.id LIMIT ?1",
                params![limit as i64],
            )
        })
        .await
    }

    async fn agent_loads(&self, agents: &[String]) -> StoreResult<Vec<AgentLoad>> {
        let agents = agents.to_vec();
        self.run(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT COALESCE(SUM(status = 'open'), 0), MAX(assigned_at) FROM chats \
                 WHERE assigned_admin = ?1",
            )?;
            agents
                .into_iter()
                .map(|agent| {
                    let (open, last): (i64, Option<i64>) =
                        stmt.query_row(params![agent], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    Ok(AgentLoad {
                        agent,
                        open: open.max(0) as u64,
                        last_assigned: last.map(from_ms),
                    })
                })
                .collect()
        })
        .await
    }

    async fn assignees(&self) -> StoreResult<Vec<String>> {
        self.run(|conn| {
            let mut stmt = conn.prepare(
                "SELECT DISTINCT assigned_admin FROM chats \
                 WHERE assigned_admin IS NOT NULL AND status = 'open'",
            )?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    async fn open_chats_of(&self, agent: &str) -> StoreResult<Vec<Chat>> {
        let agent = agent.to_owned();
        self.run(move |conn| {
            chats(
                conn,
                "c.assigned_admin = ?1 AND c.status = 'open' ORDER BY c.created_at, c.id",
                params![agent],
            )
        })
        .await
    }

    async fn assign_queued(&self, a: Assign<'_>) -> StoreResult<Option<Chat>> {
        let (id, agent) = (a.chat.as_str().to_owned(), a.agent.to_owned());
        let (at, capacity, change) = (ms(a.at), a.capacity as i64, a.change.map(str::to_owned));
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // The agent's load is counted in the write itself: whatever any other pass or
            // `PATCH` did since the pass read the loads, this never goes over the capacity.
            let changed = tx.execute(
                "UPDATE chats SET assigned_admin = ?2, assigned_at = ?3, queued_at = NULL, \
                   updated_at = ?3 \
                 WHERE id = ?1 AND status = 'open' AND queued_at IS NOT NULL \
                   AND assigned_admin IS NULL \
                   AND (SELECT COUNT(*) FROM chats WHERE assigned_admin = ?2 AND status = 'open') < ?4",
                params![id, agent, at, capacity],
            )?;
            if changed == 0 {
                return Ok(None);
            }
            add_participant(&tx, &id, &agent)?;
            record_change(&tx, &id, change.as_deref())?;
            let chat = load_chat(&tx, &id)?;
            tx.commit()?;
            Ok(chat)
        })
        .await
    }

    async fn requeue(
        &self,
        chat: &ChatId,
        agent: &str,
        queued_at: Timestamp,
        change: Option<&str>,
        _fence: u64,
    ) -> StoreResult<Option<Chat>> {
        let (id, agent) = (chat.as_str().to_owned(), agent.to_owned());
        let change = change.map(str::to_owned);
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let changed = tx.execute(
                "UPDATE chats SET assigned_admin = NULL, assigned_at = NULL, queued_at = ?3, \
                   updated_at = ?4 \
                 WHERE id = ?1 AND status = 'open' AND assigned_admin = ?2",
                params![id, agent, ms(queued_at), ms(crate::domain::now())],
            )?;
            if changed == 0 {
                return Ok(None);
            }
            // The chat's own user (its first participant) always stays.
            tx.execute(
                "DELETE FROM chat_participants WHERE chat_id = ?1 AND user_id = ?2 \
                   AND position > 0",
                params![id, agent],
            )?;
            record_change(&tx, &id, change.as_deref())?;
            let chat = load_chat(&tx, &id)?;
            tx.commit()?;
            Ok(chat)
        })
        .await
    }

    async fn fence_queue(&self, _fence: u64) -> StoreResult<()> {
        // The assignment write counts the agent's load itself: a late write of an earlier
        // pass is refused at the capacity without a fence.
        Ok(())
    }

    async fn chat_has_change(&self, id: &ChatId, change: &str) -> StoreResult<bool> {
        let (id, change) = (id.as_str().to_owned(), change.to_owned());
        self.run(move |conn| {
            conn.query_row(
                "SELECT COUNT(*) FROM chat_changes WHERE change = ?1 AND chat_id = ?2",
                params![change, id],
                |r| r.get::<_, i64>(0).map(|n| n > 0),
            )
        })
        .await
    }
}
