//! Files no other local user may read: `DATA_DIR` and `uploads/` are `0700`, the database (with
//! its `-wal` and `-shm`), uploaded files and kept secrets are `0600`.
//!
//! Modes are set when a file or directory is created, so the process umask cannot loosen them;
//! an existing one that is looser (left by an older release, a restore or a careless `cp`) is
//! tightened at start-up, with a warning, since its contents may already have been read.
//! Depends on nothing else in the crate.

use std::io::Write as _;
use std::path::Path;

/// Group and other permission bits: any of them set means "readable by other local users".
#[cfg(unix)]
const SHARED_BITS: u32 = 0o077;

/// Creates `dir` (and missing parents) as `0700`, or tightens an existing looser one.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    tighten(dir, 0o700)
}

/// Tightens an existing file to `0600` (nothing to do when it does not exist).
pub fn tighten_file(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => tighten(path, 0o600),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates (or truncates) `path` as a `0600` file, for content written once and renamed or kept.
pub fn create_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let file = opts.open(path)?;
    // `mode` only applies to a file this call created; an existing one keeps its bits.
    tighten(path, 0o600)?;
    Ok(file)
}

/// Creates (or truncates) `path` as a `0600` file open for writing and reading back: scratch
/// content such as an upload being received.
pub fn create_scratch_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let file = opts.open(path)?;
    tighten(path, 0o600)?;
    Ok(file)
}

/// Writes `content` to a `0600` file.
pub fn write_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    create_file(path)?.write_all(content)
}

#[cfg(unix)]
fn tighten(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current & SHARED_BITS == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    tracing::warn!(
        path = %path.display(),
        was = format!("{current:o}"),
        now = format!("{mode:o}"),
        "was readable by other local users: made private (rotate a secret kept there if \
         others could have read it)"
    );
    Ok(())
}

#[cfg(not(unix))]
fn tighten(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}
