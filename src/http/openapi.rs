//! The OpenAPI 3.1 document of the REST API, `GET /api/openapi.json`, generated from the
//! handlers themselves so that it cannot drift from them.
//!
//! Each resource file registers its handlers with `utoipa_axum::routes!`, which takes the path
//! and method from the handler's `#[utoipa::path]` annotation: the route axum serves and the
//! operation the document lists are one declaration. Adding an endpoint is local to its file:
//! annotate the handler, register it with `routes!`, and it is served and documented.
//!
//! What every operation shares is added here, by [`Conventions`], rather than repeated on
//! each handler: the bearer scheme (an operation without its own `security` needs a token), and
//! the error answers the common layers give (`{ error: { code, message } }`): `400` for a
//! malformed parameter or body, `401`/`403` for a missing, refused or blocked caller, `404` for
//! an id that names nothing, `413` for a body over its limit, `429` when a write is over its
//! user's budget (with `Retry-After`), `503` while a backing store is down. A handler lists only
//! what is particular to it. A body whose every field is optional is itself optional
//! (`request_body = Option<T>`): an empty body reads as `{}`.
//!
//! The document is checked in as `docs/openapi.json` and a test compares it with what the code
//! generates (`UPDATE_OPENAPI=1` rewrites it), so a change to the API shows in review.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{HttpMethod, Operation, ParameterIn};
use utoipa::openapi::response::{Response as ApiResponse, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ErrorCode;
use crate::state::AppState;

/// The name of the bearer-token security scheme.
pub const BEARER: &str = "bearerAuth";

/// The document's fixed parts; the paths come from the routers (see [`document`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard REST API",
        description = "The REST half of the Switchboard wire contract (PROTOCOL.md): chats, \
            messages, reports, uploads and presence. Every error is `{ error: { code, message } }` \
            with one of the stable codes. Clients authenticate with `Authorization: Bearer <JWT>`."
    ),
    components(schemas(ErrorResponse, ErrorDetail, ErrorCode, PageLimit, SeqBound, crate::domain::AuditAction)),
    modifiers(&Conventions),
    tags(
        (name = "chats", description = "Support chats and their messages"),
        (name = "reports", description = "Report messages from staff to users"),
        (name = "files", description = "Uploads and the files they return"),
        (name = "presence", description = "Who is connected, cluster-wide"),
        (name = "desk", description = "The support desk: availability, removing a user, the audit log"),
        (name = "webhooks", description = "Failed webhook deliveries (superadmin)"),
        (name = "health", description = "Liveness, readiness and this document"),
    )
)]
pub struct ApiDoc;

/// The body of every error answer.
#[derive(ToSchema)]
#[allow(dead_code)] // documentation only: `AppError` writes the same shape.
pub struct ErrorResponse {
    error: ErrorDetail,
}

/// What went wrong: a stable code and a message safe to show.
#[derive(ToSchema)]
#[allow(dead_code)] // documentation only: `ErrorBody` writes the same shape.
pub struct ErrorDetail {
    code: ErrorCode,
    message: String,
}

impl PartialSchema for ErrorCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
            .description(Some("A stable error code (PROTOCOL.md, Acks and errors)"))
            .into()
    }
}

impl ToSchema for ErrorCode {}

/// A page size (`limit`): a whole number of at least 1; above the list's maximum it is
/// clamped, however large (so no integer format bounds it).
pub struct PageLimit;

impl PartialSchema for PageLimit {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .description(Some(
                "A whole number of at least 1; above the maximum it is clamped",
            ))
            .into()
    }
}

impl ToSchema for PageLimit {}

/// A `seq` bound (`beforeSeq`, `afterSeq`): a whole number, 0 or more, however large.
pub struct SeqBound;

impl PartialSchema for SeqBound {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .description(Some("A message `seq`: a whole number, 0 or more"))
            .into()
    }
}

impl ToSchema for SeqBound {}

/// `GET /api/openapi.json`: this document's route.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// The whole document: [`ApiDoc`] with every documented route's operations.
pub fn document() -> Document {
    let mut doc = super::documented_routes().into_openapi();
    // The routers' merge keeps the first document's parts; conventions apply to all paths.
    Conventions.modify(&mut doc);
    doc
}

/// The document as pretty JSON, computed once per process.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut doc = serde_json::to_value(document()).expect("an OpenAPI document serializes");
        camel_case_links(&mut doc);
        empty_query_values_allowed(&mut doc);
        optional_bodies_are_objects(&mut doc);
        let mut text = serde_json::to_string_pretty(&doc).expect("JSON serializes");
        text.push('\n');
        text
    })
}

/// Every optional query parameter may be sent empty (`?status=&limit=`), which means absent
/// (`Params::get`, as legacy frontends build their URLs): the document says so with
/// `allowEmptyValue`, which utoipa 5 cannot write.
fn empty_query_values_allowed(doc: &mut serde_json::Value) {
    for op in operations(doc) {
        let params = op.get_mut("parameters").and_then(|p| p.as_array_mut());
        for p in params.into_iter().flatten() {
            if p["in"] == "query" && p["required"] != true {
                p["allowEmptyValue"] = serde_json::Value::Bool(true);
            }
        }
    }
}

/// utoipa 5 writes an optional body (`request_body = Option<T>`) as `oneOf: [null, T]`; what
/// is optional is the body, not its type: an absent body reads as `{}`, and `null` is refused
/// like every body that is not an object.
fn optional_bodies_are_objects(doc: &mut serde_json::Value) {
    for op in operations(doc) {
        let Some(content) = op
            .pointer_mut("/requestBody/content")
            .and_then(|c| c.as_object_mut())
        else {
            continue;
        };
        for media in content.values_mut() {
            let schema = &mut media["schema"];
            let inner = schema["oneOf"].as_array().and_then(|alts| {
                let mut alts = alts.iter().filter(|a| a["type"] != "null");
                match (alts.next(), alts.next()) {
                    (Some(only), None) => Some(only.clone()),
                    _ => None,
                }
            });
            if let Some(inner) = inner {
                *schema = inner;
            }
        }
    }
}

/// Every operation object of a document as JSON.
fn operations(doc: &mut serde_json::Value) -> impl Iterator<Item = &mut serde_json::Value> {
    doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
}

/// utoipa 5 writes a Link Object's fields in snake case (`operation_id`, `request_body`), which
/// no OpenAPI tool reads: this renames them to the specification's `operationId`,
/// `operationRef` and `requestBody` in every response's `links`.
fn camel_case_links(doc: &mut serde_json::Value) {
    let responses = operations(doc)
        .filter_map(|op| op.get_mut("responses").and_then(|r| r.as_object_mut()))
        .flat_map(|responses| responses.values_mut());
    for response in responses {
        let links = response.get_mut("links").and_then(|l| l.as_object_mut());
        for link in links.into_iter().flat_map(|l| l.values_mut()) {
            let Some(link) = link.as_object_mut() else {
                continue;
            };
            for (from, to) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(v) = link.remove(from) {
                    link.insert(to.to_owned(), v);
                }
            }
        }
    }
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    operation_id = "openapi",
    tag = "health",
    security(()),
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)),
)]
async fn openapi_json() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json(),
    )
        .into_response()
}

/// Adds what every operation shares: the bearer scheme and the common error answers.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        for item in doc.paths.paths.values_mut() {
            let ops = [
                (HttpMethod::Get, item.get.as_mut()),
                (HttpMethod::Post, item.post.as_mut()),
                (HttpMethod::Patch, item.patch.as_mut()),
                (HttpMethod::Put, item.put.as_mut()),
                (HttpMethod::Delete, item.delete.as_mut()),
            ];
            for (method, op) in ops {
                if let Some(op) = op {
                    add_conventions(method, op);
                }
            }
        }
    }
}

fn add_conventions(method: HttpMethod, op: &mut Operation) {
    // No `security` on the annotation: the operation needs a token.
    let authenticated = match &op.security {
        None => {
            op.security = Some(vec![SecurityRequirement::new::<_, _, &str>(BEARER, [])]);
            true
        }
        Some(reqs) => !reqs.is_empty() && reqs.iter().all(|r| *r != SecurityRequirement::default()),
    };
    let has_path_param = op
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Path);
    let writes = matches!(method, HttpMethod::Post | HttpMethod::Patch);
    let mut add = |status: &str, description: &str, retry_after: bool| {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(error_response(description, retry_after)));
    };
    add(
        "400",
        "VALIDATION: a malformed parameter or body; nothing changed",
        false,
    );
    if authenticated {
        add("401", "UNAUTHORIZED: no valid bearer token", false);
        add(
            "403",
            "FORBIDDEN: the caller may not do this, or is blocked",
            false,
        );
    }
    if has_path_param {
        add(
            "404",
            "NOT_FOUND: the id names nothing the caller may see",
            false,
        );
    }
    if op.request_body.is_some() {
        add(
            "413",
            "PAYLOAD_TOO_LARGE: the body is over its limit",
            false,
        );
    }
    if writes {
        add(
            "429",
            "RATE_LIMITED: over the user's budget of writes",
            true,
        );
    }
    add(
        "503",
        "UNAVAILABLE: a backing store is down; nothing was saved",
        false,
    );
}

/// An error answer: `{ error: { code, message } }`, with `Retry-After` where it may be sent.
fn error_response(description: &str, retry_after: bool) -> ApiResponse {
    let mut r = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorResponse")))
            .build(),
    );
    if retry_after {
        r = r.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1)),
                )
                .description(Some("Whole seconds to wait"))
                .build(),
        );
    }
    r.build()
}
