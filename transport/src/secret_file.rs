//! The per-user secret: what a tree requires of its peers when no token is
//! configured.
//!
//! Without it, a tree with no `ACTOR_TOKEN` welcomed any local user. A root
//! (or the `arbiter` daemon) with neither a token nor TLS reads the secret from a file only its
//! user can read, creating it on first use, so every program of that user on
//! this host (other roots, standalone actors, `find_actor` callers) shares it
//! and nobody else has it. It is one file per user, like Erlang's cookie:
//! a file per arbiter would add nothing, since the same user could read all
//! of them.
//!
//! The file lives in `$XDG_RUNTIME_DIR/actor/token` (a per-user tmpfs on
//! systemd hosts) or, without it, in `/tmp/actor-<uid>/token`; `ACTOR_TOKEN_FILE`
//! names another. Every directory we create is 0700 and the file 0600. A
//! file that is not ours or that others may read, or a directory that is not
//! ours or that others may write to, is refused rather than trusted, since on
//! a shared /tmp another user may have planted it.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::handshake::Secret;

/// Environment variable naming the file that holds the tree's secret when
/// `ACTOR_TOKEN` is not set.
pub const ENV_TOKEN_FILE: &str = "ACTOR_TOKEN_FILE";

/// The largest secret file we read; a real one is 65 bytes.
const MAX_LEN: u64 = 4096;

/// Where this user's default secret lives: `ACTOR_TOKEN_FILE`, else
/// `$XDG_RUNTIME_DIR/actor/token`, else `/tmp/actor-<uid>/token`.
pub fn default_token_path() -> PathBuf {
    if let Some(path) = std::env::var_os(ENV_TOKEN_FILE).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("actor").join("token"),
        None => PathBuf::from(format!("/tmp/actor-{}", nix::unistd::geteuid())).join("token"),
    }
}

/// Reads the secret at `path`, creating the file (and its directory) with a
/// fresh random secret if it does not exist. Concurrent first uses agree on
/// one secret: the file appears whole, by a hard link, or not at all.
///
/// # Errors
///
/// An I/O error if the directory or the file cannot be created or read, is
/// not owned by this user, can be read or written by anyone else, or holds
/// no hex secret.
pub fn load_or_create_token(path: &Path) -> io::Result<Secret> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        private_dir(dir)?;
    }
    match read(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(path),
        r => r,
    }
}

/// Makes sure `dir` exists, is a directory (not a link), is ours, and only
/// we can change what it holds. Others may list it (a home directory is
/// usually 0755): the file inside is what must stay unreadable.
fn private_dir(dir: &Path) -> io::Result<()> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        // The parent may be missing (XDG_RUNTIME_DIR/actor's parent is the
        // runtime dir itself, which we do not create).
        Err(e) => return Err(io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display()))),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(refused(dir, "is not a directory"));
    }
    ours(dir, &meta, 0o022, "others can write to it")
}

/// Refuses `path` unless we own it and none of the `forbidden` mode bits
/// (those that would let other users in) is set.
fn ours(path: &Path, meta: &std::fs::Metadata, forbidden: u32, why: &str) -> io::Result<()> {
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(refused(path, &format!("is owned by uid {}, not by us ({me})", meta.uid())));
    }
    if meta.mode() & forbidden != 0 {
        return Err(refused(path, &format!("has mode {:o}: {why}", meta.mode() & 0o777)));
    }
    Ok(())
}

fn refused(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("refusing the token file {}: it {why}", path.display()),
    )
}

/// Reads an existing secret file, checking that it is ours alone.
fn read(path: &Path) -> io::Result<Secret> {
    // O_NOFOLLOW: a link planted in our place is refused, not followed.
    let file = OpenOptions::new().read(true).custom_flags(nix::libc::O_NOFOLLOW).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refused(path, "is not a regular file"));
    }
    ours(path, &meta, 0o077, "other users may read or write it")?;
    let mut text = String::new();
    file.take(MAX_LEN).read_to_string(&mut text)?;
    Secret::from_hex(text.trim()).filter(|s| s.to_hex().len() >= 32).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{} holds no hex secret", path.display()))
    })
}

/// Writes a fresh secret to a temporary file, then links it into place; if
/// another process got there first, its secret wins.
fn create(path: &Path) -> io::Result<Secret> {
    let secret = Secret::random();
    // Unique per attempt, so racing creators never share a temporary file.
    let nonce = Secret::random().to_hex();
    let tmp = path.with_extension(format!("tmp.{}.{}", std::process::id(), &nonce[..16]));
    let written = (|| {
        let mut f: File = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(format!("{}\n", secret.to_hex()).as_bytes())?;
        f.sync_all()
    })();
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(secret),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read(path),
        Err(e) => {
            Err(io::Error::new(e.kind(), format!("cannot create the token file {}: {e}", path.display())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("actor-secret-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_first_use_creates_a_private_file_and_later_uses_read_it() {
        let dir = scratch("create");
        let path = dir.join("token");
        let first = load_or_create_token(&path).expect("create");
        assert_eq!(std::fs::metadata(&dir).expect("dir").permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(&path).expect("file").permissions().mode() & 0o777, 0o600);
        let again = load_or_create_token(&path).expect("read");
        assert!(first == again, "the second use must read the first secret");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        let dir = scratch("open");
        let path = dir.join("token");
        load_or_create_token(&path).expect("create");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let Err(e) = load_or_create_token(&path) else { panic!("a file others can read was trusted") };
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_directory_others_can_write_to_is_refused() {
        let dir = scratch("dir");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let Err(e) = load_or_create_token(&dir.join("token")) else {
            panic!("a shared directory was trusted")
        };
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_directory_others_may_only_list_is_accepted() {
        let dir = scratch("listable");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert!(load_or_create_token(&dir.join("token")).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_symlink_in_place_of_the_file_is_refused() {
        let dir = scratch("link");
        let path = dir.join("token");
        load_or_create_token(&dir.join("real")).expect("create");
        std::os::unix::fs::symlink(dir.join("real"), &path).expect("symlink");
        assert!(load_or_create_token(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
