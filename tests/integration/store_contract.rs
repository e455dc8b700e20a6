//! The store contract: every `Store` implementation must pass these, unchanged.
//!
//! Each check takes a fresh store. `contract_tests!(name, factory)` instantiates every check as
//! a test for one backend; the embedded store's instantiation is at the bottom, and the MongoDB
//! store's sits beside the MongoDB test server helper.
//!
//! The `check!` list is kept by the compiler: a check left out of it is a `pub async fn` nothing
//! calls, which `dead_code` under the suite's `clippy -D warnings` refuses (seen: dropping one
//! line fails with "function `...` is never used"). Every backend runs the one list.

use std::sync::Arc;

use switchboard::domain::*;
use switchboard::store::{Store, StoreError};

pub use crate::assignment_contract::*;

fn user(id: &str, role: Role) -> AuthUser {
    AuthUser {
        id: id.into(),
        name: format!("{id} name"),
        role,
    }
}

fn text(s: &str) -> MessageBody {
    MessageBody {
        content: s.into(),
        kind: MessageType::Text,
        file_url: None,
        file_name: None,
    }
}

async fn chat_with(store: &Arc<dyn Store>, participants: &[&str]) -> Chat {
    store
        .create_chat(NewChat {
            id: ChatId::generate(),
            participants: participants.iter().map(|p| p.to_string()).collect(),
            title: "Support chat".into(),
            priority: Priority::Medium,
            assigned_admin: None,
            queued: false,
        })
        .await
        .expect("chat created")
}

async fn send(
    store: &Arc<dyn Store>,
    chat: &ChatId,
    from: &AuthUser,
    body: &str,
    cid: Option<&str>,
) -> Saved<Message> {
    store
        .save_message(NewMessage {
            id: switchboard::domain::MessageId::generate(),
            chat_id: chat.clone(),
            sender: from.clone(),
            body: text(body),
            client_message_id: cid.map(str::to_owned),
            delivered: false,
        })
        .await
        .expect("message saved")
}

pub async fn chat_round_trips(store: Arc<dyn Store>) {
    let chat = chat_with(&store, &["u1", "a1"]).await;
    assert_eq!(chat.participants, vec!["u1", "a1"]);
    assert_eq!(chat.status, ChatStatus::Open);
    assert_eq!(chat.chat_type, "support");
    assert!(chat.last_message.is_none());
    let loaded = store.chat(&chat.id).await.unwrap().expect("chat found");
    assert_eq!(loaded, chat);
    assert!(store.chat(&ChatId::generate()).await.unwrap().is_none());
}

pub async fn seq_is_dense_and_increasing_per_chat(store: Arc<dyn Store>) {
    let a = chat_with(&store, &["u1"]).await;
    let b = chat_with(&store, &["u2"]).await;
    let u1 = user("u1", Role::User);
    let u2 = user("u2", Role::User);
    for i in 1..=5u64 {
        assert_eq!(
            send(&store, &a.id, &u1, "hi", None).await.into_inner().seq,
            i
        );
    }
    assert_eq!(
        send(&store, &b.id, &u2, "hi", None).await.into_inner().seq,
        1
    );
    let chat = store.chat(&a.id).await.unwrap().unwrap();
    let last = chat.last_message.expect("last message kept");
    assert_eq!((last.text.as_str(), last.sender.as_str()), ("hi", "u1"));
    assert!(chat.updated_at >= chat.created_at);
}

pub async fn concurrent_senders_get_distinct_seqs(store: Arc<dyn Store>) {
    let chat = chat_with(&store, &["u1"]).await;
    let mut tasks = Vec::new();
    for s in 0..8 {
        let store = store.clone();
        let chat = chat.id.clone();
        tasks.push(tokio::spawn(async move {
            let sender = user(&format!("s{s}"), Role::Admin);
            let mut seqs = Vec::new();
            for i in 0..10 {
                let m = send(
                    &store,
                    &chat,
                    &sender,
                    &format!("m{i}"),
                    Some(&format!("c{i}")),
                )
                .await;
                seqs.push(m.into_inner().seq);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one sender's seqs increase: {seqs:?}"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=80).collect::<Vec<u64>>());
}

pub async fn client_message_id_retry_returns_first_save(store: Arc<dyn Store>) {
    let chat = chat_with(&store, &["u1"]).await;
    let u1 = user("u1", Role::User);
    let first = send(&store, &chat.id, &u1, "once", Some("abc")).await;
    assert!(first.is_created());
    let again = send(&store, &chat.id, &u1, "once, again", Some("abc")).await;
    assert!(!again.is_created());
    assert_eq!(again.into_inner(), first.clone().into_inner());
    // The retry used up no seq; another sender may use the same clientMessageId.
    let next = send(
        &store,
        &chat.id,
        &user("u2", Role::User),
        "other",
        Some("abc"),
    )
    .await;
    assert!(next.is_created());
    assert_eq!(next.into_inner().seq, 2);
}

pub async fn saving_into_a_missing_chat_is_not_found(store: Arc<dyn Store>) {
    let r = store
        .save_message(NewMessage {
            id: switchboard::domain::MessageId::generate(),
            chat_id: ChatId::generate(),
            sender: user("u1", Role::User),
            body: text("x"),
            client_message_id: None,
            delivered: false,
        })
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
}

pub async fn history_pages_both_ways(store: Arc<dyn Store>) {
    let chat = chat_with(&store, &["u1"]).await;
    let u1 = user("u1", Role::User);
    for i in 1..=7 {
        send(&store, &chat.id, &u1, &format!("m{i}"), None).await;
    }
    let seqs = |ms: Vec<Message>| ms.iter().map(|m| m.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(
            store
                .messages(&chat.id, HistoryPage::Latest, 3)
                .await
                .unwrap()
        ),
        vec![7, 6, 5]
    );
    assert_eq!(
        seqs(
            store
                .messages(&chat.id, HistoryPage::Before(5), 3)
                .await
                .unwrap()
        ),
        vec![4, 3, 2]
    );
    assert_eq!(
        seqs(
            store
                .messages(&chat.id, HistoryPage::After(2), 3)
                .await
                .unwrap()
        ),
        vec![3, 4, 5]
    );
    assert_eq!(
        seqs(
            store
                .messages(&chat.id, HistoryPage::After(7), 3)
                .await
                .unwrap()
        ),
        Vec::<u64>::new()
    );
    let one = store
        .messages(&chat.id, HistoryPage::After(0), 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(one.content, "m1");
    assert_eq!(
        store.message(&chat.id, &one.id).await.unwrap(),
        Some(one.clone())
    );
    let other = chat_with(&store, &["u9"]).await;
    assert_eq!(
        store.message(&other.id, &one.id).await.unwrap(),
        None,
        "a message is found only in its own chat"
    );
}

pub async fn mark_read_touches_only_others_messages_up_to_seq(store: Arc<dyn Store>) {
    let chat = chat_with(&store, &["u1", "a1"]).await;
    let (u1, a1) = (user("u1", Role::User), user("a1", Role::Admin));
    send(&store, &chat.id, &a1, "1", None).await;
    send(&store, &chat.id, &u1, "2", None).await;
    send(&store, &chat.id, &a1, "3", None).await;
    send(&store, &chat.id, &a1, "4", None).await;
    assert_eq!(store.mark_read(&chat.id, 3, "u1").await.unwrap(), 2);
    assert_eq!(
        store.mark_read(&chat.id, 3, "u1").await.unwrap(),
        0,
        "nothing changes twice"
    );
    let ms = store
        .messages(&chat.id, HistoryPage::After(0), 10)
        .await
        .unwrap();
    let status: Vec<_> = ms.iter().map(|m| m.status).collect();
    use MessageStatus::*;
    assert_eq!(status, vec![Read, Sent, Read, Sent]);
}

pub async fn chat_lists_filter_page_and_count_unread(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(chat_with(&store, &["u1", "a1"]).await.id);
    }
    let other = chat_with(&store, &["u2"]).await;
    let a1 = user("a1", Role::Admin);
    send(&store, &ids[0], &a1, "hello", None).await;
    send(&store, &ids[0], &a1, "again", None).await;
    store
        .update_chat(
            &ids[1],
            ChatPatch {
                status: Some(ChatStatus::Closed),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let q = |participant: Option<&str>, status, limit, after| ChatQuery {
        participant: participant.map(str::to_owned),
        status,
        limit,
        after,
        ascending: false,
        reader: "u1".into(),
    };
    let mine = store
        .list_chats(&q(Some("u1"), None, 10, None))
        .await
        .unwrap();
    assert_eq!(mine.len(), 5);
    assert!(mine.iter().all(|c| c.chat.id != other.id));
    let first = mine.iter().find(|c| c.chat.id == ids[0]).unwrap();
    assert_eq!(first.unread_count, 2);
    assert!(mine.windows(2).all(|w| (w[0].chat.updated_at, &w[0].chat.id) >= (w[1].chat.updated_at, &w[1].chat.id)));

    let page1 = store
        .list_chats(&q(Some("u1"), None, 2, None))
        .await
        .unwrap();
    let last = page1.last().unwrap();
    let cursor = ChatCursor {
        updated_at: last.chat.updated_at,
        id: last.chat.id.clone(),
    };
    let page2 = store
        .list_chats(&q(Some("u1"), None, 10, Some(cursor)))
        .await
        .unwrap();
    let mut seen: Vec<_> = page1
        .iter()
        .chain(page2.iter())
        .map(|c| c.chat.id.clone())
        .collect();
    seen.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen, expected, "pages cover every chat exactly once");

    let closed = store
        .list_chats(&q(Some("u1"), Some(ChatStatus::Closed), 10, None))
        .await
        .unwrap();
    assert_eq!(
        closed.iter().map(|c| c.chat.id.clone()).collect::<Vec<_>>(),
        vec![ids[1].clone()]
    );
    let all = store.list_chats(&q(None, None, 100, None)).await.unwrap();
    assert_eq!(all.len(), 6);
}

pub async fn update_chat_assigns_admin_as_participant(store: Arc<dyn Store>) {
    let chat = chat_with(&store, &["u1"]).await;
    let updated = store
        .update_chat(
            &chat.id,
            ChatPatch {
                priority: Some(Priority::High),
                assigned_admin: Some("a7".into()),
                status: None,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.priority, Priority::High);
    assert_eq!(updated.assigned_admin.as_deref(), Some("a7"));
    assert_eq!(updated.participants, vec!["u1", "a7"]);
    let again = store
        .update_chat(
            &chat.id,
            ChatPatch {
                assigned_admin: Some("a7".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        again.participants,
        vec!["u1", "a7"],
        "no duplicate participant"
    );
    let missing = store
        .update_chat(&ChatId::generate(), ChatPatch::default())
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))));
}

pub async fn chat_partners_are_those_of_open_chats(store: Arc<dyn Store>) {
    chat_with(&store, &["u1", "a1"]).await;
    let closed = chat_with(&store, &["u1", "a2"]).await;
    chat_with(&store, &["u2", "a3"]).await;
    store
        .update_chat(
            &closed.id,
            ChatPatch {
                status: Some(ChatStatus::Closed),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut partners = store.chat_partners("u1").await.unwrap();
    partners.sort();
    assert_eq!(partners, vec!["a1"]);
}

/// Issue 28: the batched read answers, for every user asked, what `chat_partners` answers.
pub async fn chat_partners_of_several_users_match_one_by_one(store: Arc<dyn Store>) {
    chat_with(&store, &["u1", "a1"]).await;
    chat_with(&store, &["u1", "a2"]).await;
    let closed = chat_with(&store, &["u2", "a1"]).await;
    chat_with(&store, &["u3", "a1"]).await;
    store
        .update_chat(
            &closed.id,
            ChatPatch {
                status: Some(ChatStatus::Closed),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let users: Vec<String> = ["u1", "u2", "u3", "a1", "nobody"]
        .iter()
        .map(|u| u.to_string())
        .collect();
    let batched = store.chat_partners_of(&users).await.unwrap();
    assert_eq!(batched.len(), users.len(), "every user asked for answered");
    for (user, mut partners) in batched {
        let mut one = store.chat_partners(&user).await.unwrap();
        partners.sort();
        one.sort();
        assert_eq!(partners, one, "partners of {user}");
    }
}

fn new_report(to: &str, title: &str) -> NewReport {
    NewReport {
        id: ReportId::generate(),
        user_id: to.into(),
        order_id: Some("o-1".into()),
        payment_id: None,
        invoice_id: None,
        title: title.into(),
        message: "Your order shipped".into(),
        status: ReportStatus::Info,
        sent_by: "a1".into(),
        sent_by_name: "a1 name".into(),
    }
}

pub async fn reports_list_newest_first_and_mark_read(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            store
                .create_report(new_report("u1", &format!("r{i}")))
                .await
                .unwrap()
                .id,
        );
    }
    store
        .create_report(new_report("u2", "other"))
        .await
        .unwrap();
    let r = store.report(&ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (
            r.title.as_str(),
            r.order_id.as_deref(),
            r.is_read,
            r.read_at
        ),
        ("r0", Some("o-1"), false, None)
    );
    assert_eq!(store.unread_report_count("u1").await.unwrap(), 4);

    let q = |user: Option<&str>, unread_only, limit, after| ReportQuery {
        user_id: user.map(str::to_owned),
        unread_only,
        limit,
        after,
    };
    let list = store
        .list_reports(&q(Some("u1"), false, 10, None))
        .await
        .unwrap();
    assert_eq!(
        list.iter().map(|r| r.title.as_str()).collect::<Vec<_>>(),
        vec!["r3", "r2", "r1", "r0"]
    );
    let page1 = store
        .list_reports(&q(Some("u1"), false, 3, None))
        .await
        .unwrap();
    let last = page1.last().unwrap();
    let page2 = store
        .list_reports(&q(
            Some("u1"),
            false,
            3,
            Some(ReportCursor {
                created_at: last.created_at,
                id: last.id.clone(),
            }),
        ))
        .await
        .unwrap();
    assert_eq!(
        page2.iter().map(|r| r.title.as_str()).collect::<Vec<_>>(),
        vec!["r0"]
    );

    let at = now();
    let read = store.mark_report_read(&ids[1], at).await.unwrap();
    assert!(read.is_read);
    assert_eq!(read.read_at, Some(at));
    let again = store
        .mark_report_read(&ids[1], now() + chrono::Duration::seconds(5))
        .await
        .unwrap();
    assert_eq!(again.read_at, Some(at), "the first readAt is kept");
    assert_eq!(store.unread_report_count("u1").await.unwrap(), 3);
    let unread = store
        .list_reports(&q(Some("u1"), true, 10, None))
        .await
        .unwrap();
    assert_eq!(unread.len(), 3);
    assert!(unread.iter().all(|r| !r.is_read));
    assert_eq!(
        store
            .list_reports(&q(None, false, 10, None))
            .await
            .unwrap()
            .len(),
        5
    );
    assert!(matches!(
        store.mark_report_read(&ReportId::generate(), now()).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn uploads_round_trip(store: Arc<dyn Store>) {
    let meta = FileMeta {
        id: FileId::generate(),
        file_name: "photo.png".into(),
        content_type: "image/png".into(),
        size: 5,
        uploaded_by: "u1".into(),
        created_at: now(),
    };
    store
        .save_upload(
            meta.clone(),
            Box::new(std::io::Cursor::new(b"\x89PNG!".to_vec())),
        )
        .await
        .unwrap();
    let (m, data) = store.upload(&meta.id).await.unwrap().expect("file found");
    assert_eq!(m, meta);
    let data = switchboard::store::read_to_end(data).await.unwrap();
    assert_eq!(&data[..], b"\x89PNG!");
    assert!(store.upload(&FileId::generate()).await.unwrap().is_none());
    // The upload budget's count: the uploader's bytes since a time, nobody else's.
    let hour_ago = now() - chrono::Duration::hours(1);
    assert_eq!(store.uploaded_bytes_since("u1", hour_ago).await.unwrap(), 5);
    assert_eq!(store.uploaded_bytes_since("u2", hour_ago).await.unwrap(), 0);
    let later = now() + chrono::Duration::hours(1);
    assert_eq!(store.uploaded_bytes_since("u1", later).await.unwrap(), 0);
}

/// Moves the marks of a chat that has none yet: forward moves land once, none moves back.
pub async fn marks_move_forward_only_in(store: &dyn Store, chat: &ChatId) {
    assert!(store.advance_delivered(chat, Side::Staff, 3).await.unwrap());
    assert!(!store.advance_delivered(chat, Side::Staff, 3).await.unwrap());
    assert!(
        !store.advance_delivered(chat, Side::Staff, 2).await.unwrap(),
        "never back"
    );
    assert!(store.advance_delivered(chat, Side::User, 1).await.unwrap());
    assert!(store.advance_delivered(chat, Side::Staff, 7).await.unwrap());
    let loaded = store.chat(chat).await.unwrap().unwrap();
    assert_eq!(loaded.delivered, DeliveryMarks { user: 1, staff: 7 });
}

pub async fn delivery_marks_move_forward_only(store: Arc<dyn Store>) {
    let chat = chat_with(&store, &["u1", "a1"]).await;
    assert_eq!(chat.delivered, DeliveryMarks::default());
    marks_move_forward_only_in(store.as_ref(), &chat.id).await;
    let listed = store
        .list_chats(&ChatQuery {
            participant: None,
            status: None,
            limit: 10,
            after: None,
            ascending: false,
            reader: "u1".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        listed[0].chat.delivered,
        DeliveryMarks { user: 1, staff: 7 }
    );
    assert!(matches!(
        store
            .advance_delivered(&ChatId::generate(), Side::User, 1)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// A save made while a recipient socket is on the saving node moves the recipients' mark to
/// the new `seq` in the same write; other saves leave the marks alone.
pub async fn a_save_that_delivers_moves_the_recipients_mark(store: Arc<dyn Store>) {
    let chat = chat_with(&store, &["u1", "a1"]).await;
    let (u1, a1) = (user("u1", Role::User), user("a1", Role::Admin));
    let save = |from: &AuthUser, body: &str, delivered: bool| NewMessage {
        id: switchboard::domain::MessageId::generate(),
        chat_id: chat.id.clone(),
        sender: from.clone(),
        body: text(body),
        client_message_id: None,
        delivered,
    };
    let marks = || async { store.chat(&chat.id).await.unwrap().unwrap().delivered };
    let first = store.save_message(save(&u1, "hello", true)).await.unwrap();
    assert_eq!(first.into_inner().seq, 1);
    assert_eq!(marks().await, DeliveryMarks { user: 0, staff: 1 });
    store
        .save_message(save(&a1, "not yet", false))
        .await
        .unwrap();
    assert_eq!(marks().await, DeliveryMarks { user: 0, staff: 1 });
    // A preview that reads like a field path is kept as written.
    let third = store
        .save_message(save(&a1, "$100 refund", true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(third.seq, 3);
    assert_eq!(marks().await, DeliveryMarks { user: 3, staff: 1 });
    let loaded = store.chat(&chat.id).await.unwrap().unwrap();
    assert_eq!(
        loaded.last_message.map(|l| l.text),
        Some("$100 refund".to_owned())
    );
    // The marks never move back: a mark written ahead stays where it is.
    assert!(
        store
            .advance_delivered(&chat.id, Side::Staff, 9)
            .await
            .unwrap()
    );
    store.save_message(save(&u1, "later", true)).await.unwrap();
    assert_eq!(marks().await, DeliveryMarks { user: 3, staff: 9 });
    let history = store
        .messages(&chat.id, HistoryPage::After(0), 10)
        .await
        .unwrap();
    assert_eq!(history.len(), 4, "every save kept its message");
}

/// Three store instances on one backing database race to move one mark: every forward move
/// lands at most once, none moves it back, and it ends at the highest `seq` written.
pub async fn concurrent_forward_only_from_three_stores(stores: [Arc<dyn Store>; 3]) {
    let chat = chat_with(&stores[0], &["u1"]).await;
    let mut tasks = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        let (store, chat) = (store.clone(), chat.id.clone());
        tasks.push(tokio::spawn(async move {
            let mut moved = Vec::new();
            // Interleaved: store i writes i+1, i+4, ... so every seq 1..=60 is written once.
            for seq in (1..=60u64).filter(|s| (s - 1) % 3 == i as u64) {
                if store
                    .advance_delivered(&chat, Side::Staff, seq)
                    .await
                    .unwrap()
                {
                    moved.push(seq);
                }
                let now = store.chat(&chat).await.unwrap().unwrap().delivered.staff;
                assert!(
                    now >= seq,
                    "a mark never reads below what its writer saw land"
                );
            }
            moved
        }));
    }
    let mut moved = Vec::new();
    for t in tasks {
        moved.extend(t.await.unwrap());
    }
    let mut unique = moved.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        moved.len(),
        "each seq moved the mark at most once"
    );
    assert!(moved.contains(&60));
    for store in &stores {
        let chat = store.chat(&chat.id).await.unwrap().unwrap();
        assert_eq!(chat.delivered.staff, 60);
        assert_eq!(chat.delivered.user, 0);
    }
}

pub async fn legacy_object_id_uploads_still_round_trip(store: Arc<dyn Store>) {
    // Files saved before ids became random have 24-hex-digit ids; they must still open.
    let id = FileId::parse(&new_object_id()).unwrap();
    let meta = FileMeta {
        id: id.clone(),
        file_name: "old.txt".into(),
        content_type: "text/plain".into(),
        size: 3,
        uploaded_by: "u1".into(),
        created_at: now(),
    };
    store
        .save_upload(
            meta.clone(),
            Box::new(std::io::Cursor::new(b"old".to_vec())),
        )
        .await
        .unwrap();
    let (m, data) = store.upload(&id).await.unwrap().expect("old file found");
    assert_eq!(m, meta);
    let data = switchboard::store::read_to_end(data).await.unwrap();
    assert_eq!(&data[..], b"old");
}

pub async fn file_is_shared_only_through_chats_the_user_is_in(store: Arc<dyn Store>) {
    let shared = chat_with(&store, &["u1", "u2"]).await;
    let other = chat_with(&store, &["u3"]).await;
    let url = "/api/files/0123456789abcdef0123456789abcdef?sig=abc";
    let absolute = format!("https://chat.example{url}");
    let u1 = user("u1", Role::User);
    send(&store, &shared.id, &u1, "before", None).await;
    send(&store, &other.id, &user("u3", Role::User), "hello", None).await;
    store
        .save_message(NewMessage {
            id: switchboard::domain::MessageId::generate(),
            chat_id: shared.id.clone(),
            sender: u1.clone(),
            body: MessageBody {
                content: String::new(),
                kind: MessageType::File,
                file_url: Some(absolute.clone()),
                file_name: Some("a.png".into()),
            },
            client_message_id: None,
            delivered: false,
        })
        .await
        .unwrap();
    let forms = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // Either form the deployment issued matches; a participant sees it, an outsider does not.
    assert!(
        store
            .file_shared_with("u2", &forms(&[&absolute]))
            .await
            .unwrap()
    );
    assert!(
        store
            .file_shared_with("u2", &forms(&[url, &absolute]))
            .await
            .unwrap()
    );
    assert!(
        !store
            .file_shared_with("u3", &forms(&[url, &absolute]))
            .await
            .unwrap()
    );
    assert!(
        !store
            .file_shared_with("nobody", &forms(&[&absolute]))
            .await
            .unwrap()
    );
    // Only the exact URL counts: another file's URL, or a prefix of this one, does not.
    assert!(!store.file_shared_with("u2", &forms(&[url])).await.unwrap());
    assert!(
        !store
            .file_shared_with("u2", &forms(&["https://chat.example/api/files/0123"]))
            .await
            .unwrap()
    );
    assert!(!store.file_shared_with("u2", &[]).await.unwrap());
}

/// Instantiates every contract check as a test for one backend. `$factory` is an async fn
/// returning `(Arc<dyn Store>, guard)`; the guard lives as long as the test.
#[macro_export]
macro_rules! contract_tests {
    ($backend:ident, $factory:path) => {
        mod $backend {
            use super::*;
            macro_rules! check {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let (store, _guard) = $factory().await;
                        $crate::store_contract::$name(store).await;
                    }
                };
            }
            check!(chat_round_trips);
            check!(seq_is_dense_and_increasing_per_chat);
            check!(concurrent_senders_get_distinct_seqs);
            check!(client_message_id_retry_returns_first_save);
            check!(saving_into_a_missing_chat_is_not_found);
            check!(history_pages_both_ways);
            check!(mark_read_touches_only_others_messages_up_to_seq);
            check!(chat_lists_filter_page_and_count_unread);
            check!(update_chat_assigns_admin_as_participant);
            check!(chat_partners_are_those_of_open_chats);
            check!(chat_partners_of_several_users_match_one_by_one);
            check!(reports_list_newest_first_and_mark_read);
            check!(uploads_round_trip);
            check!(delivery_marks_move_forward_only);
            check!(a_save_that_delivers_moves_the_recipients_mark);
            check!(legacy_object_id_uploads_still_round_trip);
            check!(file_is_shared_only_through_chats_the_user_is_in);
            check!(the_queue_is_oldest_first_and_an_assignment_takes_a_chat_out_once);
            check!(loads_count_open_chats_and_the_latest_assignment);
            check!(a_requeue_takes_the_agent_out_only_if_they_still_hold_the_chat);
            check!(a_late_write_of_an_earlier_pass_cannot_pass_the_capacity);
            check!(a_change_id_is_recorded_with_its_write_only);
        }
    };
}

async fn embedded_store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = switchboard::store::EmbeddedStore::open(dir.path()).unwrap();
    (Arc::new(store), dir)
}

contract_tests!(embedded, embedded_store);

/// The embedded store counts an agent's load inside the assignment write (a `PATCH` at the same
/// moment included); MongoDB cannot, and fences passes instead (see the contract's
/// `a_late_write_of_an_earlier_pass_cannot_pass_the_capacity`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_an_assignment_write_refuses_an_agent_at_capacity() {
    let (store, _dir) = embedded_store().await;
    an_assignment_write_refuses_an_agent_at_capacity(store).await;
}

/// Three embedded stores on one `DATA_DIR` (three connections, as two nodes on one host).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_concurrent_forward_only_from_three_stores() {
    let dir = tempfile::tempdir().unwrap();
    let open = || -> Arc<dyn Store> {
        Arc::new(switchboard::store::EmbeddedStore::open(dir.path()).unwrap())
    };
    concurrent_forward_only_from_three_stores([open(), open(), open()]).await;
}
