//! This node's outbox writer: events published here go into the outbox in batches (one write
//! per batch, not one per event, and none on a re-derived event's path). While the outbox
//! cannot be written (MongoDB down) the batch is kept and retried; what piles up behind it is
//! bounded by the queue's room (`publisher.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::outbox::Batch;
use super::publisher::{Queued, Running};
use super::{deliveries, next_pos};

/// The most events one write takes.
const BATCH: usize = 256;

pub async fn run(
    mut rx: mpsc::UnboundedReceiver<Queued>,
    running: Arc<Running>,
    reminder: Option<Duration>,
) {
    let outbox = running.outbox.clone();
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        running.writes_allowed().await;
        let rows: Vec<_> = batch
            .iter()
            .flat_map(|q: &Queued| {
                let pos = q.event.pos.unwrap_or_else(next_pos);
                deliveries(&q.event, &running.endpoints, pos)
            })
            .collect();
        // Their pledges are kept by the deliveries now (`pledges.rs`).
        let fulfilled: Vec<String> = batch
            .iter()
            .filter(|q| q.event.pledged)
            .map(|q| q.event.id.clone())
            .collect();
        let watches: Vec<_> = match reminder {
            Some(after) => batch
                .iter()
                .filter_map(|q| {
                    let (chat, side) = q.event.unread.as_ref()?;
                    let due = q.event.at.timestamp_millis() + after.as_millis() as i64;
                    Some((chat.clone(), side.as_str().to_owned(), due))
                })
                .collect(),
            None => Vec::new(),
        };
        // One write: the deliveries, then their pledges forgotten, then the looks planned.
        let write = Batch {
            deliveries: rows,
            fulfilled,
            watches,
        };
        retry("queue webhook deliveries", || outbox.write_batch(&write)).await;
        // The sender node's reconcile pass need not read these messages again (`queued.rs`): their
        // deliveries and their `chat.unread` looks are in the outbox.
        if running.lease.is_held() {
            for q in batch.iter().filter(|q| q.event.kind == "message.created") {
                if let Some(chat) = q.event.key.strip_prefix("chat:") {
                    running.queued_messages.note(chat, q.event.seq);
                }
            }
        }
        running.unwritten.fetch_sub(batch.len(), Ordering::AcqRel);
        // Their room is given back, and whoever waits for their write goes on.
        for q in batch.drain(..) {
            if let Some(written) = q.written {
                let _ = written.send(());
            }
        }
        running.note_queue();
        running.wake.notify_waiters();
    }
}

/// Runs `op` until it succeeds, waiting a little longer after each failure (at most 5 s).
pub(crate) async fn retry<F, Fut>(what: &str, mut op: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = super::outbox::OutboxResult<()>>,
{
    let mut wait = Duration::from_millis(100);
    loop {
        match op().await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not {what}; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}
