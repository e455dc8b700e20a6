//! What the code's structure leans on, pinned by tests (issue 27).
//!
//! `AppState::emit` polls a recovery log append once and passes the sender's emission turn on
//! before the append is answered, and `RedisFanout` returns after one poll of its publish: both
//! count on the command being *queued* by that first poll (fred writes it to its connection,
//! the embedded log pushes it to its writer's queue), so a command started after that poll is
//! queued behind it. If a fred upgrade (or a change to the embedded log) queued lazily, one
//! sender's events could be logged, or published, out of order; these tests fail first.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use fred::prelude::{ClientLike, EventInterface, PubsubInterface};
use switchboard::cluster::redis::{COMMAND_TIMEOUT, builder};
use switchboard::recovery::{EmbeddedRecovery, Offset, RecoveryBackend, RedisRecovery};

use crate::helpers::{RedisServer, WAIT};

/// Polls `f` once, as the emission path does, and says whether it finished.
async fn poll_once<F: Future>(mut f: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await
}

/// How many appends each check starts: one lucky ordering must not pass it.
const APPENDS: u32 = 20;

/// Starts an append, polls it once, then makes a second append and waits for it, and only then
/// lets the first one finish: the first append was queued by its first poll, so it has the
/// earlier offset.
async fn an_append_is_queued_by_its_first_poll(b: &dyn RecoveryBackend) {
    let rooms = vec!["admins".to_owned()];
    for n in 0..APPENDS {
        let mut first = std::pin::pin!(b.append(&rooms, &[], "message:new", "1", 0));
        let polled = poll_once(first.as_mut()).await;
        let second: Offset =
            tokio::time::timeout(WAIT, b.append(&rooms, &[], "message:new", "2", 0))
                .await
                .expect("the second append is answered")
                .unwrap();
        let first = match polled {
            Poll::Ready(offset) => offset.unwrap(),
            Poll::Pending => tokio::time::timeout(WAIT, first)
                .await
                .expect("the first append is answered")
                .unwrap(),
        };
        assert!(
            first < second,
            "round {n}: the append polled once first got the later offset ({first} >= {second})"
        );
    }
}

#[tokio::test]
async fn a_redis_log_append_is_queued_by_its_first_poll() {
    let redis = RedisServer::start().await;
    let client = builder(&redis.url(), COMMAND_TIMEOUT)
        .unwrap()
        .build()
        .unwrap();
    client.init().await.unwrap();
    let backend = Arc::new(RedisRecovery::new(client));
    backend.load_scripts().await.unwrap();
    an_append_is_queued_by_its_first_poll(&*backend).await;
}

#[tokio::test]
async fn an_embedded_log_append_is_queued_by_its_first_poll() {
    let dir = tempfile::tempdir().unwrap();
    let backend = EmbeddedRecovery::open(dir.path()).unwrap();
    an_append_is_queued_by_its_first_poll(&backend).await;
}

/// The patched Redis adapter publishes with fred's `SPUBLISH` and `RedisFanout` returns after
/// one poll of it: a publish polled once, then another published and answered, reach a
/// subscriber in that order.
#[tokio::test]
async fn a_fred_publish_is_queued_by_its_first_poll() {
    let redis = RedisServer::start().await;
    let connect = || async {
        let client = builder(&redis.url(), COMMAND_TIMEOUT)
            .unwrap()
            .build()
            .unwrap();
        client.init().await.unwrap();
        client
    };
    let (publisher, subscriber) = (connect().await, connect().await);
    let mut messages = subscriber.message_rx();
    subscriber.ssubscribe("pin").await.unwrap();
    for n in 0..APPENDS {
        let mut first = std::pin::pin!(publisher.spublish::<u16, _, _>("pin", format!("{n}a")));
        let polled = poll_once(first.as_mut()).await;
        tokio::time::timeout(
            WAIT,
            publisher.spublish::<u16, _, _>("pin", format!("{n}b")),
        )
        .await
        .expect("the second publish is answered")
        .unwrap();
        if polled.is_pending() {
            tokio::time::timeout(WAIT, first)
                .await
                .expect("the first publish is answered")
                .unwrap();
        }
        let mut got = Vec::new();
        while got.len() < 2 {
            let message = tokio::time::timeout(Duration::from_secs(5), messages.recv())
                .await
                .expect("both publishes arrive")
                .unwrap();
            got.push(message.value.as_string().unwrap_or_default());
        }
        assert_eq!(
            got,
            [format!("{n}a"), format!("{n}b")],
            "the publish polled once first arrived second"
        );
    }
}

/// Every store operation a use case makes is timed under its own label by the decorator (no
/// caller pairs an operation with its label any more); a failure is told as one.
#[tokio::test]
async fn the_timed_store_reports_each_operation_under_its_own_label() {
    use switchboard::domain::{ChatId, ChatPatch, NewChat, Priority};
    use switchboard::store::{EmbeddedStore, Store, StoreObserver, StoreOp, TimedStore};

    #[derive(Clone, Default)]
    struct Seen(Arc<std::sync::Mutex<Vec<(StoreOp, bool)>>>);
    impl StoreObserver for Seen {
        fn observe(&self, op: StoreOp, _: Duration, ok: bool) {
            self.0.lock().unwrap().push((op, ok));
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let seen = Seen::default();
    let store = TimedStore::new(
        Arc::new(EmbeddedStore::open(dir.path()).unwrap()),
        seen.clone(),
    );
    let chat = store
        .create_chat(NewChat {
            id: ChatId::generate(),
            participants: vec!["u1".into()],
            title: "t".into(),
            priority: Priority::Medium,
            assigned_admin: None,
            queued: false,
        })
        .await
        .unwrap();
    store.chat(&chat.id).await.unwrap();
    store.ping().await.unwrap();
    let missing = store
        .update_chat(&ChatId::generate(), ChatPatch::default())
        .await;
    assert!(missing.is_err(), "a missing chat is not updated");
    assert_eq!(
        *seen.0.lock().unwrap(),
        [
            (StoreOp::CreateChat, true),
            (StoreOp::Chat, true),
            (StoreOp::UpdateChat, false),
        ],
        "each operation once, under its own label; ping untimed"
    );
}
