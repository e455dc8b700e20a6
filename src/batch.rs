//! Natural batching of one kind of backend call: callers queue requests, and one task sends
//! whatever queued up while the previous batch was on its way as a single call (issue 28: a
//! storm of returning clients made ~12 Redis calls each, and Redis fell behind).
//!
//! Nothing waits for a batch to fill: a request that finds no batch in flight goes out at once,
//! alone, so a quiet node pays no latency; under load the queue grows while a batch travels,
//! and the next one carries all of it (up to the batcher's `max`). One batch is in flight at a
//! time, so requests reach the backend in the order they were queued.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

/// A queue of requests flushed in batches by one task (see the module doc). Cheap to share by
/// reference; the task ends when the batcher is dropped.
pub struct Batcher<Req, Resp> {
    queue: mpsc::UnboundedSender<(Req, oneshot::Sender<Resp>)>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts the task (inside a tokio runtime). `flush` sends one batch and answers each
    /// request, in order (one answer per request: a missing answer is a dropped reply, which
    /// the caller sees as `None`).
    pub fn new<F, Fut>(max: usize, flush: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Resp>> + Send,
    {
        let (queue, mut rx) = mpsc::unbounded_channel::<(Req, oneshot::Sender<Resp>)>();
        let max = max.max(1);
        tokio::spawn(async move {
            let mut requests = Vec::with_capacity(max);
            let mut replies = Vec::with_capacity(max);
            while let Some((request, reply)) = rx.recv().await {
                requests.push(request);
                replies.push(reply);
                while requests.len() < max {
                    let Ok((request, reply)) = rx.try_recv() else {
                        break;
                    };
                    requests.push(request);
                    replies.push(reply);
                }
                let answers = flush(std::mem::take(&mut requests)).await;
                for (reply, answer) in replies.drain(..).zip(answers) {
                    // A caller that gave up waiting has dropped its receiver: nothing to do.
                    let _ = reply.send(answer);
                }
            }
        });
        Self { queue }
    }

    /// Queues `request` and waits for its answer; `None` if the batch that carried it gave no
    /// answer for it.
    pub async fn call(&self, request: Req) -> Option<Resp> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((request, reply)).ok()?;
        answer.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn requests_queued_behind_a_batch_travel_together_in_order() {
        let flushes = Arc::new(AtomicUsize::new(0));
        let counted = flushes.clone();
        let batcher = Arc::new(Batcher::new(64, move |batch: Vec<u32>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                batch.into_iter().map(|n| n * 2).collect::<Vec<_>>()
            }
        }));
        let calls: Vec<_> = (0..100u32)
            .map(|n| {
                let b = batcher.clone();
                tokio::spawn(async move { b.call(n).await })
            })
            .collect();
        for (n, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await.unwrap(), Some(n as u32 * 2));
        }
        let flushes = flushes.load(Ordering::SeqCst);
        assert!(flushes <= 4, "100 requests in {flushes} batches");
    }

    #[tokio::test]
    async fn a_request_without_an_answer_gets_none() {
        let batcher = Batcher::new(8, |_: Vec<u32>| async { Vec::<u32>::new() });
        assert_eq!(batcher.call(1).await, None);
    }
}
