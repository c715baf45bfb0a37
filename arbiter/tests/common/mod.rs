//! Helpers shared by the arbiter's integration tests.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use actor_arbiter::{ArbiterConfig, ArbiterHandle, spawn_embedded};
use actor_transport::{Addr, CallKind, ChannelConfig, HandshakeConfig, Listener, Msg, Uid};
use bytes::Bytes;

/// Upper bound for every wait in these tests.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Awaits `fut`, failing the test after [`LIMIT`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(LIMIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {LIMIT:?}: {what}"),
    }
}

/// A handshake configuration for `uid`.
pub fn hs_uid(uid: Uid) -> HandshakeConfig {
    HandshakeConfig { uid, timeout: Duration::from_secs(5), channel: ChannelConfig::default() }
}

/// An embedded arbiter on a fresh loopback port, admitting anyone.
pub async fn start() -> ArbiterHandle {
    let listener = Listener::bind(&Addr::loopback(0)).await.expect("bind loopback port 0");
    spawn_embedded(listener, config()).await
}

/// An arbiter configuration without a token.
pub fn config() -> ArbiterConfig {
    ArbiterConfig {
        uid: Uid::new("arbiter"),
        token: None,
        handshake_timeout: Duration::from_secs(2),
        admission: Default::default(),
    }
}

/// A loopback address nobody listens on (entries need not be reachable).
pub fn fake_addr(port: u16) -> Addr {
    Addr::loopback(port)
}

/// A Unix socket address of `len + 1` path bytes.
pub fn long_unix_addr(len: usize) -> Addr {
    Addr::Unix(PathBuf::from(format!("/{}", "a".repeat(len))))
}

/// A single-result call.
pub fn start_msg(cid: u64, func: &str, args: Vec<u8>) -> Msg {
    Msg::Start {
        cid,
        func: func.into(),
        kind: CallKind::Single,
        args: Bytes::from(args),
        window: 0,
        timeout_ms: None,
        key: None,
        trace: None,
    }
}
