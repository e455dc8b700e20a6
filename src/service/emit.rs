//! Emitting a server event: the one seam every use case that announces something borrows
//! ([`Emitter`]). An emission publishes its webhook, appends a recoverable event to the
//! recovery log, then broadcasts through the fan-out, in the event's [`Turn`].
//! And the use cases' side of a webhook pledge (`webhooks/pledges.rs`): written before the
//! save ([`Emitter::pledge`]), the save refused when it cannot be written, forgotten when the
//! save fails ([`Emitter::saved`]), fulfilled by the emission ([`Emitter::emit_pledged`]).

use std::task::Poll;
use std::time::Instant;

use crate::cluster::{Emission, Fanout};
use crate::error::{AppError, ErrorCode};
use crate::metrics::Metrics;
use crate::ordering::Turn;
use crate::recovery::Recovery;
use crate::service::events::ServerEvent;
use crate::state::NodeState;
#[cfg(any(test, feature = "test-support"))]
use crate::state::test_hooks::TestHooks;
use crate::webhooks::{Check, Pledged, Publisher};

/// What an emission goes through: the fan-out, the recovery log, the webhooks and the
/// metrics. Four references: cheap to copy into every use case that emits.
#[derive(Clone, Copy)]
pub struct Emitter<'a> {
    /// Room emissions, through whichever adapter `app.rs` chose.
    fanout: &'a dyn Fanout,
    /// Where recoverable events are logged before they go out (`None`: recovery is off).
    recovery: Option<&'a Recovery>,
    /// Webhook events published in the emission's turn.
    webhooks: &'a Publisher,
    /// Publishes, failures and latency of the fan-out; the recovery log's appends.
    metrics: &'a Metrics,
    /// A node killed between its save and its emission (`test-support` only).
    #[cfg(any(test, feature = "test-support"))]
    test_hooks: &'a TestHooks,
}

impl<'a> Emitter<'a> {
    /// The node's emission seam.
    pub fn of(node: &'a NodeState) -> Self {
        Emitter {
            fanout: &*node.fanout,
            recovery: node.recovery.as_deref(),
            webhooks: &node.webhooks,
            metrics: &node.metrics,
            #[cfg(any(test, feature = "test-support"))]
            test_hooks: &node.test_hooks,
        }
    }

    /// Emits `event` to rooms under its own name ([`ServerEvent::NAME`]), in `turn` (a socket
    /// event's, or [`Turn::unordered`]); a failure is logged and counted, never hidden. The
    /// caller decides what a failure means (a saved message stays saved: clients catch up with
    /// `chat:sync`). Takes the turn: an event's one emission passes the turn on once its log
    /// append is queued, so the sender's next event may queue its own
    /// (see [`crate::ordering::EmitOrder`]).
    pub async fn emit<E: ServerEvent + Sync>(
        &self,
        rooms: Vec<String>,
        except: Vec<String>,
        event: &E,
        turn: Turn,
    ) -> bool {
        self.emit_pledged(rooms, except, event, None, turn).await
    }

    /// [`emit`](Self::emit) of the change `pledged` was written ahead of
    /// (`webhooks/pledges.rs`): its webhook takes the pledge's id and place.
    pub async fn emit_pledged<E: ServerEvent + Sync>(
        &self,
        rooms: Vec<String>,
        except: Vec<String>,
        event: &E,
        pledged: Option<&Pledged>,
        turn: Turn,
    ) -> bool {
        // In a socket event: after the previous event's log appends, and let the next event start.
        turn.emission().await;
        let webhook = if self.webhooks.enabled() {
            event.webhook().map(|hook| match pledged {
                Some(p) => hook.fulfilling(p),
                None => hook,
            })
        } else {
            None
        };
        if !self.publish_webhook(webhook).await {
            return false;
        }
        self.emit_in_turn(rooms, except, E::NAME, E::RECOVERABLE, event, turn)
            .await
    }

    /// Publishes an emission's webhook, in its emission turn (a socket's webhooks keep its
    /// events' order): one the store cannot give back is in the outbox before the emission
    /// goes out; a `message.created` is queued without waiting (the reconcile pass re-derives
    /// it from the saved message). `false` where a node killed after its save stops (a test
    /// hook): nothing after it happens.
    async fn publish_webhook(&self, webhook: Option<crate::webhooks::Event>) -> bool {
        #[cfg(any(test, feature = "test-support"))]
        if self.test_hooks.saves_killed() {
            return false;
        }
        let webhook = match webhook {
            Some(hook) if !hook.is_rederived() => {
                self.webhooks.publish_durable(hook).await;
                None
            }
            other => other,
        };
        #[cfg(any(test, feature = "test-support"))]
        if self.test_hooks.emissions_killed() {
            return false;
        }
        if let Some(hook) = webhook {
            self.webhooks.publish(hook);
        }
        true
    }

    /// Writes ahead the event of a change about to be saved (`webhooks/pledges.rs`): `None`
    /// when no endpoint takes it. When the outbox cannot be written the change is not made
    /// (`UNAVAILABLE`): an event once saved is never lost.
    pub async fn pledge(
        &self,
        kind: &'static str,
        id: String,
        key: String,
        seq: u64,
        check: Check,
    ) -> Result<Option<Pledged>, AppError> {
        self.webhooks
            .pledge(kind, id, key, seq, check)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, kind, "webhook pledge not written: change refused");
                AppError::new(ErrorCode::Unavailable, "the webhook outbox is unavailable")
            })
    }

    /// A save's outcome: a failed save forgets its pledge (its change was not made).
    pub async fn saved<T>(
        &self,
        result: crate::store::StoreResult<T>,
        pledged: &Option<Pledged>,
    ) -> Result<T, AppError> {
        if result.is_err() {
            self.webhooks.unpledge(pledged.clone()).await;
        }
        Ok(result?)
    }

    /// Forgets a pledge whose change was not made after all (nothing changed, or the save
    /// found the chat changed under it).
    pub async fn unpledge(&self, pledged: Option<Pledged>) {
        self.webhooks.unpledge(pledged).await;
    }

    /// Writes ahead the `message.delivered` of a message about to be saved delivered to `to`
    /// (a recipient socket is on this node: the save moves the mark itself). `Err` when the
    /// outbox cannot be written: the caller saves the message undelivered instead, and the
    /// delivery that follows its emission pledges its own.
    pub async fn pledge_saved_delivered(
        &self,
        chat: &crate::domain::ChatId,
        message: &crate::domain::MessageId,
        to: &str,
    ) -> Result<Option<Pledged>, AppError> {
        let check = Check::SavedDelivered {
            chat: chat.as_str().to_owned(),
            message: message.as_str().to_owned(),
            to: to.to_owned(),
        };
        let key = format!("chat:{}", chat.as_str());
        let id = crate::webhooks::fresh_id();
        let pledged = self.pledge("message.delivered", id, key, 0, check).await?;
        // Its event follows the message the save creates, queued after the pledge is made.
        Ok(pledged.map(Pledged::placed_when_written))
    }

    /// [`unpledge`](Self::unpledge) of several pledges, in one write.
    pub async fn unpledge_many(&self, pledged: Vec<Pledged>) {
        self.webhooks.unpledge_many(pledged).await;
    }

    /// The untyped body of [`emit`](Self::emit): one copy of this code, whatever the event's
    /// type.
    async fn emit_in_turn(
        &self,
        rooms: Vec<String>,
        except: Vec<String>,
        event: &'static str,
        recoverable: bool,
        payload: &(dyn erased_serde::Serialize + Sync),
        turn: Turn,
    ) -> bool {
        // Logged before it is broadcast: a socket gets an event only once the log holds it.
        let offset = {
            let mut logged =
                std::pin::pin!(self.log_for_recovery(&rooms, &except, event, recoverable, payload));
            // Both logs queue the append when first polled (fred writes the XADD to its
            // connection, the embedded log pushes it to its writer's queue): from here the next
            // event's append is queued after this one's, and gets the later offset.
            let first = std::future::poll_fn(|cx| Poll::Ready(logged.as_mut().poll(cx))).await;
            turn.pass_emission();
            match first {
                Poll::Ready(offset) => offset,
                Poll::Pending => logged.await,
            }
        };
        // Broadcasts go out in the sender's order, so offsets grow in the order clients see.
        turn.broadcast().await;
        #[cfg(any(test, feature = "test-support"))]
        self.test_hooks.before_broadcast(event).await;
        let started = Instant::now();
        self.metrics.fanout_publishes.inc();
        let result = self
            .fanout
            .emit(Emission {
                rooms,
                except,
                event,
                payload,
                offset: offset.as_deref(),
                // See `ServerEvent::RECOVERABLE`: typing indicators are stale by the time Redis
                // returns from an outage.
                keep_for_replay: recoverable,
            })
            .await;
        self.metrics
            .fanout_duration
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => true,
            Err(e) => {
                self.metrics.fanout_failures.inc();
                tracing::warn!(event, error = %e, "emission failed");
                false
            }
        }
    }

    /// Writes a recoverable emission to the recovery log; its offset, or `None` (recovery off,
    /// an event that is not replayed, or a log that failed: then the event goes out without an
    /// offset, and a session that missed it cannot get it back).
    async fn log_for_recovery(
        &self,
        rooms: &[String],
        except: &[String],
        event: &'static str,
        recoverable: bool,
        payload: &(dyn erased_serde::Serialize + Sync),
    ) -> Option<String> {
        let recovery = self.recovery.as_ref()?;
        if !recoverable {
            return None;
        }
        let logged = match serde_json::to_string(payload) {
            Ok(json) => recovery
                .log(rooms, except, event, &json)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match logged {
            Ok(offset) => {
                self.metrics.recovery.log_appends.inc();
                Some(offset.to_string())
            }
            Err(error) => {
                self.metrics.recovery.log_failures.inc();
                tracing::warn!(event, %error, "recovery log append failed; sent without offset");
                None
            }
        }
    }
}
