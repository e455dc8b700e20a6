//! The support desk's operations in the embedded store ([`DeskStore`]): the `removals` table,
//! one row per removed user, changed by single upserts (SQLite serializes writers, and the
//! `MAX`es keep a later revocation or removal from being undone by an earlier one); and the
//! `users` directory, one row per identity a token named, a batch of them upserted in one
//! transaction.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{EmbeddedStore, from_ms, ms};
use crate::domain::{AuthUser, KnownUser, Removal, RemovalChange, Role, Timestamp};
use crate::store::{DeskStore, StoreResult};

/// The desk's tables; created with the rest of the schema when the store opens.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS removals (
    user_id TEXT PRIMARY KEY,
    blocked_until INTEGER,
    revoked_before INTEGER,
    removed_at INTEGER NOT NULL,
    by_superadmin INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
);
"#;

const COLUMNS: &str = "user_id, blocked_until, revoked_before, removed_at, by_superadmin";

fn removal_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Removal> {
    Ok(Removal {
        user_id: r.get(0)?,
        blocked_until: r.get::<_, Option<i64>>(1)?.map(from_ms),
        revoked_before: r.get::<_, Option<i64>>(2)?.map(from_ms),
        removed_at: from_ms(r.get(3)?),
        by_superadmin: r.get::<_, i64>(4)? != 0,
    })
}

fn apply(
    conn: &Connection,
    user_id: &str,
    change: &RemovalChange,
) -> rusqlite::Result<Option<Removal>> {
    match change {
        RemovalChange::Disconnect {
            at,
            blocked_until,
            by_superadmin,
        } => conn
            .query_row(
                &format!(
                    "INSERT INTO removals ({COLUMNS}) VALUES (?1, ?2, NULL, ?3, ?4) \
                     ON CONFLICT (user_id) DO UPDATE SET \
                       blocked_until = COALESCE(excluded.blocked_until, blocked_until), \
                       removed_at = MAX(removed_at, excluded.removed_at), \
                       by_superadmin = MAX(by_superadmin, excluded.by_superadmin) \
                     RETURNING {COLUMNS}"
                ),
                params![user_id, blocked_until.map(ms), ms(*at), i64::from(*by_superadmin)],
                removal_from_row,
            )
            .map(Some),
        RemovalChange::Unblock => conn
            .query_row(
                &format!(
                    "UPDATE removals SET blocked_until = NULL WHERE user_id = ?1 RETURNING {COLUMNS}"
                ),
                params![user_id],
                removal_from_row,
            )
            .optional(),
        RemovalChange::Revoke {
            at,
            before,
            by_superadmin,
        } => conn
            .query_row(
                &format!(
                    "INSERT INTO removals ({COLUMNS}) VALUES (?1, NULL, ?2, ?3, ?4) \
                     ON CONFLICT (user_id) DO UPDATE SET \
                       revoked_before = MAX(COALESCE(revoked_before, 0), excluded.revoked_before), \
                       removed_at = MAX(removed_at, excluded.removed_at), \
                       by_superadmin = MAX(by_superadmin, excluded.by_superadmin) \
                     RETURNING {COLUMNS}"
                ),
                params![user_id, ms(*before), ms(*at), i64::from(*by_superadmin)],
                removal_from_row,
            )
            .map(Some),
    }
}

#[async_trait]
impl DeskStore for EmbeddedStore {
    async fn removal(&self, user_id: &str) -> StoreResult<Option<Removal>> {
        let user_id = user_id.to_owned();
        self.run(move |conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM removals WHERE user_id = ?1"),
                params![user_id],
                removal_from_row,
            )
            .optional()
        })
        .await
    }

    async fn change_removal(
        &self,
        user_id: &str,
        change: RemovalChange,
    ) -> StoreResult<Option<Removal>> {
        let user_id = user_id.to_owned();
        self.run(move |conn| apply(conn, &user_id, &change)).await
    }

    async fn see_users(&self, users: &[AuthUser], at: Timestamp) -> StoreResult<()> {
        let users: Vec<(String, &'static str, String)> = users
            .iter()
            .map(|u| (u.id.clone(), u.role.as_str(), u.name.clone()))
            .collect();
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                // The latest sighting's role wins (a node behind another may write later).
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO users (id, role, name, first_seen, last_seen) \
                     VALUES (?1, ?2, ?3, ?4, ?4) \
                     ON CONFLICT (id) DO UPDATE SET \
                       role = CASE WHEN excluded.last_seen >= last_seen THEN excluded.role ELSE role END, \
                       name = CASE WHEN excluded.last_seen >= last_seen THEN excluded.name ELSE name END, \
                       last_seen = MAX(last_seen, excluded.last_seen)",
                )?;
                for (id, role, name) in &users {
                    upsert.execute(params![id, role, name, ms(at)])?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn known_user(&self, user_id: &str) -> StoreResult<Option<KnownUser>> {
        let user_id = user_id.to_owned();
        self.run(move |conn| {
            conn.query_row(
                "SELECT id, role, name, first_seen, last_seen FROM users WHERE id = ?1",
                params![user_id],
                |r| {
                    Ok(KnownUser {
                        id: r.get(0)?,
                        role: Role::parse(&r.get::<_, String>(1)?).unwrap_or(Role::User),
                        name: r.get(2)?,
                        first_seen: from_ms(r.get(3)?),
                        last_seen: from_ms(r.get(4)?),
                    })
                },
            )
            .optional()
        })
        .await
    }
}
