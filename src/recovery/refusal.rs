//! Why a resume was refused: the label values of the recovery metrics.

/// Why a resume was not served: the client gets a new session, except for [`Refusal::Unavailable`].
/// Label values of the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `pid` or `offset` is not the shape the server makes.
    Malformed,
    /// No such session (never made, ended by its client, or expired and gone).
    Unknown,
    /// The session belongs to another user.
    Foreign,
    /// Disconnected longer than the window ago, or the offset is older than the log keeps.
    Expired,
    /// More missed events than one replay sends.
    TooFarBehind,
    /// The backend could not answer: nothing is known against the session, so the transport is
    /// closed and the client retries with the same `pid` and offset (`realtime/handshake.rs`,
    /// `realtime/recovery.rs`).
    Unavailable,
    /// The user made more resumes than `RECOVERY_RESUMES_PER_MIN` allows on this node.
    RateLimited,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::Unknown => "unknown",
            Refusal::Foreign => "foreign",
            Refusal::Expired => "expired",
            Refusal::TooFarBehind => "too_far_behind",
            Refusal::Unavailable => "unavailable",
            Refusal::RateLimited => "rate_limited",
        }
    }
}
