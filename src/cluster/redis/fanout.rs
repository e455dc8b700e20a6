//! [`RedisFanout`]: emissions through the Redis adapter, pipelined per sender, delivered on this
//! node even while Redis is down.
//!
//! # Pipelined emissions
//!
//! The adapter (patched, `vendor/socketioxide-redis`) queues an emission's publish on the Redis
//! connection, hands the packet to this node's sockets, and only then waits for Redis's reply.
//! [`RedisFanout`] returns as soon as the emission is queued and waits for the reply in a task
//! of its own, so a sender's next emission is queued right behind it: fred writes one
//! connection's commands in the order they were queued and Redis delivers a channel's messages
//! in that order, so a sender's events still reach every node in order, and this node's sockets
//! get them in the order they were queued. Before, each emission waited for the previous one's
//! round trip to Redis, which capped one sender at about 400 emissions per second.
//!
//! # Failed publishes
//!
//! Every publish is bounded by a timeout. When it fails, or while Redis is known to be down,
//! the event is delivered to this node's own sockets at once (by the adapter when the publish
//! was queued, by `io.local()` while Redis is known to be down) and handed to the outage queue
//! ([`super::outage`]), which keeps it if its emission asks for replay.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use prometheus::IntCounter;
use socketioxide::SocketIo;
use socketioxide_core::adapter::errors::BroadcastError;

use super::ClusterAdapter;
use super::clients::PUBLISH_TIMEOUT;
use super::outage::{Kept, Ledger, OutageState};
use crate::cluster::{Args, Emission, Fanout, FanoutError};

/// Fan-out through the Redis adapter, with the pipelining and outage behaviour of the module
/// docs (this one's and [`super::outage`]'s).
pub struct RedisFanout {
    /// The server, for publishes (`io.to`) and, during an outage, local-only delivery.
    pub(super) io: SocketIo<ClusterAdapter>,
    /// A room every local socket joins before a replay, so the replay skips this node.
    pub(super) node_room: String,
    /// What the tasks awaiting publish replies share with the fan-out: outage queue, counters.
    pub(super) ledger: Arc<Ledger>,
    /// The next emission's `order`: kept events are replayed in this order.
    next_order: AtomicU64,
    /// Events published by a replay (for logs and tests).
    pub(super) replayed: AtomicU64,
}

impl RedisFanout {
    /// The fan-out of node `node_id` over `io` (a server built with the Redis adapter).
    pub fn new(io: SocketIo<ClusterAdapter>, node_id: &str) -> Self {
        Self {
            io,
            node_room: format!("node:{node_id}"),
            ledger: Arc::default(),
            next_order: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
        }
    }

    /// Counts in `failures` the publishes that fail once their emission has returned (the
    /// others are counted by the caller).
    pub fn count_late_failures(&self, failures: IntCounter) {
        let _ = self.ledger.failures.set(failures);
    }

    /// Is the node in an outage (Redis unreachable, or kept events not yet replayed)?
    pub fn is_down(&self) -> bool {
        self.lock().down
    }

    /// Events replayed to other nodes since start.
    pub fn replayed(&self) -> u64 {
        self.replayed.load(Ordering::Relaxed)
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, OutageState> {
        self.ledger.lock()
    }

    async fn deliver_locally(&self, e: &Emission<'_>) {
        let mut op = self.io.local().to(e.rooms.clone());
        if !e.except.is_empty() {
            op = op.except(e.except.clone());
        }
        let args = Args {
            payload: e.payload,
            offset: e.offset,
        };
        if let Err(err) = op.emit(e.event, &args).await {
            tracing::debug!(event = e.event, error = %err, "local delivery incomplete");
        }
    }

    /// Publishes `e` (queued behind this node's earlier emissions) and delivers it to this
    /// node's sockets. Returns once both are done, or the outcome if Redis answered at once; the
    /// reply is awaited in a task of its own, which keeps the event for replay if the publish
    /// fails.
    async fn publish(&self, e: Emission<'_>, order: u64) -> Result<(), FanoutError> {
        let payload =
            Arc::new(serde_json::to_value(e.payload).map_err(|err| FanoutError(err.to_string()))?);
        let offset = e.offset.map(str::to_owned);
        let Emission {
            rooms,
            except,
            event,
            keep_for_replay,
            ..
        } = e;
        if keep_for_replay {
            self.ledger.remember(&Kept {
                order,
                rooms: rooms.clone(),
                except: except.clone(),
                event,
                payload: payload.clone(),
                offset: offset.clone(),
            });
        }
        let (io, ledger) = (self.io.clone(), self.ledger.clone());
        let mut publish = Box::pin(async move {
            let mut op = io.to(rooms.clone());
            if !except.is_empty() {
                op = op.except(except.clone());
            }
            // A little over fred's own command timeout, which normally answers first.
            let result = tokio::time::timeout(
                PUBLISH_TIMEOUT + Duration::from_millis(250),
                op.emit(
                    event,
                    &Args {
                        payload: &*payload,
                        offset: offset.as_deref(),
                    },
                ),
            )
            .await;
            match result {
                Ok(Ok(())) => return Ok(()),
                // The publish went out; only some local socket could not take the packet.
                Ok(Err(BroadcastError::Socket(errs))) => {
                    return Err(FanoutError(format!(
                        "{} local socket(s) unreachable",
                        errs.len()
                    )));
                }
                Ok(Err(BroadcastError::Serialize(err))) => {
                    return Err(FanoutError(err.to_string()));
                }
                Ok(Err(err)) => tracing::warn!(event, error = %err, "publish failed"),
                Err(_) => tracing::warn!(event, "publish timed out"),
            }
            // This node's sockets got it when the publish was queued.
            let kept = keep_for_replay.then_some(Kept {
                order,
                rooms,
                except,
                event,
                payload,
                offset,
            });
            Err(ledger.keep(kept))
        });
        // The first poll queues the publish and delivers locally (see the module doc).
        match std::future::poll_fn(|cx| Poll::Ready(publish.as_mut().poll(cx))).await {
            Poll::Ready(result) => result,
            Poll::Pending => {
                let ledger = self.ledger.clone();
                ledger.unconfirmed.fetch_add(1, Ordering::AcqRel);
                tokio::spawn(async move {
                    if let Err(e) = publish.await {
                        if let Some(failures) = ledger.failures.get() {
                            failures.inc();
                        }
                        tracing::warn!(event, error = %e, "emission failed");
                    }
                    ledger.unconfirmed.fetch_sub(1, Ordering::AcqRel);
                });
                Ok(())
            }
        }
    }
}

impl Fanout for RedisFanout {
    fn emit<'a>(
        &'a self,
        e: Emission<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), FanoutError>> + Send + 'a>> {
        Box::pin(async move {
            // The namespace is gone once a drain has closed it (socketioxide's `to` and
            // `local` would panic): nothing can be delivered or published any more.
            if self.io.of("/").is_none() {
                return Err(FanoutError(
                    "the namespace is closed: this node is draining".into(),
                ));
            }
            let order = self.next_order.fetch_add(1, Ordering::Relaxed);
            if !self.is_down() {
                return self.publish(e, order).await;
            }
            self.deliver_locally(&e).await;
            let kept = if e.keep_for_replay {
                serde_json::to_value(e.payload).ok().map(|payload| Kept {
                    order,
                    rooms: e.rooms,
                    except: e.except,
                    event: e.event,
                    payload: Arc::new(payload),
                    offset: e.offset.map(str::to_owned),
                })
            } else {
                None
            };
            Err(self.ledger.keep(kept))
        })
    }

    fn unconfirmed(&self) -> usize {
        self.ledger.unconfirmed.load(Ordering::Acquire)
    }
}

impl RedisFanout {
    /// Publishes the kept events ([`super::outage`]) to the other nodes, in order; leaves the
    /// outage when the queue is empty. Stops at the first failure (the next poll tries again).
    pub(super) async fn replay(&self) {
        // Every socket here already got the kept events live.
        let join = self.io.local().join(self.node_room.clone());
        if !matches!(
            tokio::time::timeout(PUBLISH_TIMEOUT, join).await,
            Ok(Ok(()))
        ) {
            return;
        }
        while let Some(batch) = self.ledger.take_kept() {
            let mut pending = batch.into_iter();
            while let Some(k) = pending.next() {
                // Queued and awaited one at a time: a replay is rare and must keep its order.
                let mut except = k.except.clone();
                except.push(self.node_room.clone());
                let args = Args {
                    payload: &*k.payload,
                    offset: k.offset.as_deref(),
                };
                let op = self
                    .io
                    .to(k.rooms.clone())
                    .except(except)
                    .emit(k.event, &args);
                if matches!(tokio::time::timeout(PUBLISH_TIMEOUT, op).await, Ok(Ok(()))) {
                    self.replayed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                self.ledger
                    .put_back(std::iter::once(k).chain(pending).collect());
                return;
            }
        }
        tracing::info!(
            replayed = self.replayed(),
            "Redis is back: cluster fan-out restored"
        );
    }
}
