//! This node's outbox writer: events published here go into the outbox in batches (one write
//! per batch, not one per event, and none on the use case's path). While the outbox cannot be
//! written (MongoDB down) the batch is kept and retried, events piling up behind it in memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use super::outbox::Outbox;
use super::{Endpoint, Event, deliveries, next_pos};

/// The most events one write takes.
const BATCH: usize = 256;

pub async fn run(
    mut rx: mpsc::UnboundedReceiver<Event>,
    unwritten: Arc<AtomicUsize>,
    outbox: Arc<dyn Outbox>,
    endpoints: Vec<Endpoint>,
    reminder: Option<Duration>,
    wake: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let rows: Vec<_> = batch
            .iter()
            .flat_map(|e| deliveries(e, &endpoints, next_pos()))
            .collect();
        retry("queue webhook deliveries", || outbox.enqueue(&rows)).await;
        if let Some(after) = reminder {
            let watches: Vec<_> = batch
                .iter()
                .filter_map(|e| {
                    let (chat, side) = e.unread.as_ref()?;
                    let due = e.at.timestamp_millis() + after.as_millis() as i64;
                    Some((chat.clone(), side.as_str().to_owned(), due))
                })
                .collect();
            if !watches.is_empty() {
                retry("plan chat.unread looks", || {
                    outbox.watch_unread_many(&watches)
                })
                .await;
            }
        }
        unwritten.fetch_sub(batch.len(), Ordering::AcqRel);
        batch.clear();
        wake.notify_waiters();
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
