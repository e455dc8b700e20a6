//! A node over real sockets: handshake, messages, typing, reads, reports, presence, REST,
//! authorization, bad input and restarts.

use serde_json::json;
use switchboard::domain::Role;

use crate::helpers::{ConnectError, Sio, TestNode};

#[tokio::test]
async fn message_send_is_saved_then_delivered_to_participants_and_staff() {
    let node = TestNode::start().await;
    let user = node.socket("u1", Role::User).await;
    let admin = node.socket("a1", Role::Admin).await;
    let chat = node.open_chat(&node.token("u1", Role::User)).await;

    let ack = user
        .ack(
            "message:send",
            json!({ "chatId": chat, "message": { "content": "  hello  " } }),
        )
        .await;

    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["message"]["content"], "hello");
    assert_eq!(ack["message"]["seq"], 1);
    assert_eq!(ack["message"]["senderId"], "u1");
    let seen_by_admin = admin.event("message:new").await;
    assert_eq!(seen_by_admin["message"]["id"], ack["message"]["id"]);
    let seen_by_sender = user.event("message:new").await;
    assert_eq!(seen_by_sender["chatId"], chat.as_str());
}

#[tokio::test]
async fn missing_or_bad_token_is_refused_at_handshake() {
    let node = TestNode::start().await;
    for auth in [
        None,
        Some(json!({ "token": "nope" })),
        Some(json!({ "token": 42 })),
    ] {
        match Sio::connect_with(node.port, auth.clone()).await {
            Err(ConnectError::Refused(m)) => {
                assert!(m.starts_with("UNAUTHORIZED"), "{auth:?}: {m}")
            }
            Ok(_) => panic!("{auth:?} connected"),
            Err(e) => panic!("{auth:?}: {e:?}"),
        }
    }
}

#[tokio::test]
async fn expired_token_is_refused_at_handshake() {
    let node = TestNode::start().await;
    let expired = node
        .state
        .keys
        .verifier
        .issue("u1", Role::User, None, std::time::Duration::ZERO)
        .unwrap();
    // Issued with exp = now: still inside the 30 s leeway, so it must be accepted...
    assert!(Sio::connect(node.port, Some(&expired)).await.is_ok());
    // ...while one that expired well past the leeway is refused.
    let secret = b"integration-test-secret-0123456789";
    let claims = json!({ "id": "u1", "role": "user", "exp": chrono::Utc::now().timestamp() - 120 });
    let old = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap();
    match Sio::connect(node.port, Some(&old)).await {
        Err(ConnectError::Refused(m)) => assert!(m.starts_with("UNAUTHORIZED"), "{m}"),
        other => panic!("expired token: {:?}", other.map(|s| s.sid)),
    }
    let bad_role =
        json!({ "id": "u1", "role": "root", "exp": chrono::Utc::now().timestamp() + 60 });
    let t = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &bad_role,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap();
    assert!(matches!(
        Sio::connect(node.port, Some(&t)).await,
        Err(ConnectError::Refused(_))
    ));
}

#[tokio::test]
async fn non_participant_is_forbidden_and_learns_nothing() {
    let node = TestNode::start().await;
    let owner = node.socket("u1", Role::User).await;
    let outsider = node.socket("u2", Role::User).await;
    let chat = node.open_chat(&node.token("u1", Role::User)).await;
    let own_chat = node.open_chat(&node.token("u2", Role::User)).await;

    let refused = outsider
        .ack(
            "message:send",
            json!({ "chatId": chat, "message": { "content": "let me in" } }),
        )
        .await;
    assert_eq!(refused["ok"], false);
    assert_eq!(refused["error"]["code"], "FORBIDDEN");
    assert!(
        !refused.to_string().contains("u1"),
        "nothing about the chat is revealed: {refused}"
    );
    for (event, payload) in [
        ("user:typing:start", json!({ "chatId": chat })),
        (
            "message:read",
            json!({ "chatId": chat, "messageId": "0123456789abcdef01234567" }),
        ),
        ("chat:sync", json!({ "chatId": chat, "afterSeq": 0 })),
    ] {
        let r = outsider.ack(event, payload).await;
        assert_eq!(r["error"]["code"], "FORBIDDEN", "{event}: {r}");
    }
    let (status, body) = node
        .call(
            reqwest::Method::GET,
            &format!("/api/chats/{chat}"),
            Some(&node.token("u2", Role::User)),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("FORBIDDEN"))
    );

    // The owner's message never reaches the outsider: the outsider's own later message arrives
    // first and alone.
    owner
        .ack(
            "message:send",
            json!({ "chatId": chat, "message": { "content": "private" } }),
        )
        .await;
    outsider
        .ack(
            "message:send",
            json!({ "chatId": own_chat, "message": { "content": "mine" } }),
        )
        .await;
    let got = outsider.event("message:new").await;
    assert_eq!(got["chatId"], own_chat.as_str());
    assert!(outsider.drain("message:new").is_empty());
}

#[tokio::test]
async fn client_message_id_retry_returns_the_first_save_and_emits_nothing() {
    let node = TestNode::start().await;
    let user = node.socket("u1", Role::User).await;
    let chat = node.open_chat(&node.token("u1", Role::User)).await;
    let send =
        json!({ "chatId": chat, "message": { "content": "once" }, "clientMessageId": "c-1" });

    let first = user.ack("message:send", send.clone()).await;
    user.event("message:new").await;
    let retry = user.ack("message:send", send).await;
    let next = user
        .ack(
            "message:send",
            json!({ "chatId": chat, "message": { "content": "two" } }),
        )
        .await;

    assert_eq!(retry["message"], first["message"]);
    assert_eq!(next["message"]["seq"], 2, "the retry used up no seq");
    let after = user.event("message:new").await;
    assert_eq!(
        after["message"]["content"], "two",
        "the retry emitted nothing"
    );
}

#[tokio::test]
async fn typing_reaches_others_but_not_the_typers_own_tabs_and_ends_by_itself() {
    let node = TestNode::start().await;
    let tab1 = node.socket("u1", Role::User).await;
    let tab2 = node.socket("u1", Role::User).await;
    let admin = node.socket("a1", Role::Admin).await;
    let chat = node.open_chat(&node.token("u1", Role::User)).await;

    let ack = tab1
        .ack("user:typing:start", json!({ "chatId": chat }))
        .await;
    assert_eq!(ack["ok"], true);
    let started = admin.event("user:typing").await;
    assert_eq!(
        started,
        json!({ "chatId": chat, "userId": "u1", "userName": "u1 name", "isTyping": true })
    );
    let ended = admin
        .try_event("user:typing", std::time::Duration::from_secs(6))
        .await
        .expect("typing ends by itself");
    assert_eq!(ended["isTyping"], false);
    assert!(tab1.drain("user:typing").is_empty() && tab2.drain("user:typing").is_empty());
}

#[tokio::test]
async fn read_receipts_mark_others_messages_and_reach_participants() {
    let node = TestNode::start().await;
    let user = node.socket("u1", Role::User).await;
    let admin = node.socket("a1", Role::Admin).await;
    let chat = node.open_chat(&node.token("u1", Role::User)).await;
    let m1 = admin
        .ack(
            "message:send",
            json!({ "chatId": chat, "message": { "content": "hi" } }),
        )
        .await;
    let m2 = admin
        .ack(
            "message:send",
            json!({ "chatId": chat, "message": { "content": "there" } }),
        )
        .await;

    let id = m1["message"]["id"].as_str().unwrap();
    let ack = user
        .ack("message:read", json!({ "chatId": chat, "messageId": id }))
        .await;
    assert_eq!(ack["ok"], true);
    let receipt = admin.event("message:read").await;
    assert_eq!(
        (receipt["messageId"].as_str(), receipt["readBy"].as_str()),
        (Some(id), Some("u1"))
    );
    // The user is online: the second message is delivered (live), not read.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let d = admin
            .try_event("message:delivered", std::time::Duration::from_secs(10))
            .await
            .expect("message:delivered");
        if d["messageId"] == m2["message"]["id"] || std::time::Instant::now() > deadline {
            break;
        }
    }
    let (_, history) = node
        .call(
            reqwest::Method::GET,
            &format!("/api/chats/{chat}/messages?afterSeq=0"),
            Some(&node.token("u1", Role::User)),
            None,
        )
        .await;
    let status: Vec<_> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(status, vec!["read", "delivered"]);
}

#[tokio::test]
async fn user_status_changes_only_when_the_first_tab_opens_and_the_last_closes() {
    let node = TestNode::start().await;
    let admin = node.socket("a1", Role::Admin).await;
    let tab1 = node.socket("u1", Role::User).await;
    assert_eq!(
        admin.event("user:status").await,
        json!({ "userId": "u1", "status": "online" })
    );
    let tab2 = node.socket("u1", Role::User).await;
    // A socket joins presence just after its CONNECT answer: closing tab1 before tab2 is
    // registered would rightly announce offline (OFFLINE_GRACE_SECS is 0 here), then online.
    assert!(
        crate::helpers::eventually(crate::helpers::WAIT, || async {
            node.user_status("u1").await["sockets"].as_u64() == Some(2)
        })
        .await,
        "both tabs registered"
    );
    tab1.close();
    assert!(tab1.closed(crate::helpers::WAIT).await);
    // The client sees its close before the node has unregistered the socket: wait for the
    // node's count to drop, then the user must still be online on tab2.
    assert!(
        crate::helpers::eventually(crate::helpers::WAIT, || async {
            node.user_status("u1").await["sockets"].as_u64() == Some(1)
        })
        .await,
        "tab1 unregistered"
    );
    let s = node.user_status("u1").await;
    assert_eq!(
        (s["status"].as_str(), s["sockets"].as_u64()),
        (Some("online"), Some(1))
    );
    tab2.close();
    assert_eq!(
        admin.event("user:status").await,
        json!({ "userId": "u1", "status": "offline" })
    );
    let more = admin.drain("user:status");
    assert!(
        more.is_empty(),
        "one transition each way, never one per tab: then {more:?}"
    );
}

#[tokio::test]
async fn reports_go_to_their_user_and_only_staff_send_them() {
    let node = TestNode::start().await;
    let admin = node.socket("a1", Role::Admin).await;
    let user = node.socket("u1", Role::User).await;
    let report = json!({ "userId": "u1", "orderId": "o-9", "title": "Payment", "message": "Received", "status": "Info", "sentBy": "someone-else" });

    let ack = admin.ack("sendReportMessage", report.clone()).await;
    assert_eq!(
        (ack["ok"].as_bool(), ack["success"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(
        ack["message"]["sentBy"], "a1",
        "sentBy comes from the token"
    );
    assert_eq!(admin.event("reportMessageSent").await, ack);
    let got = user.event("receiveReportMessage").await;
    assert_eq!(got["success"], true);
    assert_eq!(got["message"]["id"], ack["message"]["id"]);

    let refused = user.ack("sendReportMessage", report).await;
    assert_eq!(
        (refused["ok"].as_bool(), refused["error"]["code"].as_str()),
        (Some(false), Some("FORBIDDEN"))
    );
    assert_eq!(user.event("reportMessageSent").await["success"], false);

    let id = ack["message"]["id"].as_str().unwrap();
    let staff_read = admin.ack("report:read", json!({ "reportId": id })).await;
    assert_eq!(staff_read["error"]["code"], "FORBIDDEN");
    let read = user.ack("report:read", json!({ "reportId": id })).await;
    assert_eq!(read["ok"], true);
    let seen = admin.event("report:read").await;
    assert_eq!(
        (seen["reportId"].as_str(), seen["userId"].as_str()),
        (Some(id), Some("u1"))
    );
    assert!(
        user.drain("error").is_empty(),
        "sendReportMessage failures never use the error event"
    );
}

#[tokio::test]
async fn malformed_payloads_get_validation_and_other_sockets_never_notice() {
    let node = TestNode::start().await;
    let bystander = node.socket("u9", Role::User).await;
    let attacker = node.socket("u1", Role::User).await;
    let chat = node.open_chat(&node.token("u1", Role::User)).await;
    let bystander_chat = node.open_chat(&node.token("u9", Role::User)).await;
    let deep = (0..300).fold(json!(1), |v, _| json!([v]));
    let cases = [
        ("message:send", json!("not an object")),
        (
            "message:send",
            json!({ "chatId": 5, "message": { "content": "x" } }),
        ),
        ("message:send", json!({ "chatId": chat })),
        (
            "message:send",
            json!({ "chatId": chat, "message": { "content": "x".repeat(5001) } }),
        ),
        (
            "message:send",
            json!({ "chatId": chat, "message": { "content": "x", "type": "video" } }),
        ),
        (
            "message:send",
            json!({ "chatId": chat, "message": { "type": "file", "fileUrl": "http://evil/x", "fileName": "x" } }),
        ),
        (
            "message:send",
            json!({ "chatId": chat, "message": { "content": "x" }, "clientMessageId": "c".repeat(65) }),
        ),
        (
            "message:send",
            json!({ "chatId": "not-an-id", "message": { "content": "x" } }),
        ),
        ("message:send", deep),
        ("chat:sync", json!({ "chatId": chat, "afterSeq": -1 })),
        (
            "chat:sync",
            json!({ "chatId": chat, "afterSeq": 0, "limit": 0 }),
        ),
        (
            "chat:sync",
            json!({ "chatId": chat, "afterSeq": 0, "limit": "x" }),
        ),
        ("message:read", json!({ "chatId": chat })),
        ("user:typing:start", json!({})),
        ("report:read", json!({ "reportId": 1 })),
        ("sendReportMessage", json!({ "userId": "u1" })),
        ("user:online", json!({})),
        ("joinUserRoom", json!({ "room": "admins" })),
        ("no:such:event", json!({})),
    ];
    for (event, payload) in cases {
        let r = attacker.ack(event, payload.clone()).await;
        assert_eq!(r["ok"], false, "{event} {payload}: {r}");
        let code = r["error"]["code"].as_str().unwrap_or_default();
        assert!(
            code == "VALIDATION" || (event == "sendReportMessage" && code == "FORBIDDEN"),
            "{event}: {r}"
        );
    }
    // Without an ack, the failure comes as the `error` event naming the event.
    attacker.emit("message:send", json!({ "chatId": chat }));
    let err = attacker.event("error").await;
    assert_eq!(
        (err["error"].as_str(), err["event"].as_str()),
        (Some("VALIDATION"), Some("message:send"))
    );
    // A binary attachment where JSON is expected.
    let placeholder = json!({ "_placeholder": true, "num": 0 });
    let r = attacker
        .ack_binary(
            "message:send",
            json!({ "chatId": chat, "message": placeholder }),
            vec![0xde, 0xad, 0xbe, 0xef],
        )
        .await;
    assert_eq!(r["error"]["code"], "VALIDATION", "{r}");
    let r = attacker
        .ack_binary(
            "message:send",
            json!({ "chatId": chat, "message": { "content": placeholder } }),
            vec![1, 2],
        )
        .await;
    assert_eq!(r["error"]["code"], "VALIDATION", "{r}");
    // Nothing was saved, and the bystander is still served.
    let (_, history) = node
        .call(
            reqwest::Method::GET,
            &format!("/api/chats/{chat}/messages"),
            Some(&node.token("u1", Role::User)),
            None,
        )
        .await;
    assert_eq!(history["messages"], json!([]));
    let ok = bystander
        .ack(
            "message:send",
            json!({ "chatId": bystander_chat, "message": { "content": "still here" } }),
        )
        .await;
    assert_eq!(ok["ok"], true);
    let ok = attacker
        .ack(
            "message:send",
            json!({ "chatId": chat, "message": { "content": "recovered" } }),
        )
        .await;
    assert_eq!(ok["message"]["seq"], 1);
}

#[tokio::test]
async fn a_flooding_socket_is_rate_limited_and_stays_connected() {
    let node = TestNode::start_with(|c| c.rate_limit_per_sec = 5).await;
    let user = node.socket("u1", Role::User).await;
    let chat = node.open_chat(&node.token("u1", Role::User)).await;
    let mut limited = 0;
    for _ in 0..30 {
        let r = user
            .ack("chat:sync", json!({ "chatId": chat, "afterSeq": 0 }))
            .await;
        if r["error"]["code"] == "RATE_LIMITED" {
            limited += 1;
        }
    }
    assert!(
        limited >= 15,
        "most of a 30-event burst over a 5/s limit is refused ({limited})"
    );
    // Typing over the limit is dropped silently and still acked ok.
    let typing = user
        .ack("user:typing:start", json!({ "chatId": chat }))
        .await;
    assert_eq!(typing["ok"], true);
    assert!(
        !user.closed(std::time::Duration::from_millis(10)).await,
        "still connected"
    );
}

#[tokio::test]
async fn history_reports_and_uploads_survive_a_restart_on_the_same_data_dir() {
    let node = TestNode::start().await;
    let (user_token, admin_token) = (node.token("u1", Role::User), node.token("a1", Role::Admin));
    let user = node.socket("u1", Role::User).await;
    let chat = node.open_chat(&user_token).await;
    for text in ["one", "two", "three"] {
        user.ack(
            "message:send",
            json!({ "chatId": chat, "message": { "content": text } }),
        )
        .await;
    }
    let (status, report) = node
        .call(
            reqwest::Method::POST,
            "/api/reports",
            Some(&admin_token),
            Some(json!({ "userId": "u1", "title": "T", "message": "M", "status": "Warning" })),
        )
        .await;
    assert_eq!(status, 201);
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"hello file".to_vec())
            .file_name("a.txt")
            .mime_str("text/plain")
            .unwrap(),
    );
    let up: serde_json::Value = node
        .http
        .post(node.url("/api/uploads"))
        .bearer_auth(&user_token)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let file_url = up["fileUrl"].as_str().unwrap().to_owned();
    user.close();
    let data = node.data.clone();
    node.stop().await;

    let node = TestNode::start_in(data, |_| {}).await;
    let (_, history) = node
        .call(
            reqwest::Method::GET,
            &format!("/api/chats/{chat}/messages?afterSeq=0"),
            Some(&user_token),
            None,
        )
        .await;
    let texts: Vec<_> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, vec!["one", "two", "three"]);
    let (_, reports) = node
        .call(
            reqwest::Method::GET,
            "/api/reports",
            Some(&user_token),
            None,
        )
        .await;
    assert_eq!(reports["reports"][0]["id"], report["id"]);
    let file = node.http.get(node.url(&file_url)).send().await.unwrap();
    assert_eq!(file.status(), 200);
    assert_eq!(file.bytes().await.unwrap().as_ref(), b"hello file");
    let user = node.socket("u1", Role::User).await;
    let next = user
        .ack(
            "message:send",
            json!({ "chatId": chat, "message": { "content": "four" } }),
        )
        .await;
    assert_eq!(next["message"]["seq"], 4, "seq continues after a restart");
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let node = TestNode::start().await;
    let (status, _) = node
        .call(reqwest::Method::GET, "/healthz", None, None)
        .await;
    assert_eq!(status, 200);
    // The details are for staff; anyone else learns ready or not (see `sec_http.rs`).
    let staff = node.token("ops", Role::Admin);
    let (status, body) = node
        .call(reqwest::Method::GET, "/readyz", Some(&staff), None)
        .await;
    assert_eq!(
        (status, body["store"].as_str(), body["adapter"].as_str()),
        (200, Some("ok"), Some("ok"))
    );
    let metrics = node
        .http
        .get(node.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("switchboard_sockets_connected"));
}

#[tokio::test]
async fn production_refuses_to_start_without_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = switchboard::Config::for_tests(dir.path().to_owned());
    cfg.environment = switchboard::config::Environment::Production;
    let err = switchboard::Application::build(cfg)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("JWT_SECRET"), "{err}");
}

#[tokio::test]
async fn asymmetric_tokens_verify_with_the_public_key_and_the_algorithm_is_pinned() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let node = TestNode::start_with(|c| {
        c.jwt_secret = None;
        c.jwt_algorithm = switchboard::config::JwtAlgorithm::EdDSA;
        c.jwt_public_key_file = Some(fixtures.join("test-ed25519-public.pem"));
    })
    .await;
    let private = std::fs::read(fixtures.join("test-ed25519-private.pem")).unwrap();
    let claims = json!({ "sub": "u1", "role": "user", "exp": chrono::Utc::now().timestamp() + 60 });
    let ed = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_pem(&private).unwrap(),
    )
    .unwrap();
    let socket = Sio::connect(node.port, Some(&ed))
        .await
        .expect("EdDSA token accepted");
    let chat = node.open_chat(&ed).await;
    let ack = socket
        .ack(
            "message:send",
            json!({ "chatId": chat, "message": { "content": "signed elsewhere" } }),
        )
        .await;
    assert_eq!(
        ack["message"]["senderId"], "u1",
        "`sub` names the user when `id` is absent"
    );

    // An HS256 token is refused even if it were signed with the public key's bytes.
    let public = std::fs::read(fixtures.join("test-ed25519-public.pem")).unwrap();
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert!(matches!(
        Sio::connect(node.port, Some(&hs)).await,
        Err(ConnectError::Refused(_))
    ));
    let (status, _) = node
        .call(reqwest::Method::GET, "/api/chats", Some(&hs), None)
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn token_command_signs_with_the_development_secret_kept_in_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_switchboard");
    let out = std::process::Command::new(bin)
        .args([
            "token", "--id", "alice", "--role", "admin", "--name", "Alice", "--ttl", "10m",
        ])
        .env_clear()
        .env("DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let node = TestNode::start_in(std::sync::Arc::new(dir), |c| c.jwt_secret = None).await;
    let (status, body) = node
        .call(
            reqwest::Method::GET,
            "/api/users/alice/status",
            Some(&token),
            None,
        )
        .await;
    assert_eq!((status, body["userId"].as_str()), (200, Some("alice")));
}
