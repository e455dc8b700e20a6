//! Auto-assignment's operations on MongoDB ([`AssignmentStore`]): `queuedAt` and `assignedAt`
//! on the chat documents, the queue read through `chats_queue`, loads through
//! `chats_assigned`, and the two moves as single conditional `findOneAndUpdate`s (the filter
//! names the state the move starts from, so a chat changed since it was read is left alone).
//!
//! MongoDB cannot count an agent's open chats inside the assignment write (no transactions
//! here), so the capacity under a pass that outlived its lease is kept by a fence instead: each
//! write carries its pass's token (`fence`, kept on the chat) and is refused on a chat a later
//! pass fenced; a pass that took the gate over from one that did not end fences the whole
//! queue first (`fence_queue`), so the earlier pass's late write either landed before (and the
//! new pass counts it) or is refused.

use async_trait::async_trait;
use futures_util::stream::TryStreamExt;
use mongodb::bson::{Bson, doc};
use mongodb::options::ReturnDocument;

use super::documents::{ChatDoc, bson_time, domain_time, oid};
use super::indexes::{IX_CHATS_ASSIGNED, IX_CHATS_QUEUE};
use super::queries::hint;
use super::{MongoStore, StoreResult, db_err};
use crate::domain::{Chat, ChatId, Timestamp, now};
use crate::store::{AgentLoad, Assign, AssignmentStore};

/// How many change ids a chat document keeps (a pledge is settled within seconds, long before
/// this many later changes of one chat could push its id out).
const KEEP_CHANGES: i32 = 32;

/// The `$push` that records `change` (a webhook pledge's id) in the same document write as the
/// change itself (`Store::chat_has_change`).
pub(super) fn push_change(change: &str) -> mongodb::bson::Document {
    doc! { "changes": { "$each": [change], "$slice": -KEEP_CHANGES } }
}

impl MongoStore {
    async fn find_chats(
        &self,
        filter: mongodb::bson::Document,
        sort: mongodb::bson::Document,
        index: &str,
        limit: Option<i64>,
    ) -> StoreResult<Vec<Chat>> {
        self.bounded(async {
            self.ensure_indexes().await?;
            let mut find = self.0.chats.find(filter).sort(sort).hint(hint(index));
            if let Some(limit) = limit {
                find = find.limit(limit);
            }
            let docs: Vec<ChatDoc> = find
                .await
                .map_err(db_err)?
                .try_collect()
                .await
                .map_err(db_err)?;
            Ok(docs.into_iter().map(Chat::from).collect())
        })
        .await
    }
}

#[async_trait]
impl AssignmentStore for MongoStore {
    async fn queued_chats(&self, limit: usize) -> StoreResult<Vec<Chat>> {
        self.find_chats(
            doc! { "status": "open", "queuedAt": { "$exists": true } },
            doc! { "status": 1, "queuedAt": 1, "_id": 1 },
            IX_CHATS_QUEUE,
            Some(limit as i64),
        )
        .await
    }

    async fn agent_loads(&self, agents: &[String]) -> StoreResult<Vec<AgentLoad>> {
        self.bounded(async {
            self.ensure_indexes().await?;
            let mut loads = Vec::with_capacity(agents.len());
            // Three small indexed reads per available agent: a pass reads them once for all
            // the chats it assigns.
            for agent in agents {
                let open = self
                    .0
                    .chats
                    .count_documents(doc! { "assignedAdmin": agent, "status": "open" })
                    .hint(hint(IX_CHATS_ASSIGNED))
                    .await
                    .map_err(db_err)?;
                // The index orders each status's chats newest assignment first: the latest
                // of the two firsts.
                let mut last_assigned = None;
                for status in ["open", "closed"] {
                    let latest = self
                        .0
                        .chats
                        .find_one(doc! { "assignedAdmin": agent, "status": status })
                        .sort(doc! { "assignedAdmin": 1, "status": 1, "assignedAt": -1 })
                        .hint(hint(IX_CHATS_ASSIGNED))
                        .await
                        .map_err(db_err)?
                        .and_then(|c| c.assigned_at);
                    last_assigned = last_assigned.max(latest);
                }
                loads.push(AgentLoad {
                    agent: agent.clone(),
                    open,
                    last_assigned: last_assigned.map(domain_time),
                });
            }
            Ok(loads)
        })
        .await
    }

    async fn assignees(&self) -> StoreResult<Vec<String>> {
        self.bounded(async {
            self.ensure_indexes().await?;
            let values = self
                .0
                .chats
                .distinct(
                    "assignedAdmin",
                    doc! { "status": "open", "assignedAdmin": { "$type": "string" } },
                )
                .await
                .map_err(db_err)?;
            Ok(values
                .into_iter()
                .filter_map(|v| match v {
                    Bson::String(s) => Some(s),
                    _ => None,
                })
                .collect())
        })
        .await
    }

    async fn open_chats_of(&self, agent: &str) -> StoreResult<Vec<Chat>> {
        self.find_chats(
            doc! { "assignedAdmin": agent, "status": "open" },
            doc! { "assignedAdmin": 1, "status": 1, "assignedAt": -1 },
            IX_CHATS_ASSIGNED,
            None,
        )
        .await
    }

    async fn assign_queued(&self, a: Assign<'_>) -> StoreResult<Option<Chat>> {
        let (agent, id, t) = (a.agent, oid(a.chat.as_str())?, bson_time(a.at));
        let fence = i64::try_from(a.fence).unwrap_or(i64::MAX);
        let mut update = doc! {
            "$set": { "assignedAdmin": agent, "assignedAt": t, "updatedAt": t, "fence": fence },
            "$unset": { "queuedAt": "" },
            "$addToSet": { "participants": agent },
        };
        if let Some(change) = a.change {
            update.insert("$push", push_change(change));
        }
        self.bounded(async {
            let updated = self
                .0
                .chats
                .find_one_and_update(
                    doc! {
                        "_id": id,
                        "status": "open",
                        "queuedAt": { "$exists": true },
                        "assignedAdmin": Bson::Null,
                        // Not fenced by a later pass (see `fence_queue`).
                        "$or": [
                            { "fence": { "$exists": false } },
                            { "fence": { "$lte": fence } },
                        ],
                    },
                    update,
                )
                .return_document(ReturnDocument::After)
                .await
                .map_err(db_err)?;
            Ok(updated.map(Chat::from))
        })
        .await
    }

    async fn requeue(
        &self,
        chat: &ChatId,
        agent: &str,
        queued_at: Timestamp,
        change: Option<&str>,
        fence: u64,
    ) -> StoreResult<Option<Chat>> {
        let id = oid(chat.as_str())?;
        let fence = i64::try_from(fence).unwrap_or(i64::MAX);
        self.bounded(async {
            // The participants are rewritten from the chat as read, and written only if the
            // chat is still as read (open, assigned to `agent`, same participants).
            let Some(before) = self.find_chat(id).await? else {
                return Ok(None);
            };
            let participants: Vec<&str> = before
                .participants
                .iter()
                .enumerate()
                .filter(|(i, p)| *i == 0 || p.as_str() != agent)
                .map(|(_, p)| p.as_str())
                .collect();
            let updated = self
                .0
                .chats
                .find_one_and_update(
                    doc! {
                        "_id": id,
                        "status": "open",
                        "assignedAdmin": agent,
                        "participants": &before.participants,
                    },
                    {
                        let mut update = doc! {
                            "$set": {
                                "queuedAt": bson_time(queued_at),
                                "participants": participants,
                                "updatedAt": bson_time(now()),
                                "fence": fence,
                            },
                            "$unset": { "assignedAdmin": "", "assignedAt": "" },
                        };
                        if let Some(change) = change {
                            update.insert("$push", push_change(change));
                        }
                        update
                    },
                )
                .return_document(ReturnDocument::After)
                .await
                .map_err(db_err)?;
            Ok(updated.map(Chat::from))
        })
        .await
    }

    async fn fence_queue(&self, fence: u64) -> StoreResult<()> {
        let fence = i64::try_from(fence).unwrap_or(i64::MAX);
        self.bounded(async {
            self.0
                .chats
                .update_many(
                    doc! {
                        "status": "open",
                        "queuedAt": { "$exists": true },
                        "$or": [
                            { "fence": { "$exists": false } },
                            { "fence": { "$lt": fence } },
                        ],
                    },
                    doc! { "$set": { "fence": fence } },
                )
                .await
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn chat_has_change(&self, id: &ChatId, change: &str) -> StoreResult<bool> {
        let id = oid(id.as_str())?;
        self.bounded(async {
            let n = self
                .0
                .chats
                .count_documents(doc! { "_id": id, "changes": change })
                .await
                .map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }
}
