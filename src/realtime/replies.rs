//! How a handled client event is answered: the ack bodies (`{ ok: true, ... }`,
//! `{ ok: false, error }`), the `error` event for an event sent without an ack, and
//! `reportMessageSent` for `sendReportMessage` (PROTOCOL.md, "Acks and errors").

use serde::Serialize;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef};

use crate::client_events::Reply;
use crate::error::{AppError, ErrorBody, ErrorCode};
use crate::service::events::{ErrorEvent, ReportSent, ServerEvent};

#[derive(Serialize)]
pub(super) struct Success<R> {
    pub ok: bool,
    #[serde(flatten)]
    pub body: R,
}

#[derive(Serialize)]
struct Failure<'a> {
    ok: bool,
    error: ErrorBody<'a>,
}

/// An empty success body.
#[derive(Serialize)]
pub struct Empty {}

/// Answers one event as `reply` says: by ack when the client asked for one, else (on failure)
/// with the `error` event. A socket that is gone is only logged.
pub(super) fn send_reply<A: Adapter, R: Serialize>(
    s: &SocketRef<A>,
    ack: AckSender<A>,
    has_ack: bool,
    event: &str,
    reply: Reply,
    result: Result<R, AppError>,
) {
    if let Err(e) = &result {
        // A validation message can quote the client's payload (serde names the offending
        // value), and payloads stay out of the logs.
        let reason = if e.code == ErrorCode::Validation {
            ""
        } else {
            e.message.as_str()
        };
        tracing::debug!(event, code = e.code.as_str(), reason, "event refused");
    }
    let sent = match (reply, result) {
        (Reply::ReportSent, Ok(body)) => {
            let body = ReportSent::ok(body);
            to_socket(s, &body);
            ack.send(&body)
        }
        (Reply::ReportSent, Err(e)) => {
            let body = ReportSent::failed(&e);
            to_socket(s, &body);
            ack.send(&body)
        }
        (_, Ok(body)) => ack.send(&Success { ok: true, body }),
        (_, Err(e)) if has_ack => ack.send(&Failure {
            ok: false,
            error: e.body(),
        }),
        (_, Err(e)) => {
            to_socket(
                s,
                &ErrorEvent {
                    message: &e.message,
                    error: e.code.as_str(),
                    event,
                },
            );
            Ok(())
        }
    };
    if let Err(e) = sent {
        tracing::debug!(event, error = %e, "reply not sent (socket gone?)");
    }
}

/// Sends a server event to this socket only (no room, no recovery log); a socket that is gone
/// has nobody to tell. Only for events that are never replayed: the compiler refuses a
/// recoverable one here (it must be logged, through `Emitter::emit`).
fn to_socket<A: Adapter, E: ServerEvent>(s: &SocketRef<A>, event: &E) {
    const {
        assert!(
            !E::RECOVERABLE,
            "a recoverable event goes through Emitter::emit"
        )
    };
    let _ = s.emit(E::NAME, event);
}
