//! The adapter's pub/sub driver: fred's sharded pub/sub, as in socketioxide-redis's own fred
//! driver, except that a message lost between Redis and the adapter is never silent.
//!
//! Every other node's emissions reach this node through one subscriber connection: fred reads
//! them into a broadcast channel, a task here hands each to its channel's stream, and the
//! adapter delivers them to this node's sockets. Both buffers are bounded, and a node that falls
//! behind (a storm of handshakes on two cores) overflows them: fred's broadcast channel
//! overwrites the oldest messages (`Lagged`), a full stream refuses the newest. The published
//! driver logs that and goes on, and the sockets that missed an event keep receiving later ones,
//! their client's offset moves past the hole, and no recovery gets it back.
//!
//! Here a loss is a [`Gaps`] event: before anything after the hole is handed on, the hook
//! closes the transport of every socket of this node (socketioxide queues the Engine.IO close
//! behind what it already sent, and the socket leaves its rooms at once). Each client
//! reconnects with the offset of the last event it really got, and its session resumes from the
//! recovery log, which holds every event before it was broadcast: what the hole swallowed is
//! replayed, once, in order.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, OnceLock, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use fred::{
    clients::SubscriberClient,
    interfaces::PubsubInterface,
    prelude::{ClientLike, EventInterface},
    types::Message,
};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::{broadcast, mpsc};

/// What a node does when its subscriber lost messages (see the module documentation).
#[derive(Default)]
pub struct Gaps {
    hook: OnceLock<Box<dyn Fn() + Send + Sync>>,
    count: AtomicU64,
}

impl Gaps {
    /// Sets what a gap does (once: later calls are ignored). Until it is set, a gap is only
    /// counted and logged (no socket can have missed anything before the node serves).
    pub fn on_gap(&self, hook: impl Fn() + Send + Sync + 'static) {
        let _ = self.hook.set(Box::new(hook));
    }

    /// Gaps so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn open(&self, lost: u64, why: &str) {
        self.count.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            lost,
            why,
            "the Redis subscriber lost messages: closing this node's transports so that their \
             clients resume from the recovery log"
        );
        if let Some(hook) = self.hook.get() {
            hook();
        }
    }
}

/// The error type of [`SubscriberDriver`].
#[derive(Debug)]
pub struct DriverError(fred::error::Error);

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DriverError {}

impl From<fred::error::Error> for DriverError {
    fn from(e: fred::error::Error) -> Self {
        DriverError(e)
    }
}

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

/// socketioxide-redis's [`Driver`] over a fred subscriber, reporting losses to [`Gaps`].
#[derive(Clone)]
pub struct SubscriberDriver {
    handlers: Handlers,
    conn: SubscriberClient,
}

impl SubscriberDriver {
    /// Starts handing `client`'s messages to the adapter's streams, then connects it.
    pub async fn new(
        client: SubscriberClient,
        gaps: Arc<Gaps>,
    ) -> Result<SubscriberDriver, DriverError> {
        let handlers = Handlers::default();
        tokio::spawn(hand_on(client.message_rx(), handlers.clone(), gaps));
        client.init().await?;
        Ok(SubscriberDriver {
            handlers,
            conn: client,
        })
    }
}

/// Hands each message to its channel's stream; a message lost on the way (either buffer full)
/// opens a gap before the next one is handed on.
async fn hand_on(mut rx: broadcast::Receiver<Message>, handlers: Handlers, gaps: Arc<Gaps>) {
    loop {
        match rx.recv().await {
            Ok(msg) => {
                let chan = msg.channel.to_string();
                let Some(data) = msg.value.into_owned_bytes() else {
                    continue;
                };
                let full = match handlers.read().unwrap().get(&chan) {
                    Some(tx) => matches!(
                        tx.try_send((chan, data)),
                        Err(mpsc::error::TrySendError::Full(_))
                    ),
                    // Unsubscribed meanwhile: nobody here wants it.
                    None => false,
                };
                if full {
                    gaps.open(1, "an adapter stream was full");
                }
            }
            // fred keeps the sender for the client's life; closed means the client is gone.
            Err(broadcast::error::RecvError::Closed) => return,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                gaps.open(n, "the subscriber's broadcast channel lagged");
            }
        }
    }
}

impl Driver for SubscriberDriver {
    type Error = DriverError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), DriverError> {
        self.conn.spublish::<u16, _, _>(chan, val).await?;
        Ok(())
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, DriverError> {
        self.conn.clone().ssubscribe(chan.as_str()).await?;
        let (tx, rx) = mpsc::channel(size);
        self.handlers.write().unwrap().insert(chan, tx);
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), DriverError> {
        self.handlers.write().unwrap().remove(&chan);
        self.conn.sunsubscribe(chan).await?;
        Ok(())
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, DriverError> {
        let (_, num): (String, u16) = self.conn.pubsub_shardnumsub(chan).await?;
        Ok(num)
    }
}
