//! The process's open-file limit. Every socket is a file descriptor, so the soft `RLIMIT_NOFILE`
//! bounds how many sockets a node holds; systemd and shells often start processes at a soft
//! limit of 1,024 with a far higher hard one. At start-up the node raises its soft limit to the
//! hard one (a process may, without privileges), logs what it got and exports it as
//! `switchboard_open_files_limit`; `docs/operations.md` says how to raise the hard limit.

/// Raises the soft open-file limit to the hard one; returns `(soft, hard)` as now in force
/// (`None` where the platform has no such limit or the call fails).
// `rlim_t` is `u64` on Linux but not on every unix: the casts are needed elsewhere.
#[allow(clippy::unnecessary_cast)]
// The crate's one `unsafe` (Cargo.toml `[lints]` denies it elsewhere): libc's rlimit calls.
#[allow(unsafe_code)]
pub fn raise() -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `getrlimit` and `setrlimit` read and write the one `rlimit` passed, which
        // lives on this stack frame for the whole call.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return None;
            }
            if lim.rlim_cur < lim.rlim_max {
                let wanted = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                    lim.rlim_cur = lim.rlim_max;
                }
            }
        }
        Some((lim.rlim_cur as u64, lim.rlim_max as u64))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        let (soft, hard) = super::raise().expect("a unix process has an open-file limit");
        assert_eq!(soft, hard);
    }
}
