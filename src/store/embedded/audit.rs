//! The audit log in the embedded store ([`AuditStore`]): the `audit_log` table, one row per
//! entry, with an index for each filter of `GET /api/audit` (actor, target, action) and one for
//! the unfiltered list, each ending in `(at DESC, id DESC)`, the list's order.

use async_trait::async_trait;
use rusqlite::params;

use super::{EmbeddedStore, from_ms, internal, ms};
use crate::domain::{
    Actor, ActorRole, AuditAction, AuditEntry, AuditQuery, AuditTarget, TargetKind, Timestamp,
};
use crate::store::{AuditStore, StoreResult};

/// The audit log's table and indexes; created with the rest of the schema when the store opens.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS audit_log (
    id TEXT PRIMARY KEY,
    at INTEGER NOT NULL,
    actor_id TEXT NOT NULL,
    actor_role TEXT NOT NULL,
    action TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit_log (at DESC, id DESC);
CREATE INDEX IF NOT EXISTS audit_by_actor ON audit_log (actor_id, at DESC, id DESC);
CREATE INDEX IF NOT EXISTS audit_by_target ON audit_log (target_id, at DESC, id DESC);
CREATE INDEX IF NOT EXISTS audit_by_action ON audit_log (action, at DESC, id DESC);
"#;

const COLUMNS: &str = "id, at, actor_id, actor_role, action, target_type, target_id, details";

/// A row as it was read, before its names are checked.
type Row = (String, i64, String, String, String, String, String, String);

fn entry_from_row(row: Row) -> StoreResult<AuditEntry> {
    let (id, at, actor_id, actor_role, action, target_type, target_id, details) = row;
    let bad = |what: &str, v: &str| internal(format!("audit entry {id}: {what} {v:?}"));
    Ok(AuditEntry {
        at: from_ms(at),
        actor: Actor {
            id: actor_id,
            role: ActorRole::parse(&actor_role).ok_or_else(|| bad("actor role", &actor_role))?,
        },
        action: AuditAction::parse(&action).map_err(|_| bad("action", &action))?,
        target: AuditTarget {
            kind: TargetKind::parse(&target_type)
                .ok_or_else(|| bad("target type", &target_type))?,
            id: target_id,
        },
        details: serde_json::from_str(&details).map_err(|e| bad("details", &e.to_string()))?,
        id,
    })
}

#[async_trait]
impl AuditStore for EmbeddedStore {
    async fn record_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        let e = entry.clone();
        self.run(move |conn| {
            conn.execute(
                &format!(
                    "INSERT INTO audit_log ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
                params![
                    e.id,
                    ms(e.at),
                    e.actor.id,
                    e.actor.role.as_str(),
                    e.action.as_str(),
                    e.target.kind.as_str(),
                    e.target.id,
                    e.details.to_string(),
                ],
            )
            .map(drop)
        })
        .await
    }

    async fn audit_entries(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        let q = query.clone();
        let rows: Vec<Row> = self
            .run(move |conn| {
                let mut sql = format!("SELECT {COLUMNS} FROM audit_log");
                // The index that serves the query: the first filter given, as MongoDB's hint.
                sql += match (&q.actor, &q.target, &q.action) {
                    (Some(_), _, _) => " INDEXED BY audit_by_actor",
                    (None, Some(_), _) => " INDEXED BY audit_by_target",
                    (None, None, Some(_)) => " INDEXED BY audit_by_action",
                    (None, None, None) => " INDEXED BY audit_by_time",
                };
                sql += " WHERE 1 = 1";
                let mut args: Vec<rusqlite::types::Value> = Vec::new();
                for (column, value) in [
                    ("actor_id", q.actor.clone()),
                    ("target_id", q.target.clone()),
                    ("action", q.action.map(|a| a.as_str().to_owned())),
                ] {
                    if let Some(v) = value {
                        args.push(v.into());
                        sql += &format!(" AND {column} = ?{}", args.len());
                    }
                }
                if let Some((at, id)) = &q.after {
                    args.push(ms(*at).into());
                    args.push(id.clone().into());
                    sql += &format!(
                        " AND (at < ?{a} OR (at = ?{a} AND id < ?{b}))",
                        a = args.len() - 1,
                        b = args.len()
                    );
                }
                args.push((q.limit as i64).into());
                sql += &format!(" ORDER BY at DESC, id DESC LIMIT ?{}", args.len());
                let mut stmt = conn.prepare(&sql)?;
                let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ))
                })?;
                rows.collect()
            })
            .await?;
        rows.into_iter().map(entry_from_row).collect()
    }

    async fn trim_audit(&self, before: Timestamp) -> StoreResult<u64> {
        self.run(move |conn| {
            conn.execute("DELETE FROM audit_log WHERE at < ?1", params![ms(before)])
                .map(|n| n as u64)
        })
        .await
    }
}
