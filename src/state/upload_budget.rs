//! Bytes of uploads being kept right now on this node, per user: the upload budget
//! (`UPLOAD_BYTES_PER_DAY`, `service/uploads.rs`) counts them with what the store already holds,
//! so two uploads of one user finishing at once on a node cannot both fit into the same room.
//!
//! An upload holds its bytes here from before the store is asked until its save is over (an
//! upload being saved may briefly be counted twice, which can only refuse early, never let more
//! in). Across nodes the store is the only count: concurrent uploads on different nodes may
//! pass the budget by one file each.

use std::collections::HashMap;
use std::sync::Mutex;

/// Per-user bytes in flight (entries removed at zero).
#[derive(Default)]
pub struct UploadsInFlight(Mutex<HashMap<String, u64>>);

impl UploadsInFlight {
    /// Counts `bytes` for `user` until the returned guard is dropped; returns the user's total
    /// in flight, these bytes included.
    pub fn hold(&self, user: &str, bytes: u64) -> (InFlight<'_>, u64) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let total = map.entry(user.to_owned()).or_default();
        *total += bytes;
        let total = *total;
        (
            InFlight {
                owner: self,
                user: user.to_owned(),
                bytes,
            },
            total,
        )
    }
}

/// One upload's bytes, counted while it lives.
pub struct InFlight<'a> {
    owner: &'a UploadsInFlight,
    user: String,
    bytes: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut map = self.owner.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(total) = map.get_mut(&self.user) {
            *total = total.saturating_sub(self.bytes);
            if *total == 0 {
                map.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_bytes_add_up_and_go_when_dropped() {
        let uploads = UploadsInFlight::default();
        let (a, total) = uploads.hold("u", 10);
        assert_eq!(total, 10);
        let (b, total) = uploads.hold("u", 5);
        assert_eq!(total, 15);
        drop(a);
        drop(b);
        assert!(uploads.0.lock().unwrap().is_empty());
    }
}
