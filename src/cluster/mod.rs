//! Fan-out: how an emission reaches the right sockets, on this node or every node.
//!
//! The event logic never names an adapter: it emits through [`Fanout`], which [`SocketIo`]
//! implements for any adapter. `app.rs` is the only place that picks the adapter (in-memory for
//! a single node, Redis for a cluster: [`redis`], whose [`redis::RedisFanout`] also keeps
//! delivering while Redis is down).
//!
//! This module knows no event by name: whatever the fan-out must know about an emission (such
//! as whether it is kept for replay after an outage) the [`Emission`] says.

use std::future::Future;
use std::pin::Pin;

use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;

pub mod redis;

/// The rooms of PROTOCOL.md. Clients never choose them.
pub mod rooms {
    /// Every staff socket.
    pub const ADMINS: &str = "admins";
    /// Every `user`-role socket (compatibility only: nothing private goes there).
    pub const USERS: &str = "users";

    /// Every socket of one user, on every node.
    pub fn user(id: &str) -> String {
        format!("user:{id}")
    }

    /// The rooms a chat's events go to: each participant's room and `admins`.
    pub fn chat(participants: &[String]) -> Vec<String> {
        let mut rooms: Vec<String> = participants.iter().map(|p| user(p)).collect();
        rooms.push(ADMINS.to_owned());
        rooms
    }
}

/// Why an emission may not have reached every node.
#[derive(Debug, thiserror::Error)]
#[error("fan-out failed: {0}")]
pub struct FanoutError(pub String);

/// An event on its way out, with what the fan-out needs to know about it (the fan-out knows no
/// event by name).
///
/// The payload is type-erased: the in-memory adapter serializes it once, straight from the
/// domain type. Cluster mode ([`redis::RedisFanout`]) turns it into a JSON tree first, because
/// the publish outlives the borrowed payload (its reply is awaited in a task of its own) and a
/// failed publish is kept for replay.
pub struct Emission<'a> {
    /// The rooms it goes to.
    pub rooms: Vec<String>,
    /// Rooms whose sockets must not get it (the sender's own sockets, for typing).
    pub except: Vec<String>,
    /// The event name (PROTOCOL.md, server -> client).
    pub event: &'static str,
    /// The event's body, serialized by the adapter.
    pub payload: &'a (dyn erased_serde::Serialize + Sync),
    /// If other nodes could not be reached (a Redis outage), keep it and deliver it to them
    /// when Redis returns. `false` for ephemeral events (typing indicators), which are stale by
    /// then; the emitter decides, since only it knows what the event means.
    pub keep_for_replay: bool,
    /// The event's connection state recovery offset, sent as its last argument.
    pub offset: Option<&'a str>,
}

/// An event's arguments: the payload, and the recovery offset after it when there is one (a
/// tuple, which socketioxide sends as separate arguments).
pub struct Args<'a, P: ?Sized> {
    pub payload: &'a P,
    pub offset: Option<&'a str>,
}

impl<P: ?Sized + serde::Serialize> serde::Serialize for Args<'_, P> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        match self.offset {
            None => self.payload.serialize(s),
            Some(offset) => {
                let mut t = s.serialize_tuple(2)?;
                t.serialize_element(self.payload)?;
                t.serialize_element(offset)?;
                t.end()
            }
        }
    }
}

/// Sends events to rooms.
pub trait Fanout: Send + Sync + 'static {
    /// Resolves once the emission is on its way: delivered to this node's sockets and queued
    /// for the other nodes behind this node's earlier emissions.
    fn emit<'a>(
        &'a self,
        emission: Emission<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), FanoutError>> + Send + 'a>>;

    /// Emissions that returned but whose delivery to other nodes is not confirmed yet (a
    /// drain waits for them).
    fn unconfirmed(&self) -> usize {
        0
    }
}

impl<A: Adapter> Fanout for SocketIo<A> {
    fn emit<'a>(
        &'a self,
        e: Emission<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), FanoutError>> + Send + 'a>> {
        Box::pin(async move {
            // The namespace is gone once a drain has closed the sockets.
            let Some(ns) = self.of("/") else {
                return Err(FanoutError(
                    "the namespace is closed: this node is draining".into(),
                ));
            };
            let mut op = ns.to(e.rooms);
            if !e.except.is_empty() {
                op = op.except(e.except);
            }
            let args = Args {
                payload: e.payload,
                offset: e.offset,
            };
            op.emit(e.event, &args)
                .await
                .map_err(|err| FanoutError(err.to_string()))
        })
    }
}
