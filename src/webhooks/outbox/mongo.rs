//! The outbox of a cluster on MongoDB: collections `webhook_deliveries` (`_id`
//! `{endpoint}|{id}`), `webhook_unread` (`_id` `{chatId}|{side}`) and `webhook_pledges` (`_id`
//! the event's id) in the store's database,
//! through a client of their own (the store's pool keeps serving the chat path).
//!
//! Plain finds and single-document updates only (no transactions, no aggregation), so every
//! MongoDB-wire server the store runs on runs this too. Every call is bounded by the store's
//! timeout.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection, IndexModel};

use super::{Backlog, Delivery, Outbox, OutboxError, OutboxResult, Pledge, State, UnreadWatch};

const DUPLICATE_KEY: i32 = 11000;

/// The outbox in MongoDB.
pub struct MongoOutbox {
    deliveries: Collection<Document>,
    unread: Collection<Document>,
    pledges: Collection<Document>,
    timeout: Duration,
}

fn err(e: impl std::fmt::Display) -> OutboxError {
    OutboxError(e.to_string())
}

fn is_duplicate(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => e.to_string().contains("E11000"),
    }
}

impl MongoOutbox {
    /// Builds the client without contacting the server; indexes are made on first success.
    pub async fn connect(uri: &str, database: &str, timeout: Duration) -> OutboxResult<Self> {
        let mut options = ClientOptions::parse(uri).await.map_err(err)?;
        options.server_selection_timeout.get_or_insert(timeout);
        options.connect_timeout.get_or_insert(timeout);
        options
            .app_name
            .get_or_insert_with(|| "switchboard-webhooks".to_owned());
        let db = Client::with_options(options)
            .map_err(err)?
            .database(database);
        Ok(Self {
            deliveries: db.collection("webhook_deliveries"),
            unread: db.collection("webhook_unread"),
            pledges: db.collection("webhook_pledges"),
            timeout,
        })
    }

    /// The sender's index (best effort: without it the finds are slower, not wrong).
    pub async fn create_indexes(&self) -> OutboxResult<()> {
        self.bounded(async {
            self.deliveries
                .create_index(
                    IndexModel::builder()
                        .keys(doc! { "endpoint": 1, "state": 1, "pos": 1 })
                        .build(),
                )
                .await
                .map_err(err)?;
            self.pledges
                .create_index(IndexModel::builder().keys(doc! { "pos": 1 }).build())
                .await
                .map_err(err)?;
            self.unread
                .create_index(IndexModel::builder().keys(doc! { "due_ms": 1 }).build())
                .await
                .map_err(err)
                .map(|_| ())
        })
        .await
    }

    async fn bounded<T>(&self, op: impl Future<Output = OutboxResult<T>>) -> OutboxResult<T> {
        tokio::time::timeout(self.timeout, op)
            .await
            .unwrap_or_else(|_| Err(OutboxError("MongoDB did not answer in time".into())))
    }
}

impl MongoOutbox {
    /// Documents of `coll` matching `filter`, in queue order (`pos`), at most `limit`.
    async fn in_order(
        &self,
        coll: &Collection<Document>,
        filter: Document,
        limit: usize,
    ) -> OutboxResult<Vec<Document>> {
        self.bounded(async {
            coll.find(filter)
                .sort(doc! { "pos": 1 })
                .limit(limit as i64)
                .await
                .map_err(err)?
                .try_collect()
                .await
                .map_err(err)
        })
        .await
    }
}

fn to_doc(d: &Delivery) -> Document {
    doc! {
        "_id": format!("{}|{}", d.endpoint, d.id),
        "endpoint": &d.endpoint,
        "id": &d.id,
        "kind": &d.kind,
        "key": &d.key,
        "pos": d.pos,
        "seq": d.seq as i64,
        "at_ms": d.at_ms,
        "data": &d.data,
        "state": d.state as i64,
        "attempts": i64::from(d.attempts),
        "next_ms": d.next_ms,
        "queued_ms": d.queued_ms,
        "last_error": d.last_error.clone().map_or(Bson::Null, Bson::String),
    }
}

fn int(d: &Document, k: &str) -> i64 {
    match d.get(k) {
        Some(Bson::Int64(v)) => *v,
        Some(Bson::Int32(v)) => i64::from(*v),
        Some(Bson::Double(v)) => *v as i64,
        _ => 0,
    }
}

fn text(d: &Document, k: &str) -> String {
    d.get_str(k).unwrap_or_default().to_owned()
}

fn from_doc(d: &Document) -> Delivery {
    Delivery {
        endpoint: text(d, "endpoint"),
        id: text(d, "id"),
        kind: text(d, "kind"),
        key: text(d, "key"),
        pos: int(d, "pos"),
        seq: u64::try_from(int(d, "seq")).unwrap_or(0),
        at_ms: int(d, "at_ms"),
        data: text(d, "data"),
        state: State::from_i64(int(d, "state")),
        attempts: u32::try_from(int(d, "attempts")).unwrap_or(0),
        next_ms: int(d, "next_ms"),
        queued_ms: int(d, "queued_ms"),
        last_error: d.get_str("last_error").ok().map(str::to_owned),
    }
}

fn watch(d: &Document) -> UnreadWatch {
    UnreadWatch {
        chat_id: text(d, "chat_id"),
        side: text(d, "side"),
        due_ms: match d.get("due_ms") {
            None | Some(Bson::Null) => None,
            Some(_) => Some(int(d, "due_ms")),
        },
        fired_upto: u64::try_from(int(d, "fired_upto")).unwrap_or(0),
    }
}

#[async_trait]
impl Outbox for MongoOutbox {
    async fn enqueue(&self, deliveries: &[Delivery]) -> OutboxResult<()> {
        self.bounded(async {
            for d in deliveries {
                match self.deliveries.insert_one(to_doc(d)).await {
                    Ok(_) => {}
                    Err(e) if is_duplicate(&e) => {}
                    Err(e) => return Err(err(e)),
                }
            }
            Ok(())
        })
        .await
    }

    async fn pledge(&self, p: &Pledge) -> OutboxResult<()> {
        let d = doc! {
            "_id": &p.id, "kind": &p.kind, "key": &p.key, "pos": p.pos,
            "seq": p.seq as i64, "at_ms": p.at_ms, "check": &p.check,
        };
        self.bounded(async {
            match self.pledges.insert_one(d).await {
                Ok(_) => Ok(()),
                Err(e) if is_duplicate(&e) => Ok(()),
                Err(e) => Err(err(e)),
            }
        })
        .await
    }

    async fn unpledge(&self, ids: &[String]) -> OutboxResult<()> {
        self.bounded(async {
            self.pledges
                .delete_many(doc! { "_id": { "$in": ids.to_vec() } })
                .await
                .map_err(err)
                .map(|_| ())
        })
        .await
    }

    async fn stale_pledges(&self, before_ms: i64, limit: usize) -> OutboxResult<Vec<Pledge>> {
        let docs = self
            .in_order(
                &self.pledges,
                doc! { "pos": { "$lt": before_ms * 1_000_000 } },
                limit,
            )
            .await?;
        Ok(docs
            .iter()
            .map(|d| Pledge {
                id: text(d, "_id"),
                kind: text(d, "kind"),
                key: text(d, "key"),
                pos: int(d, "pos"),
                seq: u64::try_from(int(d, "seq")).unwrap_or(0),
                at_ms: int(d, "at_ms"),
                check: text(d, "check"),
            })
            .collect())
    }

    async fn pledged_keys(&self, limit: usize) -> OutboxResult<Vec<(String, i64)>> {
        // Oldest first: the first of each key is its oldest.
        let docs = self.in_order(&self.pledges, doc! {}, limit).await?;
        let mut keys: Vec<(String, i64)> = Vec::new();
        for d in &docs {
            let key = text(d, "key");
            if !keys.iter().any(|(k, _)| *k == key) {
                keys.push((key, int(d, "pos")));
            }
        }
        Ok(keys)
    }

    async fn pending(&self, endpoint: &str, limit: usize) -> OutboxResult<Vec<Delivery>> {
        let filter = doc! { "endpoint": endpoint, "state": 0_i64 };
        let docs = self.in_order(&self.deliveries, filter, limit).await?;
        Ok(docs.iter().map(from_doc).collect())
    }

    async fn update(&self, d: &Delivery) -> OutboxResult<()> {
        let done = if d.state == State::Delivered {
            Bson::Int64(crate::domain::now().timestamp_millis())
        } else {
            Bson::Null
        };
        self.bounded(async {
            self.deliveries
                .update_one(
                    doc! { "_id": format!("{}|{}", d.endpoint, d.id) },
                    doc! { "$set": {
                        "state": d.state as i64,
                        "attempts": i64::from(d.attempts),
                        "next_ms": d.next_ms,
                        "queued_ms": d.queued_ms,
                        "last_error": d.last_error.clone().map_or(Bson::Null, Bson::String),
                        "done_ms": done,
                    } },
                )
                .await
                .map_err(err)
                .map(|_| ())
        })
        .await
    }

    async fn failed(&self, endpoint: Option<&str>, limit: usize) -> OutboxResult<Vec<Delivery>> {
        let mut filter = doc! { "state": 2_i64 };
        if let Some(e) = endpoint {
            filter.insert("endpoint", e);
        }
        self.bounded(async {
            let docs: Vec<Document> = self
                .deliveries
                .find(filter)
                .sort(doc! { "pos": -1 })
                .limit(limit as i64)
                .await
                .map_err(err)?
                .try_collect()
                .await
                .map_err(err)?;
            Ok(docs.iter().map(from_doc).collect())
        })
        .await
    }

    async fn resend(
        &self,
        endpoint: Option<&str>,
        ids: Option<&[String]>,
        now_ms: i64,
    ) -> OutboxResult<u64> {
        let mut filter = doc! { "state": 2_i64 };
        if let Some(e) = endpoint {
            filter.insert("endpoint", e);
        }
        if let Some(ids) = ids {
            filter.insert("id", doc! { "$in": ids.to_vec() });
        }
        self.bounded(async {
            let r = self
                .deliveries
                .update_many(
                    filter,
                    doc! { "$set": {
                        "state": 0_i64, "attempts": 0_i64, "next_ms": now_ms,
                        "queued_ms": now_ms, "last_error": Bson::Null,
                    } },
                )
                .await
                .map_err(err)?;
            Ok(r.modified_count)
        })
        .await
    }

    async fn backlog(&self, endpoint: &str) -> OutboxResult<Backlog> {
        self.bounded(async {
            let pending = self
                .deliveries
                .count_documents(doc! { "endpoint": endpoint, "state": 0_i64 })
                .await
                .map_err(err)?;
            let failed = self
                .deliveries
                .count_documents(doc! { "endpoint": endpoint, "state": 2_i64 })
                .await
                .map_err(err)?;
            let oldest = self
                .deliveries
                .find_one(doc! { "endpoint": endpoint, "state": 0_i64 })
                .sort(doc! { "queued_ms": 1 })
                .await
                .map_err(err)?;
            Ok(Backlog {
                pending,
                failed,
                oldest_pending_ms: oldest.map(|d| int(&d, "queued_ms")),
            })
        })
        .await
    }

    async fn prune(&self, before_ms: i64) -> OutboxResult<u64> {
        self.bounded(async {
            let r = self
                .deliveries
                .delete_many(doc! { "state": 1_i64, "done_ms": { "$lt": before_ms } })
                .await
                .map_err(err)?;
            Ok(r.deleted_count)
        })
        .await
    }

    async fn watch_unread(&self, chat_id: &str, side: &str, due_ms: i64) -> OutboxResult<()> {
        let id = format!("{chat_id}|{side}");
        self.bounded(async {
            // Matches an idle watch (or makes one); a watch with a look planned keeps it (the
            // upsert then collides with it on `_id`, which is the answer "already planned").
            let r = self
                .unread
                .update_one(
                    doc! { "_id": &id, "due_ms": Bson::Null },
                    doc! {
                        "$set": { "due_ms": due_ms },
                        "$setOnInsert": { "chat_id": chat_id, "side": side, "fired_upto": 0_i64 },
                    },
                )
                .upsert(true)
                .await;
            match r {
                Ok(_) => Ok(()),
                Err(e) if is_duplicate(&e) => Ok(()),
                Err(e) => Err(err(e)),
            }
        })
        .await
    }

    async fn due_unread(&self, now_ms: i64, limit: usize) -> OutboxResult<Vec<UnreadWatch>> {
        self.bounded(async {
            let docs: Vec<Document> = self
                .unread
                .find(doc! { "due_ms": { "$ne": Bson::Null, "$lte": now_ms } })
                .sort(doc! { "due_ms": 1 })
                .limit(limit as i64)
                .await
                .map_err(err)?
                .try_collect()
                .await
                .map_err(err)?;
            Ok(docs.iter().map(watch).collect())
        })
        .await
    }

    async fn set_unread(&self, w: &UnreadWatch) -> OutboxResult<()> {
        self.bounded(async {
            self.unread
                .update_one(
                    doc! { "_id": format!("{}|{}", w.chat_id, w.side) },
                    doc! { "$set": {
                        "due_ms": w.due_ms.map_or(Bson::Null, Bson::Int64),
                        "fired_upto": w.fired_upto as i64,
                    } },
                )
                .await
                .map_err(err)
                .map(|_| ())
        })
        .await
    }
}
