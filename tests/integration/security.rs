//! Hardening rules (issue #13) as an attacker meets them: tokens over real sockets and real
//! HTTP, file access over real HTTP, `fileUrl` over a real socket, and the modes of `DATA_DIR`
//! on disk after a real node started on it.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::domain::Role;

use crate::helpers::{ConnectError, SECRET, Sio, TestNode};

/// Signs `claims` with the test nodes' HS256 secret, as any holder of the key could.
fn signed(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token encodes")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The token is refused both at the Socket.IO handshake and on REST.
async fn assert_refused(node: &TestNode, token: &str, why: &str) {
    match Sio::connect(node.port, Some(token)).await {
        Err(ConnectError::Refused(m)) => assert!(m.starts_with("UNAUTHORIZED"), "{why}: {m}"),
        Ok(_) => panic!("{why}: the socket connected"),
        Err(e) => panic!("{why}: {e:?}"),
    }
    let (status, body) = node
        .call(Method::GET, "/api/reports/unread-count", Some(token), None)
        .await;
    assert_eq!(status, 401, "{why}: REST {body}");
    assert_eq!(body["error"]["code"], "UNAUTHORIZED", "{why}");
}

/// The token is accepted both at the handshake and on REST.
async fn assert_accepted(node: &TestNode, token: &str, why: &str) {
    if let Err(e) = Sio::connect(node.port, Some(token)).await {
        panic!("{why}: refused: {e:?}");
    }
    let (status, body) = node
        .call(Method::GET, "/api/reports/unread-count", Some(token), None)
        .await;
    assert_eq!(status, 200, "{why}: REST {body}");
}

#[tokio::test]
async fn token_ids_with_control_characters_or_too_long_are_refused() {
    let node = TestNode::start().await;
    let exp = now() + 600;
    for (id, why) in [
        ("u1\nforged log line", "newline (C0) in id"),
        ("u1\u{7f}", "DEL in id"),
        ("u1\u{85}", "NEL (C1) in id"),
        ("", "empty id"),
    ] {
        let t = signed(json!({ "id": id, "role": "user", "exp": exp }));
        assert_refused(&node, &t, why).await;
    }
    let long = "x".repeat(65);
    assert_refused(
        &node,
        &signed(json!({ "id": long, "role": "user", "exp": exp })),
        "65-character id",
    )
    .await;
    // `id` wins over `sub`: a bad `id` is not rescued by a good `sub`.
    assert_refused(
        &node,
        &signed(json!({ "id": "a\tb", "sub": "u1", "role": "user", "exp": exp })),
        "bad id beside a good sub",
    )
    .await;
    // 64 code points (multi-byte ones) is the limit, and `sub` alone is enough.
    let sixty_four = "é".repeat(64);
    assert_accepted(
        &node,
        &signed(json!({ "sub": sixty_four, "role": "user", "exp": exp })),
        "64-character sub",
    )
    .await;
}

#[tokio::test]
async fn token_names_that_are_too_long_or_carry_control_characters_are_refused() {
    let node = TestNode::start().await;
    let exp = now() + 600;
    for (name, why) in [
        ("n".repeat(101), "101-character name"),
        ("n".repeat(10_000), "10,000-character name"),
        ("Ann\r\nSet-Cookie: x".to_owned(), "CRLF in name"),
        ("Ann\u{9b}".to_owned(), "CSI (C1) in name"),
    ] {
        let t = signed(json!({ "id": "u1", "name": name, "role": "user", "exp": exp }));
        assert_refused(&node, &t, why).await;
    }
    let t = signed(json!({ "id": "u1", "name": "ñ".repeat(100), "role": "user", "exp": exp }));
    assert_accepted(&node, &t, "100-character name").await;
    let t = signed(json!({ "id": "u1", "role": "user", "exp": exp }));
    assert_accepted(&node, &t, "no name").await;
}

#[tokio::test]
async fn not_yet_valid_token_is_refused_with_the_same_leeway_as_expiry() {
    let node = TestNode::start().await;
    let exp = now() + 600;
    let early = signed(json!({ "id": "u1", "role": "user", "exp": exp, "nbf": now() + 120 }));
    assert_refused(&node, &early, "nbf two minutes ahead").await;
    // Inside the 30 s leeway (clock skew between issuer and node) it is accepted.
    let skewed = signed(json!({ "id": "u1", "role": "user", "exp": exp, "nbf": now() + 10 }));
    assert_accepted(&node, &skewed, "nbf 10 s ahead").await;
    let past = signed(json!({ "id": "u1", "role": "user", "exp": exp, "nbf": now() - 10 }));
    assert_accepted(&node, &past, "nbf in the past").await;
}

#[tokio::test]
async fn configured_audience_and_issuer_are_required() {
    let node = TestNode::start_with(|c| {
        c.jwt_audience = Some("switchboard".into());
        c.jwt_issuer = Some("https://auth.example".into());
    })
    .await;
    let exp = now() + 600;
    let good = json!({ "id": "u1", "role": "user", "exp": exp,
                       "aud": "switchboard", "iss": "https://auth.example" });
    assert_accepted(&node, &signed(good.clone()), "right aud and iss").await;
    // The node's own minted tokens carry both.
    assert_accepted(&node, &node.token("u1", Role::User), "minted token").await;
    for (field, value, why) in [
        ("aud", json!("billing"), "another service's audience"),
        ("iss", json!("https://other.example"), "another issuer"),
        ("aud", Value::Null, "no audience"),
        ("iss", Value::Null, "no issuer"),
    ] {
        let mut claims = good.clone();
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(field);
        } else {
            claims[field] = value;
        }
        assert_refused(&node, &signed(claims), why).await;
    }
}

/// Unix time now, in seconds with their fraction.
fn now_precise() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test]
async fn a_socket_is_closed_when_its_token_expires_and_one_with_a_long_token_stays() {
    // A 1 s leeway (JWT_LEEWAY_SECS), so the test takes seconds rather than half a minute.
    const LEEWAY: i64 = 1;
    let node = TestNode::start_with(|c| c.jwt_leeway_secs = LEEWAY as u64).await;
    let exp = now() + 2;
    let short_token = signed(json!({ "id": "short-lived", "role": "user", "exp": exp }));
    let short = Sio::connect(node.port, Some(&short_token))
        .await
        .expect("a token 2 s from expiry connects");
    let long = node.socket("long-lived", Role::User).await;
    let ack = short
        .ack("user:online", json!({ "userId": "short-lived" }))
        .await;
    assert_eq!(
        ack["ok"], true,
        "the short-lived socket works meanwhile: {ack}"
    );

    // The node must close it at exp + leeway; allow the once-a-second sweep and a little more.
    let deadline = (exp + LEEWAY) as f64;
    let bound = (deadline + 1.5 - now_precise()).max(0.0);
    let closed = short.closed(Duration::from_secs_f64(bound)).await;
    let closed_at = now_precise();
    eprintln!(
        "closed {:.2} s after exp + leeway",
        closed_at - (exp + LEEWAY) as f64
    );

    assert!(
        closed,
        "the socket of an expired token was still open {:.1} s past exp + leeway",
        closed_at - deadline
    );
    assert!(
        closed_at >= deadline,
        "closed {:.2} s before exp + leeway",
        deadline - closed_at
    );
    assert_eq!(node.state.metrics.sockets_expired.get(), 1);
    match Sio::connect(node.port, Some(&short_token)).await {
        Err(ConnectError::Refused(m)) => assert!(m.starts_with("UNAUTHORIZED"), "{m}"),
        other => panic!("the expired token reconnected: {:?}", other.map(|s| s.sid)),
    }
    assert!(
        !long.closed(Duration::ZERO).await,
        "the long-lived socket was closed"
    );
    let ack = long
        .ack("user:online", json!({ "userId": "long-lived" }))
        .await;
    assert_eq!(ack["ok"], true, "the long-lived socket still works: {ack}");
}

/// The permission bits of `path`.
#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[tokio::test]
async fn fresh_data_dir_and_its_files_are_private() {
    let parent = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let dir = parent.path().join("data");
    let d = dir.clone();
    let node = TestNode::start_in(parent.clone(), move |c| {
        c.data_dir = d;
        c.jwt_secret = None; // the development secret is kept in DATA_DIR
    })
    .await;
    let token = node.token("u1", Role::User);
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"secret notes".to_vec()).file_name("notes.txt"),
    );
    let res = node
        .http
        .post(node.url("/api/uploads"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let uploaded: Value = res.json().await.unwrap();

    assert_eq!(mode(&dir), 0o700, "DATA_DIR");
    assert_eq!(mode(&dir.join("uploads")), 0o700, "uploads/");
    for name in [
        "switchboard.db",
        "switchboard.db-wal",
        "switchboard.db-shm",
        "jwt-secret",
    ] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    let file = dir
        .join("uploads")
        .join(uploaded["fileId"].as_str().unwrap());
    assert_eq!(mode(&file), 0o600, "an uploaded file");
    node.stop().await;
}

#[cfg(unix)]
#[tokio::test]
async fn existing_loose_data_dir_and_secret_are_made_private() {
    use std::os::unix::fs::PermissionsExt;
    let parent = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let dir = parent.path().join("data");
    std::fs::create_dir_all(dir.join("uploads")).unwrap();
    std::fs::write(
        dir.join("jwt-secret"),
        "an-existing-development-secret-0123",
    )
    .unwrap();
    for (path, m) in [
        (dir.clone(), 0o755),
        (dir.join("uploads"), 0o755),
        (dir.join("jwt-secret"), 0o644),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
    }
    let d = dir.clone();
    let node = TestNode::start_in(parent.clone(), move |c| {
        c.data_dir = d;
        c.jwt_secret = None;
    })
    .await;
    // The existing secret is kept (tokens it signed still work) but no longer readable by others.
    let t = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "id": "u1", "role": "user", "exp": now() + 60 }),
        &jsonwebtoken::EncodingKey::from_secret(b"an-existing-development-secret-0123"),
    )
    .unwrap();
    let (status, _) = node
        .call(Method::GET, "/api/reports/unread-count", Some(&t), None)
        .await;
    assert_eq!(status, 200, "the existing secret is still the one in use");
    assert_eq!(mode(&dir.join("jwt-secret")), 0o600, "jwt-secret fixed");
    assert_eq!(mode(&dir), 0o700, "DATA_DIR fixed");
    assert_eq!(mode(&dir.join("uploads")), 0o700, "uploads/ fixed");
    node.stop().await;
}

/// Uploads `bytes` as `token`'s user; returns the `201` body.
async fn upload(node: &TestNode, token: &str, bytes: &[u8]) -> Value {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes.to_vec()).file_name("private.txt"),
    );
    let res = node
        .http
        .post(node.url("/api/uploads"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

/// `GET /api/files/{id}` with a Bearer token and no `sig`: the status.
async fn fetch_with_token(node: &TestNode, id: &str, token: &str) -> u16 {
    node.http
        .get(node.url(&format!("/api/files/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn file_ids_cannot_be_guessed_from_neighbouring_ids() {
    let node = TestNode::start().await;
    let token = node.token("u1", Role::User);
    let a = upload(&node, &token, b"a").await["fileId"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = upload(&node, &token, b"b").await["fileId"]
        .as_str()
        .unwrap()
        .to_owned();
    // At least 120 random bits: 32 hex digits, and two ids made back to back share no
    // time-and-process prefix (ObjectId-like ids shared their first 18 digits).
    assert!(a.len() >= 30 && b.len() >= 30, "{a} {b}");
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    assert!(common < 8, "{a} and {b} share a {common}-digit prefix");
}

#[tokio::test]
async fn a_token_opens_a_file_only_for_its_uploader_staff_and_chat_participants() {
    let node = TestNode::start().await;
    let owner = node.token("owner", Role::User);
    let partner = node.token("partner", Role::User);
    let stranger = node.token("stranger", Role::User);
    let admin = node.token("a1", Role::Admin);
    let kept = upload(&node, &owner, b"owner's secret").await;
    let id = kept["fileId"].as_str().unwrap().to_owned();
    let url = kept["fileUrl"].as_str().unwrap().to_owned();

    assert_eq!(fetch_with_token(&node, &id, &owner).await, 200, "uploader");
    assert_eq!(fetch_with_token(&node, &id, &admin).await, 200, "staff");
    // Someone else's valid token opens nothing, and learns nothing: the same 404 as a file
    // that does not exist.
    assert_eq!(fetch_with_token(&node, &id, &stranger).await, 404);
    assert_eq!(fetch_with_token(&node, &id, &partner).await, 404);
    let missing = "0123456789abcdef0123456789abcdef";
    assert_eq!(fetch_with_token(&node, missing, &stranger).await, 404);

    // Once the file is sent into a chat, that chat's participants may open it with a token.
    let (status, chat) = node
        .call(
            Method::POST,
            "/api/chats",
            Some(&admin),
            Some(json!({ "participantId": "partner" })),
        )
        .await;
    assert_eq!(status, 201, "{chat}");
    let chat_id = chat["id"].as_str().unwrap();
    let (status, msg) = node
        .call(
            Method::POST,
            &format!("/api/chats/{chat_id}/messages"),
            Some(&admin),
            Some(json!({ "message":
                { "content": "", "type": "file", "fileUrl": url, "fileName": "s.txt" } })),
        )
        .await;
    assert_eq!(status, 201, "{msg}");
    assert_eq!(
        fetch_with_token(&node, &id, &partner).await,
        200,
        "participant"
    );
    assert_eq!(
        fetch_with_token(&node, &id, &stranger).await,
        404,
        "still not others"
    );

    // A message in the stranger's own chat naming the file by an external URL does not count.
    let own_chat = node.open_chat(&stranger).await;
    let fake = format!("https://evil.example/api/files/{id}?sig=x");
    let (status, _) = node
        .call(
            Method::POST,
            &format!("/api/chats/{own_chat}/messages"),
            Some(&stranger),
            Some(json!({ "message":
                { "content": "", "type": "file", "fileUrl": fake, "fileName": "s.txt" } })),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(fetch_with_token(&node, &id, &stranger).await, 404);

    // The signed URL keeps working for whoever holds it, with no token at all.
    let res = node.http.get(node.url(&url)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"owner's secret");
}

#[tokio::test]
async fn file_url_that_breaks_out_of_an_attribute_is_refused() {
    let node = TestNode::start().await;
    let socket = node.socket("u1", Role::User).await;
    let chat = node.open_chat(&node.token("u1", Role::User)).await;
    let send = |url: String| {
        json!({ "chatId": chat, "message":
                { "content": "", "type": "file", "fileUrl": url, "fileName": "a.png" } })
    };
    for bad in [
        r#"https://x" onerror="alert(1)"#.to_owned(),
        "https://x/<img src=y>".to_owned(),
        "https://x/a b.png".to_owned(),
        "https:///nohost".to_owned(),
        format!("https://cdn.example/{}", "a".repeat(2_100)),
    ] {
        let ack = socket.ack("message:send", send(bad.clone())).await;
        assert_eq!(ack["ok"], false, "{bad}: {ack}");
        assert_eq!(ack["error"]["code"], "VALIDATION", "{bad}");
    }
    let ack = socket
        .ack(
            "message:send",
            send("https://cdn.example/a%20b.png?v=2".into()),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    // Nothing refused was saved.
    let (_, page) = node
        .call(
            Method::GET,
            &format!("/api/chats/{chat}/messages"),
            Some(&node.token("u1", Role::User)),
            None,
        )
        .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1, "{page}");
}

#[tokio::test]
async fn with_public_url_a_participant_opens_a_file_sent_by_its_absolute_url() {
    let node = TestNode::start_with(|c| c.public_url = Some("https://chat.example".into())).await;
    let owner = node.token("owner", Role::User);
    let admin = node.token("a1", Role::Admin);
    let partner = node.token("partner", Role::User);
    let kept = upload(&node, &owner, b"shared").await;
    let id = kept["fileId"].as_str().unwrap().to_owned();
    let url = kept["fileUrl"].as_str().unwrap().to_owned();
    assert!(url.starts_with("https://chat.example/api/files/"), "{url}");
    let (_, chat) = node
        .call(
            Method::POST,
            "/api/chats",
            Some(&admin),
            Some(json!({ "participantId": "partner" })),
        )
        .await;
    let chat_id = chat["id"].as_str().unwrap();
    assert_eq!(fetch_with_token(&node, &id, &partner).await, 404);
    let (status, msg) = node
        .call(
            Method::POST,
            &format!("/api/chats/{chat_id}/messages"),
            Some(&admin),
            Some(json!({ "message":
                { "content": "", "type": "file", "fileUrl": url, "fileName": "s.txt" } })),
        )
        .await;
    assert_eq!(status, 201, "{msg}");
    assert_eq!(fetch_with_token(&node, &id, &partner).await, 200);
}
