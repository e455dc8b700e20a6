//! In-process presence for a single node.
//!
//! The due `offline` announcements (see the parent module) live here too; a drain writes them to
//! `DATA_DIR/pending-offline.json` and the next start on that directory reads them back, so the
//! users who did not come back are announced by the restarted node.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{Presence, PresenceError, SocketEntry, SocketPage, Transition, UserPresence};
use crate::domain::{Role, Timestamp, now};

/// The file in `DATA_DIR` that keeps the due announcements from a drain to the next start.
const PENDING_FILE: &str = "pending-offline.json";

/// Presence kept in this process: exact, and gone with it (but for the due `offline`
/// announcements a drain leaves, when it was given a directory to keep them in).
#[derive(Default)]
pub struct MemoryPresence {
    /// One lock for all the maps, so a transition (count, last seen, due announcement) is
    /// atomic; never held across an `.await`.
    inner: Mutex<Inner>,
    /// `OFFLINE_GRACE_SECS`, in ms: how long after a departure its `offline` is due.
    grace_ms: i64,
    /// Where a drain keeps the due announcements (`None`: they die with the process).
    keep_in: Option<PathBuf>,
}

/// One due announcement as the pending file keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
struct DueEntry {
    user: String,
    /// When it is due, in ms since the epoch.
    due: i64,
}

#[derive(Default)]
struct Inner {
    /// Every socket, ordered by id so pages have a stable cursor.
    sockets: BTreeMap<Box<str>, Held>,
    /// How many sockets each online user has.
    per_user: HashMap<Box<str>, u32>,
    /// When each user's last socket went away.
    last_seen: HashMap<String, Timestamp>,
    /// The node name the last entry carried (this node's, in practice), shared by the entries.
    node: Option<Arc<str>>,
    /// Users whose `offline` is owed, and when (ms since the epoch): noted when their last
    /// socket goes, dropped when one comes back, taken by `claim_due_offline`.
    due: HashMap<String, i64>,
    /// Staff members seen connecting (for `staff_online`); one found offline is dropped.
    staff: HashSet<Box<str>>,
    /// The marks of the transitions made here (`Presence::marked`), and when (ms).
    marks: HashMap<String, i64>,
}

impl Inner {
    /// Records a transition's mark; marks older than [`KEEP_MARKS_MS`] go once there are many.
    fn mark(&mut self, mark: &str) {
        let t = now().timestamp_millis();
        if self.marks.len() >= 10_000 {
            self.marks.retain(|_, at| t - *at < KEEP_MARKS_MS);
        }
        self.marks.insert(mark.to_owned(), t);
    }
}

/// How long a transition's mark is kept at least (a day: far past any pledge's settling).
const KEEP_MARKS_MS: i64 = 86_400_000;

/// A [`SocketEntry`] as kept here, for an idle socket's sake: its id only as the map's key, the
/// node's name shared rather than copied, boxed strings: two heap strings fewer and a smaller
/// B-tree slot than the entry itself (283 heap bytes per socket with its user count, against
/// 439, counted over 100,000 sockets).
struct Held {
    user_id: Box<str>,
    user_name: Box<str>,
    user_role: Role,
    connected_at: Timestamp,
    node: Arc<str>,
}

impl Held {
    fn entry(&self, socket_id: &str) -> SocketEntry {
        SocketEntry {
            user_id: self.user_id.as_ref().to_owned(),
            socket_id: socket_id.to_owned(),
            user_name: self.user_name.as_ref().to_owned(),
            user_role: self.user_role,
            connected_at: self.connected_at,
            node: self.node.as_ref().to_owned(),
        }
    }
}

impl Inner {
    /// The shared copy of `node`'s name.
    fn node(&mut self, node: &str) -> Arc<str> {
        match &self.node {
            Some(n) if n.as_ref() == node => n.clone(),
            _ => self.node.insert(Arc::from(node)).clone(),
        }
    }
}

impl MemoryPresence {
    pub fn new() -> Self {
        Self::default()
    }

    /// A user left offline is due for announcement `grace` later.
    pub fn with_offline_grace(mut self, grace: Duration) -> Self {
        self.grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// Keeps the due announcements in `dir` across a drain and restart: reads (and removes) the
    /// ones a previous drain left there. A file that cannot be read is logged and ignored.
    pub fn kept_in(mut self, dir: &Path) -> Self {
        let path = dir.join(PENDING_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                match serde_json::from_slice::<Vec<DueEntry>>(&bytes) {
                    Ok(entries) => {
                        let g = self.inner.get_mut().unwrap_or_else(|p| p.into_inner());
                        g.due.extend(entries.into_iter().map(|e| (e.user, e.due)));
                        tracing::info!(users = g.due.len(), "due offline announcements restored");
                    }
                    Err(e) => tracing::warn!(error = %e, "ignoring an unreadable {PENDING_FILE}"),
                }
                // Read once: a second start must not announce them again.
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(error = %e, "could not remove {PENDING_FILE}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, "could not read {PENDING_FILE}"),
        }
        self.keep_in = Some(dir.to_owned());
        self
    }

    /// When the due announcements are due (ms since the epoch): the restored ones, at start.
    pub fn due_times(&self) -> Vec<i64> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.due.values().copied().collect()
    }

    /// Writes the due announcements where the next start finds them (write, then rename: a
    /// crash mid-write leaves no half file).
    fn keep_due(&self, due: &HashMap<String, i64>) {
        let Some(dir) = &self.keep_in else { return };
        let entries: Vec<DueEntry> = due
            .iter()
            .map(|(user, due)| DueEntry {
                user: user.clone(),
                due: *due,
            })
            .collect();
        let (tmp, path) = (
            dir.join(format!("{PENDING_FILE}.tmp")),
            dir.join(PENDING_FILE),
        );
        let written = serde_json::to_vec(&entries)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(&tmp, json))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not keep the due offline announcements");
        }
    }
}

#[async_trait]
impl Presence for MemoryPresence {
    async fn connect_marked(
        &self,
        entry: &SocketEntry,
        mark: Option<&str>,
    ) -> Result<bool, PresenceError> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.sockets.contains_key(entry.socket_id.as_str()) {
            return Ok(false);
        }
        let held = Held {
            user_id: entry.user_id.as_str().into(),
            user_name: entry.user_name.as_str().into(),
            user_role: entry.user_role,
            connected_at: entry.connected_at,
            node: g.node(&entry.node),
        };
        g.sockets.insert(entry.socket_id.as_str().into(), held);
        let n = match g.per_user.get_mut(entry.user_id.as_str()) {
            Some(n) => n,
            None => g.per_user.entry(entry.user_id.as_str().into()).or_default(),
        };
        *n += 1;
        let first = *n == 1;
        if entry.user_role.is_staff() && !g.staff.contains(entry.user_id.as_str()) {
            g.staff.insert(entry.user_id.as_str().into());
        }
        // Back before their `offline` went out: it never will, and no `online` is news.
        let online = first && g.due.remove(&entry.user_id).is_none();
        if let (true, Some(mark)) = (online, mark) {
            g.mark(mark);
        }
        Ok(online)
    }

    async fn disconnect(&self, user_id: &str, socket_id: &str) -> Result<bool, PresenceError> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.sockets.remove(socket_id).is_none() {
            return Ok(false);
        }
        let Some(n) = g.per_user.get_mut(user_id) else {
            return Ok(false);
        };
        *n -= 1;
        if *n > 0 {
            return Ok(false);
        }
        g.per_user.remove(user_id);
        let t = now();
        g.last_seen.insert(user_id.to_owned(), t);
        g.due
            .insert(user_id.to_owned(), t.timestamp_millis() + self.grace_ms);
        Ok(true)
    }

    async fn status(&self, user_id: &str) -> Result<UserPresence, PresenceError> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let sockets = g.per_user.get(user_id).copied().map_or(0, u64::from);
        let last_seen = if sockets == 0 {
            g.last_seen.get(user_id).copied()
        } else {
            None
        };
        Ok(UserPresence { sockets, last_seen })
    }

    async fn sockets(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<SocketPage, PresenceError> {
        use std::ops::Bound;
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let start = match cursor {
            Some(c) => Bound::Excluded(c),
            None => Bound::Unbounded,
        };
        let mut it = g
            .sockets
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(id, held)| held.entry(id));
        let entries: Vec<SocketEntry> = it.by_ref().take(limit).collect();
        let next_cursor = match (it.next(), entries.last()) {
            (Some(_), Some(last)) => Some(last.socket_id.clone()),
            _ => None,
        };
        Ok(SocketPage {
            entries,
            next_cursor,
            sockets: g.sockets.len() as u64,
            users: g.per_user.len() as u64,
        })
    }

    async fn heartbeat(&self) -> Result<Vec<Transition>, PresenceError> {
        Ok(Vec::new())
    }

    async fn withdraw_node(&self) -> Result<Vec<String>, PresenceError> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let users: Vec<String> = g.per_user.drain().map(|(u, _)| u.into()).collect();
        g.sockets.clear();
        let t = now();
        for u in &users {
            g.last_seen.insert(u.clone(), t);
            g.due
                .insert(u.clone(), t.timestamp_millis() + self.grace_ms);
        }
        // A drain: what is still due must outlive the process.
        self.keep_due(&g.due);
        Ok(users)
    }

    async fn claim_due_offline(&self) -> Result<Vec<String>, PresenceError> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let t = now().timestamp_millis();
        let claimed: Vec<String> = g
            .due
            .iter()
            .filter(|(_, due)| **due <= t)
            .map(|(user, _)| user.clone())
            .collect();
        for user in &claimed {
            g.due.remove(user);
        }
        Ok(claimed
            .into_iter()
            .filter(|user| !g.per_user.contains_key(user.as_str()))
            .collect())
    }

    async fn due_offline(&self) -> Result<Vec<String>, PresenceError> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let t = now().timestamp_millis();
        Ok(g.due
            .iter()
            .filter(|(_, due)| **due <= t)
            .map(|(user, _)| user.clone())
            .collect())
    }

    async fn claim_offline_marked(
        &self,
        claims: &[(String, String)],
    ) -> Result<Vec<String>, PresenceError> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let t = now().timestamp_millis();
        let mut claimed = Vec::new();
        for (user, mark) in claims {
            if g.due.get(user).is_none_or(|due| *due > t) {
                continue;
            }
            g.due.remove(user);
            if !g.per_user.contains_key(user.as_str()) {
                g.mark(mark);
                claimed.push(user.clone());
            }
        }
        Ok(claimed)
    }

    async fn marked(&self, mark: &str) -> Result<bool, PresenceError> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(g.marks.contains_key(mark))
    }

    async fn staff_online(&self) -> Result<Option<String>, PresenceError> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Inner {
            staff, per_user, ..
        } = &mut *g;
        staff.retain(|s| per_user.contains_key(s));
        Ok(staff.iter().next().map(|s| s.as_ref().to_owned()))
    }

    async fn ping(&self) -> Result<(), PresenceError> {
        Ok(())
    }
}
