//! Building a [`MongoStore`]: its settings and [`MongoStore::connect`], which starts the
//! background index task (`indexes.rs`). Apart from `mongo.rs` so that the store's core, which
//! every file of the module uses, uses none of them back.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use mongodb::Client;
use mongodb::options::{ClientOptions, GridFsBucketOptions};

use super::indexes::create_indexes_when_reachable;
use super::{Inner, MongoStore, StoreError, StoreResult};

/// How to reach MongoDB and how the store behaves there.
#[derive(Clone)]
pub struct MongoSettings {
    /// The connection string (`MONGODB_URI`).
    pub uri: String,
    /// The database holding every collection (`MONGODB_DATABASE`).
    pub database: String,
    /// Upper bound for one store operation, and for finding a reachable server.
    pub timeout: Duration,
    /// Messages older than this are deleted by a TTL index; `None` keeps them forever.
    pub message_retention: Option<Duration>,
}

/// Shows everything but the connection string, which may carry a password.
impl std::fmt::Debug for MongoSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoSettings")
            .field("uri", &"[redacted]")
            .field("database", &self.database)
            .field("timeout", &self.timeout)
            .field("message_retention", &self.message_retention)
            .finish()
    }
}

impl MongoStore {
    /// Builds the store without contacting the server: a node starts while MongoDB is down,
    /// reports not-ready, and becomes ready when MongoDB answers. Fails only on a malformed
    /// connection string. Spawns the background index task, so call it inside a tokio runtime.
    pub async fn connect(settings: MongoSettings) -> StoreResult<Self> {
        let mut options = ClientOptions::parse(&settings.uri)
            .await
            .map_err(|e| StoreError::Internal(format!("MONGODB_URI: {e}")))?;
        // Bounded by our timeout unless the connection string says otherwise.
        options
            .server_selection_timeout
            .get_or_insert(settings.timeout);
        options.connect_timeout.get_or_insert(settings.timeout);
        options
            .app_name
            .get_or_insert_with(|| "switchboard".to_owned());
        let client = Client::with_options(options)
            .map_err(|e| StoreError::Internal(format!("MongoDB client: {e}")))?;
        let db = client.database(&settings.database);
        let uploads = db.gridfs_bucket(
            GridFsBucketOptions::builder()
                .bucket_name("uploads".to_owned())
                .build(),
        );
        let store = Self(Arc::new(Inner {
            chats: db.collection("chats"),
            messages: db.collection("messages"),
            reports: db.collection("report_messages"),
            uploads,
            db,
            timeout: settings.timeout,
            message_retention: settings.message_retention,
            indexes_ready: AtomicBool::new(false),
            index_lock: tokio::sync::Mutex::new(()),
        }));
        tokio::spawn(create_indexes_when_reachable(Arc::downgrade(&store.0)));
        Ok(store)
    }
}
