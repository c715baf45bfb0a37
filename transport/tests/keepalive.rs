//! Every TCP connection, made or accepted, detects a vanished peer within a
//! bound (keepalive and `TCP_USER_TIMEOUT`), checked on real sockets.

use std::time::Duration;

use actor_transport::{Addr, Listener, Stream};

const BOUND: Duration = Duration::from_secs(20);

/// Every TCP connection, on both sides, has keepalive and a user timeout so a
/// vanished peer is detected by the kernel within a bound.
#[tokio::test]
async fn tcp_connections_carry_keepalive() {
    let listener = Listener::bind(&Addr::loopback(0)).await.expect("bind");
    let addr = listener.local_addr().clone();
    let client = tokio::time::timeout(BOUND, Stream::connect(&addr, BOUND))
        .await
        .expect("connect in time")
        .expect("connect");
    let (server, _) =
        tokio::time::timeout(BOUND, listener.accept()).await.expect("accept in time").expect("accept");
    for (side, s) in [("connector", &client), ("acceptor", &server)] {
        let Stream::Tcp(tcp) = s else { unreachable!("a tcp address") };
        let sock = socket2::SockRef::from(tcp);
        assert!(sock.keepalive().expect("SO_KEEPALIVE"), "{side}: no keepalive");
        let idle = sock.tcp_keepalive_time().expect("TCP_KEEPIDLE");
        assert!(idle <= Duration::from_secs(30), "{side}: keepalive idle {idle:?}");
        #[cfg(target_os = "linux")]
        {
            let user = sock.tcp_user_timeout().expect("TCP_USER_TIMEOUT");
            assert!(user.is_some_and(|t| t <= Duration::from_secs(60)), "{side}: user timeout {user:?}");
        }
    }
}
