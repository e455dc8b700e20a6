//! The domain parsers the transports call before any logic runs: a Socket.IO event as the
//! dispatcher hands it over (`["event", payload]`: `message:send` into `SendMessage`,
//! `sendReportMessage` into `NewReport`, the ids of `message:read`, `message:delivered` and
//! `report:read`, `chat:sync`'s `afterSeq` and `limit`), or else a REST query string (`limit`,
//! `beforeSeq`/`afterSeq`, `cursor`, `status`, ids). Never a panic, and what is accepted keeps
//! PROTOCOL.md's rules; a cursor that decodes encodes back to one that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchboard::domain::{
    AuthUser, ChatId, ChatStatus, FileId, MessageId, MessageType, NewReport, ReportId,
    ReportInput, Role, SendMessage, SendMessageInput, parse_plain_id,
};
use switchboard::paging::{self, Raw};

/// `fileUrl`s "issued here": the shape the upload API makes (the signature is not the point).
fn issued_here(url: &str) -> bool {
    url.starts_with("/api/files/") && url.contains("?sig=")
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn send(payload: Value) {
    let Ok(input) = serde_json::from_value::<SendMessageInput>(payload) else {
        return;
    };
    let Ok(m) = SendMessage::parse(input, issued_here) else {
        return;
    };
    assert_eq!(m.body.content, m.body.content.trim(), "content stored untrimmed");
    assert!(chars(&m.body.content) <= 5000);
    match m.body.kind {
        MessageType::Text => {
            assert!(!m.body.content.is_empty(), "an empty text message");
            assert!(m.body.file_url.is_none() && m.body.file_name.is_none());
        }
        MessageType::File => {
            let url = m.body.file_url.as_deref().expect("a file message has a fileUrl");
            assert!(chars(url) <= 2048);
            assert!(
                issued_here(url)
                    || !url.chars().any(|c| c.is_whitespace() || "\"'<>`\\".contains(c)),
                "an unsafe fileUrl: {url:?}"
            );
            let name = m.body.file_name.as_deref().expect("a file message has a fileName");
            assert!((1..=255).contains(&chars(name)));
        }
    }
    if let Some(id) = &m.client_message_id {
        assert!((1..=64).contains(&chars(id)) && !id.chars().any(char::is_control));
    }
}

fn report(payload: Value) {
    let Ok(input) = serde_json::from_value::<ReportInput>(payload) else {
        return;
    };
    let staff = AuthUser {
        id: "admin-1".into(),
        name: "Admin".into(),
        role: Role::Admin,
    };
    let Ok(r) = NewReport::parse(input, &staff) else {
        return;
    };
    assert!((1..=200).contains(&chars(&r.title)) && (1..=2000).contains(&chars(&r.message)));
    for id in [Some(&r.user_id), r.order_id.as_ref(), r.payment_id.as_ref(), r.invoice_id.as_ref()]
        .into_iter()
        .flatten()
    {
        assert!((1..=64).contains(&chars(id)) && !id.chars().any(char::is_control));
    }
    assert_eq!(r.sent_by, "admin-1", "sentBy taken from the payload");
}

fn ids(payload: &Value) {
    for key in ["chatId", "messageId", "reportId"] {
        if let Some(s) = payload.get(key).and_then(Value::as_str) {
            let ok = [
                ChatId::parse(s).is_ok(),
                MessageId::parse(s).is_ok(),
                ReportId::parse(s).is_ok(),
            ];
            assert!(ok.iter().all(|&o| o == ok[0]));
            if ok[0] {
                assert!(s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()));
            }
        }
    }
}

fn sync(payload: &Value) {
    if let Some(after) = payload.get("afterSeq") {
        let _ = paging::seq("afterSeq", Raw::Json(after));
    }
    if let Ok(n) = paging::limit(payload.get("limit").map(Raw::Json), paging::SYNC) {
        assert!((1..=500).contains(&n));
    }
}

fn query(text: &str) {
    let params: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(text.as_bytes()).into_owned().collect();
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    for bounds in [paging::LISTS, paging::HISTORY, paging::AUDIT, paging::ACTIVE_USERS] {
        if let Ok(n) = paging::limit(get("limit").map(Raw::Text), bounds) {
            assert!(n >= 1 && n <= bounds.max);
        }
    }
    let _ = paging::history_page(get("beforeSeq").map(Raw::Text), get("afterSeq").map(Raw::Text));
    if let Some(c) = get("cursor")
        && let Ok((at, id)) = paging::decode_cursor(c)
    {
        let again = paging::decode_cursor(&paging::encode_cursor(at, &id)).expect("re-decodes");
        assert_eq!(again, (at, id));
    }
    if let Some(s) = get("status") {
        let _ = ChatStatus::parse(s);
    }
    for key in ["userId", "fileId", "chatId"] {
        if let Some(s) = get(key) {
            let _ = parse_plain_id(key, s);
            let _ = FileId::parse(s);
            let _ = ChatId::parse(s);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(mut event)) if event.len() >= 2 => {
            let payload = event.swap_remove(1);
            match event[0].as_str() {
                Some("message:send") => send(payload),
                Some("sendReportMessage") => report(payload),
                Some("chat:sync") => {
                    ids(&payload);
                    sync(&payload);
                }
                _ => ids(&payload),
            }
        }
        _ => query(text),
    }
});
