//! The store contract's auto-assignment part ([`switchboard::store::AssignmentStore`]): run by
//! `store_contract.rs`'s `contract_tests!` for every backend (re-exported there).

use std::sync::Arc;

use switchboard::domain::*;
use switchboard::store::{Assign, Store};

async fn queued_chat(store: &Arc<dyn Store>, user: &str) -> Chat {
    store
        .create_chat(NewChat {
            id: ChatId::generate(),
            participants: vec![user.into()],
            title: "Support chat".into(),
            priority: Priority::Medium,
            assigned_admin: None,
            queued: true,
        })
        .await
        .unwrap()
}

/// An assignment with room to spare: only the chat's state decides.
fn assign<'a>(chat: &'a ChatId, agent: &'a str, at: Timestamp) -> Assign<'a> {
    Assign {
        chat,
        agent,
        at,
        capacity: 1000,
        change: None,
        fence: 1,
    }
}

fn ids(chats: &[Chat]) -> Vec<&str> {
    chats.iter().map(|c| c.id.as_str()).collect()
}

pub async fn the_queue_is_oldest_first_and_an_assignment_takes_a_chat_out_once(
    store: Arc<dyn Store>,
) {
    let c1 = queued_chat(&store, "u1").await;
    let c2 = queued_chat(&store, "u2").await;
    let c3 = queued_chat(&store, "u3").await;
    assert!(c1.queued_at.is_some() && c1.assigned_at.is_none());
    assert_eq!(
        ids(&store.queued_chats(10).await.unwrap()),
        ids(&[c1.clone(), c2.clone(), c3.clone()])
    );

    let at = now();
    let got = store
        .assign_queued(assign(&c1.id, "a1", at))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.assigned_admin.as_deref(), Some("a1"));
    assert_eq!(got.assigned_at, Some(at));
    assert_eq!(got.queued_at, None);
    assert_eq!(got.participants, vec!["u1", "a1"]);
    // Taken already: a second pass (or another agent) gets nothing.
    assert!(
        store
            .assign_queued(assign(&c1.id, "a2", at))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        ids(&store.queued_chats(10).await.unwrap()),
        ids(&[c2.clone(), c3.clone()])
    );

    // A PATCH assignment and a close take a chat out of the queue too.
    let patched = store
        .update_chat(
            &c2.id,
            ChatPatch {
                assigned_admin: Some("a2".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(patched.queued_at.is_none() && patched.assigned_at.is_some());
    store
        .update_chat(
            &c3.id,
            ChatPatch {
                status: Some(ChatStatus::Closed),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(store.queued_chats(10).await.unwrap().is_empty());
    assert!(
        store
            .assign_queued(assign(&c3.id, "a1", at))
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn loads_count_open_chats_and_the_latest_assignment(store: Arc<dyn Store>) {
    let c1 = queued_chat(&store, "u1").await;
    let c2 = queued_chat(&store, "u2").await;
    let early = now() - chrono::Duration::seconds(10);
    let late = now();
    store
        .assign_queued(assign(&c1.id, "a1", early))
        .await
        .unwrap()
        .unwrap();
    store
        .assign_queued(assign(&c2.id, "a1", late))
        .await
        .unwrap()
        .unwrap();
    store
        .update_chat(
            &c2.id,
            ChatPatch {
                status: Some(ChatStatus::Closed),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let loads = store
        .agent_loads(&["a1".into(), "a9".into()])
        .await
        .unwrap();
    assert_eq!(loads[0].agent, "a1");
    assert_eq!(loads[0].open, 1, "the closed chat does not count");
    assert_eq!(
        loads[0].last_assigned,
        Some(late),
        "closed chats date it too"
    );
    assert_eq!((loads[1].open, loads[1].last_assigned), (0, None));
    assert_eq!(store.assignees().await.unwrap(), vec!["a1"]);
    assert_eq!(ids(&store.open_chats_of("a1").await.unwrap()), ids(&[c1]));
}

pub async fn a_requeue_takes_the_agent_out_only_if_they_still_hold_the_chat(store: Arc<dyn Store>) {
    let c1 = queued_chat(&store, "u1").await;
    let later = queued_chat(&store, "u2").await;
    store
        .assign_queued(assign(&c1.id, "a1", now()))
        .await
        .unwrap()
        .unwrap();
    let front = later.queued_at.unwrap() - chrono::Duration::milliseconds(1);

    assert!(
        store
            .requeue(&c1.id, "a2", front, None, 1)
            .await
            .unwrap()
            .is_none()
    );
    let back = store
        .requeue(&c1.id, "a1", front, None, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.assigned_admin, None);
    assert_eq!(back.assigned_at, None);
    assert_eq!(back.queued_at, Some(front));
    assert_eq!(back.participants, vec!["u1"]);
    assert_eq!(
        ids(&store.queued_chats(10).await.unwrap()),
        ids(&[back, later]),
        "back at the front"
    );
    assert!(store.assignees().await.unwrap().is_empty());
}

pub async fn an_assignment_write_refuses_an_agent_at_capacity(store: Arc<dyn Store>) {
    let c1 = queued_chat(&store, "u1").await;
    let c2 = queued_chat(&store, "u2").await;
    // a1 holds one open chat (a `PATCH` counts like any other).
    let held = queued_chat(&store, "u0").await;
    store
        .update_chat(
            &held.id,
            ChatPatch {
                assigned_admin: Some("a1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // Capacity 2: one more, not two, whatever the pass believed the load to be.
    let full = |chat| Assign {
        capacity: 2,
        ..assign(chat, "a1", now())
    };
    assert!(store.assign_queued(full(&c1.id)).await.unwrap().is_some());
    assert!(
        store.assign_queued(full(&c2.id)).await.unwrap().is_none(),
        "a1 is at capacity: the write is refused"
    );
    assert_eq!(store.agent_loads(&["a1".into()]).await.unwrap()[0].open, 2);
    assert_eq!(ids(&store.queued_chats(10).await.unwrap()), ids(&[c2]));
}

pub async fn a_late_write_of_an_earlier_pass_cannot_pass_the_capacity(store: Arc<dyn Store>) {
    let early = queued_chat(&store, "u1").await;
    let late = queued_chat(&store, "u2").await;
    // Pass 2 took the gate over from pass 1, whose write to a1 is still on its way.
    store.fence_queue(2).await.unwrap();
    let pass = |chat, fence| Assign {
        capacity: 1,
        fence,
        ..assign(chat, "a1", now())
    };
    assert!(
        store
            .assign_queued(pass(&early.id, 2))
            .await
            .unwrap()
            .is_some()
    );

    // Pass 1's write lands: refused (SQLite counts a1's load in it; MongoDB finds the fence).
    assert!(
        store
            .assign_queued(pass(&late.id, 1))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.agent_loads(&["a1".into()]).await.unwrap()[0].open, 1);
    assert_eq!(ids(&store.queued_chats(10).await.unwrap()), ids(&[late]));
}

pub async fn a_change_id_is_recorded_with_its_write_only(store: Arc<dyn Store>) {
    let c1 = queued_chat(&store, "u1").await;
    let assigned = Assign {
        change: Some("evt_assigned"),
        ..assign(&c1.id, "a1", now())
    };
    store.assign_queued(assigned).await.unwrap().unwrap();
    store
        .update_chat(
            &c1.id,
            ChatPatch {
                priority: Some(Priority::High),
                change: Some("evt_patched".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let front = now();
    store
        .requeue(&c1.id, "a1", front, Some("evt_requeued"), 1)
        .await
        .unwrap()
        .unwrap();
    // Refused writes record nothing.
    assert!(
        store
            .requeue(&c1.id, "a1", front, Some("evt_refused"), 1)
            .await
            .unwrap()
            .is_none()
    );
    for change in ["evt_assigned", "evt_patched", "evt_requeued"] {
        assert!(
            store.chat_has_change(&c1.id, change).await.unwrap(),
            "{change}"
        );
    }
    assert!(!store.chat_has_change(&c1.id, "evt_refused").await.unwrap());
    assert!(!store.chat_has_change(&c1.id, "evt_never").await.unwrap());
    let other = queued_chat(&store, "u2").await;
    assert!(
        !store
            .chat_has_change(&other.id, "evt_patched")
            .await
            .unwrap()
    );
}
