//! The audit log on MongoDB ([`AuditStore`]): the `audit_log` collection, one document per
//! entry (`_id` the entry's ObjectId-shaped id), with an index for each filter of
//! `GET /api/audit` (actor, target, action) and one for the unfiltered list, each ending in
//! `{ at: -1, _id: -1 }`, the list's order; every query names its index.

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::IndexModel;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::IndexOptions;

use super::documents::{bson_time, domain_time, oid};
use super::queries::hint;
use super::{MongoStore, StoreResult, db_err};
use crate::domain::{
    Actor, ActorRole, AuditAction, AuditEntry, AuditQuery, AuditTarget, TargetKind, Timestamp,
};
use crate::store::{AuditStore, StoreError};

/// The collection's name.
const AUDIT_LOG: &str = "audit_log";

// Index names: each query names the index that serves it.
const IX_AUDIT_TIME: &str = "audit_time";
const IX_AUDIT_ACTOR: &str = "audit_actor_time";
const IX_AUDIT_TARGET: &str = "audit_target_time";
const IX_AUDIT_ACTION: &str = "audit_action_time";

/// The filter of a page of the audit log and the index that serves it (the first filter given).
pub(super) fn audit_query(q: &AuditQuery) -> StoreResult<(Document, &'static str)> {
    let mut filter = Document::new();
    if let Some(actor) = &q.actor {
        filter.insert("actor.id", actor.as_str());
    }
    if let Some(target) = &q.target {
        filter.insert("target.id", target.as_str());
    }
    if let Some(action) = q.action {
        filter.insert("action", action.as_str());
    }
    if let Some((at, id)) = &q.after {
        let (at, id) = (bson_time(*at), oid(id)?);
        filter.insert(
            "$or",
            vec![
                doc! { "at": { "$lt": at } },
                doc! { "at": at, "_id": { "$lt": id } },
            ],
        );
    }
    let index = match (&q.actor, &q.target, &q.action) {
        (Some(_), _, _) => IX_AUDIT_ACTOR,
        (None, Some(_), _) => IX_AUDIT_TARGET,
        (None, None, Some(_)) => IX_AUDIT_ACTION,
        (None, None, None) => IX_AUDIT_TIME,
    };
    Ok((filter, index))
}

fn entry_doc(e: &AuditEntry) -> StoreResult<Document> {
    let details = mongodb::bson::to_bson(&e.details)
        .map_err(|err| StoreError::Internal(format!("audit details: {err}")))?;
    Ok(doc! {
        "_id": oid(&e.id)?,
        "at": bson_time(e.at),
        "actor": { "id": e.actor.id.as_str(), "role": e.actor.role.as_str() },
        "action": e.action.as_str(),
        "target": { "type": e.target.kind.as_str(), "id": e.target.id.as_str() },
        "details": details,
    })
}

fn entry_from_doc(d: Document) -> StoreResult<AuditEntry> {
    let bad = |what: &str| StoreError::Internal(format!("audit entry: bad {what}: {d:?}"));
    let sub = |field: &str| d.get_document(field).map_err(|_| bad(field));
    let (actor, target) = (sub("actor")?, sub("target")?);
    let text = |doc: &Document, field: &str| {
        doc.get_str(field)
            .map(str::to_owned)
            .map_err(|_| bad(field))
    };
    Ok(AuditEntry {
        id: d.get_object_id("_id").map_err(|_| bad("_id"))?.to_hex(),
        at: domain_time(*d.get_datetime("at").map_err(|_| bad("at"))?),
        actor: Actor {
            id: text(actor, "id")?,
            role: ActorRole::parse(&text(actor, "role")?).ok_or_else(|| bad("actor role"))?,
        },
        action: AuditAction::parse(&text(&d, "action")?).map_err(|_| bad("action"))?,
        target: AuditTarget {
            kind: TargetKind::parse(&text(target, "type")?).ok_or_else(|| bad("target type"))?,
            id: text(target, "id")?,
        },
        details: d
            .get("details")
            .cloned()
            .unwrap_or(Bson::Null)
            .into_relaxed_extjson(),
    })
}

impl MongoStore {
    fn audit_log(&self) -> mongodb::Collection<Document> {
        self.0.db.collection(AUDIT_LOG)
    }

    /// Creates the audit log's indexes (with the store's others, `indexes.rs`).
    pub(super) async fn ensure_audit_indexes(&self) -> StoreResult<()> {
        let named = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_owned()).build())
                .build()
        };
        self.audit_log()
            .create_indexes([
                named(doc! { "at": -1, "_id": -1 }, IX_AUDIT_TIME),
                named(doc! { "actor.id": 1, "at": -1, "_id": -1 }, IX_AUDIT_ACTOR),
                named(
                    doc! { "target.id": 1, "at": -1, "_id": -1 },
                    IX_AUDIT_TARGET,
                ),
                named(doc! { "action": 1, "at": -1, "_id": -1 }, IX_AUDIT_ACTION),
            ])
            .await
            .map(drop)
            .map_err(db_err)
    }
}

#[async_trait]
impl AuditStore for MongoStore {
    async fn record_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        let d = entry_doc(entry)?;
        self.bounded(async {
            self.audit_log()
                .insert_one(d)
                .await
                .map(drop)
                .map_err(db_err)
        })
        .await
    }

    async fn audit_entries(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        let (filter, index) = audit_query(query)?;
        let docs: Vec<Document> = self
            .bounded(async {
                // The hint names an index: it must exist first.
                self.ensure_indexes().await?;
                self.audit_log()
                    .find(filter)
                    .sort(doc! { "at": -1, "_id": -1 })
                    .limit(query.limit as i64)
                    .hint(hint(index))
                    .await
                    .map_err(db_err)?
                    .try_collect()
                    .await
                    .map_err(db_err)
            })
            .await?;
        docs.into_iter().map(entry_from_doc).collect()
    }

    async fn trim_audit(&self, before: Timestamp) -> StoreResult<u64> {
        self.bounded(async {
            self.ensure_indexes().await?;
            self.audit_log()
                .delete_many(doc! { "at": { "$lt": bson_time(before) } })
                .hint(hint(IX_AUDIT_TIME))
                .await
                .map(|r| r.deleted_count)
                .map_err(db_err)
        })
        .await
    }
}
