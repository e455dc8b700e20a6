//! The client events of PROTOCOL.md, in one table: each event's wire name (which is also its
//! metric label), its rate class and how it is answered.
//!
//! Adding an event is one line in `client_events!` below plus its handler: the compiler then asks
//! for the handler's arm in `realtime/dispatch.rs` (an exhaustive `match`), and `metrics/mod.rs`
//! counts it by name without a second list. A name not in the table is counted as
//! [`UNKNOWN_LABEL`]. Depends on nothing else in the crate, so `metrics` and `realtime` can
//! both read it.

/// What an event over its socket's rate limit gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateClass {
    /// Refused with `RATE_LIMITED`.
    Refused,
    /// Dropped silently (and acked `ok` when acked): typing indicators.
    DroppedSilently,
}

/// How an event answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `{ ok: true, ... }` / `{ ok: false, error }` by ack, or the `error` event without one.
    Standard,
    /// `sendReportMessage`: `reportMessageSent` to the socket and the same body as ack; no
    /// `error` event.
    ReportSent,
}

/// The metric label of an event no entry names.
pub const UNKNOWN_LABEL: &str = "unknown";

/// One row of the table.
struct Spec {
    name: &'static str,
    rate: RateClass,
    reply: Reply,
}

/// Defines [`ClientEvent`] from one row per event: `Variant => "wire:name", RateClass, Reply;`.
macro_rules! client_events {
    ($($(#[doc = $doc:literal])* $variant:ident => $name:literal, $rate:ident, $reply:ident;)*) => {
        /// A client event the protocol defines.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum ClientEvent {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ClientEvent {
            /// Every client event, in table order (`ALL[e as usize] == e`).
            pub const ALL: &'static [ClientEvent] = &[$(ClientEvent::$variant,)*];

            const fn spec(self) -> Spec {
                match self {
                    $(ClientEvent::$variant => Spec {
                        name: $name,
                        rate: RateClass::$rate,
                        reply: Reply::$reply,
                    },)*
                }
            }
        }
    };
}

client_events! {
    /// `{ chatId, message, clientMessageId? }`: save, then `message:new` to the chat.
    MessageSend => "message:send", Refused, Standard;
    /// `{ chatId }`: start or renew a typing indicator.
    TypingStart => "user:typing:start", DroppedSilently, Standard;
    /// `{ chatId }`: end a typing indicator.
    TypingStop => "user:typing:stop", DroppedSilently, Standard;
    /// `{ chatId, messageId }`: a read receipt.
    MessageRead => "message:read", Refused, Standard;
    /// `{ chatId, messageId }`: a client confirms it shows messages up to this one.
    MessageDelivered => "message:delivered", Refused, Standard;
    /// Legacy `{ userId }`: register the socket in presence.
    UserOnline => "user:online", Refused, Standard;
    /// Legacy `userId`: the socket's own room (joined at the handshake already).
    JoinUserRoom => "joinUserRoom", Refused, Standard;
    /// Staff send a report to a user.
    SendReportMessage => "sendReportMessage", Refused, ReportSent;
    /// `{ reportId }`: the recipient marks a report read.
    ReportRead => "report:read", Refused, Standard;
    /// `{ chatId, afterSeq, limit? }`: the messages a client missed.
    ChatSync => "chat:sync", Refused, Standard;
    /// `{ status: 'available' | 'away' }`: a staff member's availability (the support desk).
    StaffAvailability => "staff:availability", Refused, Standard;
}

impl ClientEvent {
    /// The event a wire name means, if the protocol defines it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|e| e.name() == name)
    }

    /// The wire name, which is also the metric label.
    pub const fn name(self) -> &'static str {
        self.spec().name
    }

    pub const fn rate_class(self) -> RateClass {
        self.spec().rate
    }

    pub const fn reply(self) -> Reply {
        self.spec().reply
    }

    /// The label an event is counted under: its name, or [`UNKNOWN_LABEL`].
    pub fn label(event: Option<Self>) -> &'static str {
        event.map_or(UNKNOWN_LABEL, Self::name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_found_by_its_name_and_sits_at_its_index() {
        for (i, e) in ClientEvent::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i);
            assert_eq!(ClientEvent::from_name(e.name()), Some(*e));
        }
        assert_eq!(ClientEvent::from_name("nope"), None);
    }
}
