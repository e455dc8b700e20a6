//! One endpoint's sender: on the node holding the lease, it sends the endpoint's pending
//! deliveries, at most one per order key (chat, user) in flight and [`CONCURRENCY`] in all, each
//! attempt bounded by `WEBHOOK_TIMEOUT_SECS`. A failed attempt waits an exponential backoff with
//! jitter (1 s doubling up to `WEBHOOK_MAX_BACKOFF_SECS`, a random half of it added) while the
//! rest of the endpoint's keys go on; after `WEBHOOK_RETRY_FOR_SECS` it is kept as failed. Each
//! endpoint has its own sender, so a slow or dead endpoint delays no other.
//!
//! A chat's messages go in `seq` order, and a read or a delivery after the message it names,
//! even when a message is queued late (its node died before publishing it, and the reconcile
//! pass queued it from the store): an event that follows a message this sender has not sent
//! waits until the reconcile pass has looked past it ([`waits_for_predecessor`]); by then a
//! missing message is queued ahead of it, at its own place. A chat's first message, one
//! following the last sent, and events that follow no message go at once. Likewise an event
//! queued after an open pledge of its key (`pledges.rs`) waits until the pledge is settled.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::Notify;

use super::outbox::{Delivery, Outbox, State};
use super::signing::signature_header;
use super::writer::retry;
use super::{Endpoint, Lease, WebhookSettings};
use crate::metrics::WebhookMetrics;

/// Deliveries of one endpoint in flight at once (each of a different chat or user).
pub const CONCURRENCY: usize = 32;
/// How many pending deliveries one look reads.
const LOOK: usize = 1000;
/// How often the sender looks without being woken (other nodes' events, due retries).
const TICK: Duration = Duration::from_millis(250);
/// The least time between two looks.
const LOOK_GAP: Duration = Duration::from_millis(10);
/// How long a finished delivery is remembered against stale reads of the outbox.
const FORGET_FINISHED: Duration = Duration::from_secs(30);
/// How often finished deliveries older than [`FORGET_FINISHED`] are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// How often the backlog metrics are read.
const BACKLOG_EVERY: Duration = Duration::from_secs(2);
/// How long the last message sent in a chat is remembered (a chat quiet for longer has its
/// next message wait for a reconcile pass, a few seconds).
const REMEMBER_LAST: Duration = Duration::from_secs(3600);
/// Past this many remembered chats, those quiet for [`REMEMBER_LAST`] are forgotten.
const REMEMBER_AT_MOST: usize = 100_000;

/// What every endpoint's sender shares.
pub struct Shared {
    pub outbox: Arc<dyn Outbox>,
    pub lease: Arc<Lease>,
    pub wake: Arc<Notify>,
    pub metrics: WebhookMetrics,
    /// Where the reconcile pass has looked up to (ms; see the module doc).
    pub reconciled: Arc<AtomicI64>,
}

/// What [`Sender::finished`] keeps of a finished delivery.
struct Finished {
    attempts: u32,
    queued_ms: i64,
    at: Instant,
}

pub struct Sender {
    endpoint: Endpoint,
    client: reqwest::Client,
    retry_for: Duration,
    max_backoff: Duration,
    outbox: Arc<dyn Outbox>,
    lease: Arc<Lease>,
    wake: Arc<Notify>,
    metrics: WebhookMetrics,
    /// Order keys with a delivery in flight.
    in_flight: Mutex<HashSet<String>>,
    /// Deliveries finished a moment ago, with the attempt count a current read of them shows
    /// at least and the queue time they had: a look that read the outbox before their update
    /// landed must not send them again (a resend queues them anew, with a new queue time).
    finished: Mutex<HashMap<String, Finished>>,
    /// Outcomes of finished attempts not yet written to the outbox: [`record`] writes them in
    /// one batch (one transaction, not one write per delivery), then frees their keys.
    outcomes: Mutex<Vec<Delivery>>,
    outcome: Notify,
    /// Where the reconcile pass has looked up to (ms).
    reconciled: Arc<AtomicI64>,
    /// The `seq` of the last `message.created` sent, by chat key, and when.
    last_sent: Mutex<HashMap<String, (u64, Instant)>>,
    /// Whether this endpoint gets `message.created` (else nothing waits for messages).
    orders_messages: bool,
}

impl Sender {
    pub fn new(endpoint: Endpoint, settings: &WebhookSettings, shared: Shared) -> Arc<Self> {
        let Shared {
            outbox,
            lease,
            wake,
            metrics,
            reconciled,
        } = shared;
        let client = reqwest::Client::builder()
            .timeout(settings.timeout())
            .connect_timeout(settings.timeout())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with timeouts builds");
        Arc::new(Self {
            orders_messages: endpoint.wants("message.created"),
            endpoint,
            client,
            retry_for: settings.retry_for(),
            max_backoff: settings.max_backoff(),
            outbox,
            lease,
            wake,
            metrics,
            in_flight: Mutex::new(HashSet::new()),
            finished: Mutex::new(HashMap::new()),
            outcomes: Mutex::new(Vec::new()),
            outcome: Notify::new(),
            reconciled,
            last_sent: Mutex::new(HashMap::new()),
        })
    }
}

pub async fn run(s: Arc<Sender>) {
    tokio::join!(looks(s.clone()), record(s));
}

/// Looks for what can be sent when woken (outcomes recorded, events queued) or every [`TICK`].
async fn looks(s: Arc<Sender>) {
    let mut last_backlog = Instant::now() - BACKLOG_EVERY;
    let mut last_pruned = Instant::now();
    loop {
        // Registered before the look: a wake during it (an attempt that finished) counts.
        let woken = s.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let held = s.lease.is_held();
        if last_pruned.elapsed() >= PRUNE_EVERY {
            last_pruned = Instant::now();
            s.finished
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, f| f.at.elapsed() < FORGET_FINISHED);
        }
        if last_backlog.elapsed() >= BACKLOG_EVERY {
            last_backlog = Instant::now();
            record_backlog(&s, held).await;
        }
        if held {
            look(&s).await;
        }
        // Every finished attempt wakes the sender, and a look reads up to LOOK rows: at most
        // one look per LOOK_GAP, each starting all it can.
        tokio::time::sleep(LOOK_GAP).await;
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

/// Starts what can be sent now.
async fn look(s: &Arc<Sender>) {
    let rows = match s.outbox.pending(&s.endpoint.name, LOOK).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(endpoint = %s.endpoint.name, error = %e, "could not read the webhook outbox");
            return;
        }
    };
    if rows.is_empty() {
        return;
    }
    // An open pledge holds its key's later events: its own may still be queued ahead of them.
    let pledged: HashMap<String, i64> = match s.outbox.pledged_keys(LOOK).await {
        Ok(keys) => keys.into_iter().collect(),
        Err(e) => {
            tracing::warn!(endpoint = %s.endpoint.name, error = %e, "could not read the webhook pledges");
            return;
        }
    };
    let now = crate::domain::now().timestamp_millis();
    let mut heads = HashSet::new();
    let reconciled = s.reconciled.load(Ordering::Acquire);
    let mut in_flight = s.in_flight.lock().unwrap_or_else(|p| p.into_inner());
    let finished = s.finished.lock().unwrap_or_else(|p| p.into_inner());
    let mut last_sent = s.last_sent.lock().unwrap_or_else(|p| p.into_inner());
    if last_sent.len() > REMEMBER_AT_MOST {
        last_sent.retain(|_, (_, at)| at.elapsed() < REMEMBER_LAST);
    }
    for row in rows {
        // Only the oldest pending delivery of a key may go: the order of a chat is kept.
        if !heads.insert(row.key.clone()) {
            continue;
        }
        let stale = finished
            .get(&row.id)
            .is_some_and(|f| f.queued_ms == row.queued_ms && row.attempts < f.attempts);
        if stale || row.next_ms > now || in_flight.contains(&row.key) {
            continue;
        }
        if pledged.get(&row.key).is_some_and(|pos| *pos < row.pos) {
            continue;
        }
        let last = last_sent
            .get(&row.key)
            .filter(|(_, at)| at.elapsed() < REMEMBER_LAST)
            .map(|(seq, _)| *seq);
        if s.orders_messages && waits_for_predecessor(&row, last, reconciled) {
            continue;
        }
        if in_flight.len() >= CONCURRENCY {
            break;
        }
        if row.kind == "message.created" {
            let last = last_sent
                .entry(row.key.clone())
                .or_insert((0, Instant::now()));
            *last = (last.0.max(row.seq), Instant::now());
        }
        in_flight.insert(row.key.clone());
        tokio::spawn(attempt(s.clone(), row));
    }
}

/// Whether `row` waits for a message of its chat that may still be queued late: it follows
/// a message (a `message.created` its predecessor, a read or a delivery the message it names)
/// this sender has not sent (`last`: the last one it sent in the chat), and the reconcile pass
/// has not yet looked past it (`reconciled`, ms), after which such a message is queued ahead of
/// it (or never existed).
pub fn waits_for_predecessor(row: &Delivery, last: Option<u64>, reconciled: i64) -> bool {
    let follows = if row.kind == "message.created" {
        row.seq.saturating_sub(1)
    } else {
        row.seq
    };
    follows > 0 && last.is_none_or(|last| last < follows) && row.at_ms >= reconciled
}

/// One attempt; its outcome goes to [`record`], which frees its key once it is written.
async fn attempt(s: Arc<Sender>, mut row: Delivery) {
    let started = Instant::now();
    let outcome = send(&s, &row).await;
    s.metrics
        .duration(&s.endpoint.name)
        .observe(started.elapsed().as_secs_f64());
    let now = crate::domain::now().timestamp_millis();
    match outcome {
        Ok(()) => {
            row.state = State::Delivered;
            row.last_error = None;
            s.metrics.outcome(&s.endpoint.name, "sent").inc();
        }
        Err(error) => {
            row.attempts += 1;
            row.last_error = Some(error.clone());
            if now - row.queued_ms >= s.retry_for.as_millis() as i64 {
                row.state = State::Failed;
                s.metrics.outcome(&s.endpoint.name, "failed").inc();
                tracing::warn!(endpoint = %s.endpoint.name, id = %row.id, kind = %row.kind, attempts = row.attempts, %error, "webhook kept as failed");
            } else {
                row.next_ms = now + backoff(row.attempts, s.max_backoff).as_millis() as i64;
                s.metrics.outcome(&s.endpoint.name, "retry").inc();
                tracing::debug!(endpoint = %s.endpoint.name, id = %row.id, attempts = row.attempts, %error, "webhook attempt failed");
            }
        }
    }
    s.outcomes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(row);
    s.outcome.notify_one();
}

/// Writes finished attempts' outcomes in batches, then frees their keys and wakes the looks:
/// a key is sent again only after its last outcome is in the outbox.
async fn record(s: Arc<Sender>) {
    loop {
        s.outcome.notified().await;
        let rows = std::mem::take(&mut *s.outcomes.lock().unwrap_or_else(|p| p.into_inner()));
        if rows.is_empty() {
            continue;
        }
        retry("record webhook attempts", || s.outbox.update_many(&rows)).await;
        let at = Instant::now();
        {
            let mut finished = s.finished.lock().unwrap_or_else(|p| p.into_inner());
            let mut in_flight = s.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            for row in rows {
                in_flight.remove(&row.key);
                // A delivered one counts one attempt more than any pending read of it can show.
                let attempts = row.attempts + u32::from(row.state == State::Delivered);
                let queued_ms = row.queued_ms;
                finished.insert(
                    row.id,
                    Finished {
                        attempts,
                        queued_ms,
                        at,
                    },
                );
            }
        }
        s.wake.notify_waiters();
    }
}

/// The body: `{"type", "timestamp", "data"}`, `data` as it was queued.
pub fn body(row: &Delivery) -> String {
    let at = chrono::DateTime::from_timestamp_millis(row.at_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    format!(
        r#"{{"type":{},"timestamp":"{at}","data":{}}}"#,
        serde_json::Value::from(row.kind.as_str()),
        row.data
    )
}

async fn send(s: &Sender, row: &Delivery) -> Result<(), String> {
    let body = body(row);
    let ts = crate::domain::now().timestamp();
    let signature = signature_header(&s.endpoint.keys, &row.id, ts, &body);
    let response = s
        .client
        .post(s.endpoint.url.clone())
        .header("content-type", "application/json")
        .header("webhook-id", &row.id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "timed out".to_owned()
            } else {
                format!("request failed: {e}")
            }
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

/// The wait after `attempts` failures: 1 s doubling, at most `max`, then between half of it
/// and all of it (jitter spreads the retries of many events that failed together).
pub fn backoff(attempts: u32, max: Duration) -> Duration {
    let base = Duration::from_secs(1)
        .saturating_mul(1 << attempts.saturating_sub(1).min(20))
        .min(max);
    let half = base / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

async fn record_backlog(s: &Sender, held: bool) {
    let name = &s.endpoint.name;
    // Only the sender reports the backlog (every node sees the same outbox): summing a gauge
    // over the nodes gives the cluster's figure.
    let backlog = if held {
        match s.outbox.backlog(name).await {
            Ok(b) => b,
            Err(_) => return,
        }
    } else {
        Default::default()
    };
    let now = crate::domain::now().timestamp_millis();
    let age = backlog
        .oldest_pending_ms
        .map_or(0, |t| (now - t).max(0) / 1000);
    s.metrics
        .set_backlog(name, backlog.pending, backlog.failed, age);
    s.metrics.set_sender(held);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, seq: u64, at_ms: i64) -> Delivery {
        Delivery {
            endpoint: "e".into(),
            id: "i".into(),
            kind: kind.into(),
            key: "chat:c".into(),
            pos: 0,
            seq,
            at_ms,
            data: "null".into(),
            state: State::Pending,
            attempts: 0,
            next_ms: 0,
            queued_ms: 0,
            last_error: None,
        }
    }

    #[test]
    fn an_event_waits_only_while_a_message_it_follows_may_still_be_queued() {
        let created = |seq| row("message.created", seq, 5_000);
        let read = |seq| row("message.read", seq, 5_000);
        let updated = row("chat.updated", 0, 5_000);
        // A chat's first message, the one after the last sent, and what follows no message go.
        assert!(!waits_for_predecessor(&created(1), None, 0));
        assert!(!waits_for_predecessor(&created(8), Some(7), 0));
        assert!(!waits_for_predecessor(&updated, None, 0));
        assert!(!waits_for_predecessor(&read(7), Some(7), 0));
        // A message or a read past the last sent, the reconcile pass not past it yet: wait.
        assert!(waits_for_predecessor(&created(9), Some(7), 4_000));
        assert!(waits_for_predecessor(&created(3), None, 0));
        assert!(waits_for_predecessor(&read(8), Some(7), 0));
        // Once it is past, the message would be queued by now (or never existed): go.
        assert!(!waits_for_predecessor(&created(9), Some(7), 5_001));
        assert!(!waits_for_predecessor(&read(8), Some(7), 5_001));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter() {
        let max = Duration::from_secs(600);
        for (attempts, base) in [(1, 1), (2, 2), (3, 4), (11, 600), (40, 600)] {
            let d = backoff(attempts, max);
            let base = Duration::from_secs(base);
            assert!(d >= base / 2 && d <= base, "{attempts}: {d:?}");
        }
    }
}
