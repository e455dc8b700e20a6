//! glibc's malloc arenas. glibc gives threads arenas of their own, up to eight per core, and
//! memory freed into one arena is not reused by the others. A connection's allocations move
//! between the runtime's worker threads (its handshake on one, its tasks on whichever runs
//! them), so each arena keeps its own half-used pages: an idle connection cost about 600 bytes
//! more RSS than with one arena (`loadtest/journal/2026-12-08-memory.md`). The node starts with
//! one arena unless `MALLOC_ARENA_MAX` (which glibc reads itself) says otherwise; elsewhere than
//! glibc this does nothing.

/// Arenas the node uses unless `MALLOC_ARENA_MAX` is set.
pub const DEFAULT_ARENAS: i32 = 1;

/// Limits glibc's malloc to [`DEFAULT_ARENAS`] arenas, unless `MALLOC_ARENA_MAX` is set. Call
/// before any thread is started (the runtime's workers take their arenas as they first
/// allocate). Returns the limit set, `None` when it was left alone.
#[allow(unsafe_code)]
pub fn limit() -> Option<i32> {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return None;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` takes two integers and changes a setting of glibc's allocator; it
        // is called before the process starts its other threads.
        let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, DEFAULT_ARENAS) } == 1;
        ok.then_some(DEFAULT_ARENAS)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}
