//! The `outcome` label of client events, derived from the error table in [`crate::error`]:
//! `ok`, or the failure's [`ErrorCode`] outcome.

use crate::error::ErrorCode;

/// The outcome label of an event: `ok`, or the [`ErrorCode`]'s outcome (its code in lower case),
/// indexed by [`outcome_index`]. Derived from the error table in [`crate::error`].
pub const OUTCOMES: [&str; ErrorCode::ALL.len() + 1] = {
    let mut labels = ["ok"; ErrorCode::ALL.len() + 1];
    let mut i = 0;
    while i < ErrorCode::ALL.len() {
        labels[i + 1] = ErrorCode::ALL[i].outcome();
        i += 1;
    }
    labels
};

/// The outcome index for [`EventMetrics::outcomes`] and [`OUTCOMES`]: 0 for success, else one
/// past the code's place in the error table.
pub fn outcome_index(code: Option<ErrorCode>) -> usize {
    code.map_or(0, |c| c as usize + 1)
}
