//! Unix-socket listeners: private whatever the umask, and able to replace the
//! file a crashed predecessor left behind, but never a live listener's.
//!
//! Its own test binary, because the umask is per process.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use actor_transport::{Addr, Listener};

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("actor-unix-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("sock")
}

#[tokio::test]
async fn a_unix_listener_is_private_whatever_the_umask() {
    let path = temp_path("mode");
    // The most permissive umask: without care, the socket would be 0777.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let res = Listener::bind(&Addr::Unix(path.clone())).await;
    nix::sys::stat::umask(old);
    let listener = res.expect("bind");
    let mode = std::fs::metadata(&path).expect("socket file").permissions().mode() & 0o777;
    assert_eq!(mode & 0o077, 0, "the socket is open to others: {mode:o}");
    drop(listener);
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced_but_a_live_one_is_not() {
    let path = temp_path("stale");
    // What a SIGKILLed listener leaves: a socket file nobody accepts on.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind std"));
    assert!(path.exists(), "std leaves the file behind");
    let live = Listener::bind(&Addr::Unix(path.clone())).await.expect("binding over a stale socket file");

    // While it listens, a second bind must fail and leave the first intact.
    match Listener::bind(&Addr::Unix(path.clone())).await {
        Err(e) => {
            assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
            assert!(e.to_string().contains("listening"), "{e}");
        }
        Ok(_) => panic!("bound over a live listener"),
    }
    assert!(std::os::unix::net::UnixStream::connect(&path).is_ok(), "the live listener was disturbed");
    drop(live);

    // A regular file is not ours to delete.
    std::fs::write(&path, b"data").expect("write file");
    assert!(Listener::bind(&Addr::Unix(path.clone())).await.is_err());
    assert_eq!(std::fs::read(&path).expect("file kept"), b"data");
}
