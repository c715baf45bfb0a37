//! Requests to an arbiter that never answers fail with a timeout naming the
//! request, instead of hanging the caller.

mod common;

use std::time::Duration;

use actor_arbiter::{ArbiterClient, ClientError};
use actor_transport::{Addr, Auth, Listener, Uid};
use common::{fake_addr, hs_uid, within};

// ---------------------------------------------------------------------------
// Timeouts: an arbiter that completes the handshake and then never answers.

/// A fake arbiter: handshakes every client (no token) and then reads and
/// ignores whatever it sends, forever.
async fn silent_arbiter() -> Addr {
    let listener = Listener::bind(&Addr::loopback(0)).await.expect("bind");
    let addr = listener.local_addr().clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let hs = hs_uid(Uid::new("arbiter"));
                if let Ok((mut ch, _)) = actor_transport::accept(stream, &hs, |_| Auth::Open).await {
                    while let Ok(Some(_)) = ch.recv().await {}
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn requests_to_an_arbiter_that_never_answers_time_out() {
    let addr = silent_arbiter().await;
    let client = within("connect", ArbiterClient::connect(&addr, &hs_uid(Uid::new("root")), None))
        .await
        .expect("the fake arbiter handshakes")
        .with_request_timeout(Duration::from_millis(200));
    match within("register", client.register(&fake_addr(1))).await {
        Err(ClientError::Timeout { request, .. }) => assert_eq!(request, actor_arbiter::REGISTER),
        other => panic!("expected a timeout naming `register`, got {other:?}"),
    }
    match within("find", client.find("anyone")).await {
        Err(e @ ClientError::Timeout { .. }) => assert!(e.to_string().contains("arbiter::find"), "{e}"),
        other => panic!("expected a timeout naming `find`, got {other:?}"),
    }
}
