//! The support desk's operations on MongoDB ([`DeskStore`]): the `user_removals` collection,
//! one document per removed user keyed by the user id (`_id`), changed by single
//! `findOneAndUpdate`s whose `$max`es keep a later revocation or removal from being undone by
//! an earlier one that two staff sent at once from two nodes; and the `users` directory, one
//! document per identity a token named (`_id` its id), a batch of sightings sent as concurrent
//! upserts.

use async_trait::async_trait;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ReturnDocument;

use super::documents::{bson_time, domain_time};
use super::indexes::IX_ID;
use super::queries::hint;
use super::{MongoStore, StoreResult, db_err};
use crate::domain::{AuthUser, KnownUser, Removal, RemovalChange, Role, Timestamp};
use crate::store::{DeskStore, StoreError};

/// The collections' names.
const REMOVALS: &str = "user_removals";
const USERS: &str = "users";

fn removal_from_doc(d: &Document) -> StoreResult<Removal> {
    let time = |field: &str| match d.get(field) {
        Some(Bson::DateTime(t)) => Ok(Some(domain_time(*t))),
        None | Some(Bson::Null) => Ok(None),
        other => Err(StoreError::Internal(format!(
            "removal {field} is {other:?}"
        ))),
    };
    Ok(Removal {
        user_id: d
            .get_str("_id")
            .map_err(|e| StoreError::Internal(e.to_string()))?
            .to_owned(),
        blocked_until: time("blockedUntil")?,
        revoked_before: time("revokedBefore")?,
        removed_at: time("removedAt")?.unwrap_or_default(),
        by_superadmin: d.get_bool("bySuperadmin").unwrap_or(false),
    })
}

impl MongoStore {
    fn removals(&self) -> mongodb::Collection<Document> {
        self.0.db.collection(REMOVALS)
    }

    fn users(&self) -> mongodb::Collection<Document> {
        self.0.db.collection(USERS)
    }
}

#[async_trait]
impl DeskStore for MongoStore {
    async fn removal(&self, user_id: &str) -> StoreResult<Option<Removal>> {
        self.bounded(async {
            self.removals()
                .find_one(doc! { "_id": user_id })
                .hint(hint(IX_ID))
                .await
                .map_err(db_err)?
                .as_ref()
                .map(removal_from_doc)
                .transpose()
        })
        .await
    }

    async fn change_removal(
        &self,
        user_id: &str,
        change: RemovalChange,
    ) -> StoreResult<Option<Removal>> {
        let (update, upsert) = match change {
            RemovalChange::Disconnect {
                at,
                blocked_until,
                by_superadmin,
            } => {
                let mut update = doc! { "$max": {
                    "removedAt": bson_time(at),
                    "bySuperadmin": by_superadmin,
                } };
                if let Some(until) = blocked_until {
                    update.insert("$set", doc! { "blockedUntil": bson_time(until) });
                }
                (update, true)
            }
            RemovalChange::Unblock => (doc! { "$unset": { "blockedUntil": "" } }, false),
            RemovalChange::Revoke {
                at,
                before,
                by_superadmin,
            } => (
                doc! { "$max": {
                    "removedAt": bson_time(at),
                    "revokedBefore": bson_time(before),
                    "bySuperadmin": by_superadmin,
                } },
                true,
            ),
        };
        self.bounded(async {
            self.removals()
                .find_one_and_update(doc! { "_id": user_id }, update)
                .upsert(upsert)
                .return_document(ReturnDocument::After)
                .await
                .map_err(db_err)?
                .as_ref()
                .map(removal_from_doc)
                .transpose()
        })
        .await
    }

    async fn see_users(&self, users: &[AuthUser], at: Timestamp) -> StoreResult<()> {
        let at = bson_time(at);
        let users_ = self.users();
        let upserts = users.iter().map(|u| {
            let users_ = users_.clone();
            // `$max` moves `lastSeen` forward only; the role and name are the latest token's
            // (two nodes seeing one identity within a moment write the same ones).
            let update = doc! {
                "$set": { "role": u.role.as_str(), "name": u.name.as_str() },
                "$min": { "firstSeen": at },
                "$max": { "lastSeen": at },
            };
            async move {
                users_
                    .update_one(doc! { "_id": u.id.as_str() }, update)
                    .upsert(true)
                    .await
                    .map_err(db_err)
            }
        });
        self.bounded(async {
            for result in futures_util::future::join_all(upserts).await {
                result?;
            }
            Ok(())
        })
        .await
    }

    async fn known_user(&self, user_id: &str) -> StoreResult<Option<KnownUser>> {
        let found = self
            .bounded(async {
                self.users()
                    .find_one(doc! { "_id": user_id })
                    .hint(hint(IX_ID))
                    .await
                    .map_err(db_err)
            })
            .await?;
        let Some(d) = found else { return Ok(None) };
        let bad = |field: &str| StoreError::Internal(format!("user {user_id}: bad {field}"));
        let time = |field: &str| match d.get(field) {
            Some(Bson::DateTime(t)) => Ok(domain_time(*t)),
            _ => Err(bad(field)),
        };
        Ok(Some(KnownUser {
            id: user_id.to_owned(),
            role: d
                .get_str("role")
                .ok()
                .and_then(Role::parse)
                .ok_or_else(|| bad("role"))?,
            name: d.get_str("name").map_err(|_| bad("name"))?.to_owned(),
            first_seen: time("firstSeen")?,
            last_seen: time("lastSeen")?,
        }))
    }
}
