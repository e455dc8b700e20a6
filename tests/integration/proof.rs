//! Proof under hostility (issue 31): the OpenAPI document is complete, served, and checked in.
//! Schemathesis (tests/steps/35-schemathesis.sh) then checks every answer against it.

use reqwest::Method;
use serde_json::Value;
use switchboard::domain::Role;

use crate::helpers::TestNode;

/// The checked-in document, relative to the crate root.
const CHECKED_IN: &str = "docs/openapi.json";

/// Every REST operation of PROTOCOL.md's table (and this document's own route), as
/// `(method, path template)`.
const PROTOCOL_OPERATIONS: &[(&str, &str)] = &[
    ("post", "/api/chats"),
    ("get", "/api/chats"),
    ("get", "/api/chats/{chat_id}"),
    ("patch", "/api/chats/{chat_id}"),
    ("get", "/api/chats/{chat_id}/messages"),
    ("post", "/api/chats/{chat_id}/messages"),
    ("post", "/api/reports"),
    ("get", "/api/reports"),
    ("post", "/api/reports/{report_id}/read"),
    ("get", "/api/reports/unread-count"),
    ("post", "/api/uploads"),
    ("get", "/api/files/{file_id}"),
    ("get", "/api/socket/active-users"),
    ("get", "/api/users/{user_id}/status"),
    ("post", "/api/users/{user_id}/disconnect"),
    ("delete", "/api/users/{user_id}/block"),
    ("post", "/api/users/{user_id}/revoke-tokens"),
    ("get", "/api/support/availability"),
    ("get", "/api/audit"),
    ("get", "/api/webhooks/failed"),
    ("post", "/api/webhooks/resend"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/api/openapi.json"),
];

fn generated() -> Value {
    serde_json::from_str(switchboard::http::openapi::json()).expect("the document is JSON")
}

#[test]
fn the_checked_in_openapi_document_is_what_the_code_generates() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(CHECKED_IN);
    let now = switchboard::http::openapi::json();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, now).expect("write docs/openapi.json");
    }
    let before = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        before == now,
        "{CHECKED_IN} differs from the document the handlers generate: review the API change, \
         then run `UPDATE_OPENAPI=1 cargo test --test integration proof::` and commit the file"
    );
}

#[test]
fn the_document_lists_every_operation_of_the_protocol_with_unique_ids() {
    let doc = generated();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ids = std::collections::HashSet::new();
    for (method, path) in PROTOCOL_OPERATIONS {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        let id = op["operationId"].as_str().expect("an operationId");
        assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
        // Every refusal is described with the one error shape.
        let bad = &op["responses"]["400"]["content"]["application/json"]["schema"]["$ref"];
        assert_eq!(bad, "#/components/schemas/ErrorResponse", "{method} {path}");
    }
    let counted: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(
        counted,
        PROTOCOL_OPERATIONS.len(),
        "an operation is documented that this test does not know: add it to PROTOCOL_OPERATIONS"
    );
}

#[test]
fn authenticated_operations_name_the_bearer_scheme_and_public_ones_do_not_require_it() {
    let doc = generated();
    let scheme = &doc["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    let chats = &doc["paths"]["/api/chats"]["get"];
    assert_eq!(chats["security"], serde_json::json!([{ "bearerAuth": [] }]));
    assert!(chats["responses"]["401"].is_object());
    // A file is read with its `sig` or a token: neither is required on its own.
    let file = &doc["paths"]["/api/files/{file_id}"]["get"];
    assert!(
        file["security"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({}))
    );
    let health = &doc["paths"]["/healthz"]["get"];
    assert_eq!(health["security"], serde_json::json!([{}]));
    // Writes may be refused for the user's budget, with `Retry-After`.
    let post = &doc["paths"]["/api/chats/{chat_id}/messages"]["post"];
    assert!(post["responses"]["429"]["headers"]["Retry-After"].is_object());
    // Stateful links name their operation as the specification spells it.
    let link = &doc["paths"]["/api/chats"]["post"]["responses"]["201"]["links"]["GetChat"];
    assert_eq!(link["operationId"], "getChat", "{link}");
    assert_eq!(link["parameters"]["chat_id"], "$response.body#/id");
    // The upload is a multipart body with a binary `file` part.
    let upload = &doc["paths"]["/api/uploads"]["post"]["requestBody"]["content"];
    assert!(upload["multipart/form-data"]["schema"].is_object());
}

#[tokio::test]
async fn a_node_serves_the_document_to_anyone_and_its_answers_match_it() {
    let node = TestNode::start().await;
    let res = node
        .http
        .get(node.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()[reqwest::header::CONTENT_TYPE],
        "application/json"
    );
    let served: Value = res.json().await.unwrap();
    assert_eq!(served, generated());

    // A created chat has every field the document says a Chat requires.
    let chat = node.staff_chat_json("proof-admin", "proof-user").await;
    let required = served["components"]["schemas"]["Chat"]["required"]
        .as_array()
        .unwrap()
        .clone();
    for field in required {
        let field = field.as_str().unwrap();
        assert!(!chat[field].is_null(), "Chat.{field} missing from {chat}");
    }
    // And an error has the documented shape.
    let token = node.token("proof-user", Role::User);
    let (status, body) = node
        .call(Method::GET, "/api/chats/not-an-id", Some(&token), None)
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "VALIDATION");
    assert!(body["error"]["message"].is_string());
    node.stop().await;
}

#[tokio::test]
async fn the_console_links_a_rendered_view_of_the_document() {
    let node = TestNode::start().await;
    let page = node
        .http
        .get(node.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("href=\"/console/api\""),
        "the console links the reference"
    );
    let view = node
        .http
        .get(node.url("/console/api"))
        .send()
        .await
        .unwrap();
    assert_eq!(view.status(), 200);
    let html = view.text().await.unwrap();
    assert!(html.contains("/console/api.js"));
    let js = node
        .http
        .get(node.url("/console/api.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.text().await.unwrap().contains("/api/openapi.json"));
    node.stop().await;
}

// What schemathesis found, each fixed at the root; each test fails without its fix.

#[tokio::test]
async fn a_user_id_no_token_can_carry_is_refused_by_status_and_report_lists() {
    let node = TestNode::start().await;
    let staff = node.token("proof-staff", Role::Admin);
    let long = "0".repeat(65);
    // Was `200 { status: "offline" }` and `200 { reports: [] }`.
    let (status, body) = node
        .call(
            Method::GET,
            &format!("/api/users/{long}/status"),
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "VALIDATION");
    let (status, body) = node
        .call(
            Method::GET,
            &format!("/api/reports?userId={long}"),
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // 64 characters is still an id.
    let (status, _) = node
        .call(
            Method::GET,
            &format!("/api/reports?userId={}", "0".repeat(64)),
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(status, 200);
    node.stop().await;
}

#[tokio::test]
async fn a_limit_beyond_every_integer_is_clamped_like_any_other_large_limit() {
    let node = TestNode::start().await;
    let staff = node.token("proof-staff", Role::Admin);
    let chat = node.staff_chat("proof-staff", "proof-user").await;
    let huge = "99999999999999999999999";
    // Was `400 VALIDATION` ("limit must be a whole number"): PROTOCOL.md clamps it.
    for path in [
        format!("/api/chats?limit={huge}"),
        format!("/api/chats/{chat}/messages?limit={huge}"),
        format!("/api/chats/{chat}/messages?beforeSeq={huge}"),
        format!("/api/reports?limit={huge}"),
        format!("/api/socket/active-users?limit={huge}"),
    ] {
        let (status, body) = node.call(Method::GET, &path, Some(&staff), None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    // Not a number is still refused.
    for bad in ["-1", "0", "+5", "1e3", "ten"] {
        let (status, _) = node
            .call(
                Method::GET,
                &format!("/api/chats?limit={bad}"),
                Some(&staff),
                None,
            )
            .await;
        assert_eq!(status, 400, "limit={bad}");
    }
    node.stop().await;
}

#[tokio::test]
async fn a_json_body_that_is_not_an_object_is_refused_and_changes_nothing() {
    let node = TestNode::start().await;
    let staff = node.token("proof-staff", Role::Admin);
    let chat = node.staff_chat("proof-staff", "proof-user").await;
    // Was `200`: serde fills a struct from an array, so `[null, null]` disconnected the user.
    for (path, body) in [
        (
            "/api/users/proof-user/disconnect".to_owned(),
            serde_json::json!([null, null]),
        ),
        (
            format!("/api/chats/{chat}/messages"),
            serde_json::json!([{ "content": "from an array" }, null]),
        ),
    ] {
        let (status, answer) = node
            .call(Method::POST, &path, Some(&staff), Some(body))
            .await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "VALIDATION");
    }
    let (status, history) = node
        .call(
            Method::GET,
            &format!("/api/chats/{chat}/messages"),
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(history["messages"], serde_json::json!([]));
    node.stop().await;
}
