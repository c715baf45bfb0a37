//! Registrations belong to the connection that made them, and every length and
//! count the arbiter keeps is capped with a typed refusal; listings of any size
//! arrive in pages. Over real loopback sockets.

mod common;

use std::sync::Arc;
use std::time::Duration;

use actor_arbiter::registry::{MAX_ADDR_LEN, MAX_ID_LEN, MAX_NAME_LEN};
use actor_arbiter::{ArbiterClient, ClientError, Entry, LIST, Limits, Refusal, Registry, serve_registry};
use actor_transport::{Addr, Listener, Msg, Uid, connect};
use common::{config, fake_addr, hs_uid, long_unix_addr, start, start_msg, within};

// ---------------------------------------------------------------------------
// Ownership: a uid registered over one live connection cannot be taken over,
// nor removed, over another.

#[tokio::test]
async fn a_second_connection_cannot_take_over_or_remove_a_registered_uid() {
    let arbiter = start().await;
    let addr = arbiter.local_addr().clone();
    let victim_uid = Uid::new("victim");
    let victim = within("victim connects", ArbiterClient::connect(&addr, &hs_uid(victim_uid.clone()), None))
        .await
        .expect("victim connects");
    within("victim registers", victim.register(&fake_addr(1001))).await.expect("victim registers");
    let observer =
        within("observer connects", ArbiterClient::connect(&addr, &hs_uid(Uid::new("observer")), None))
            .await
            .expect("observer connects");
    let victim_entry = vec![Entry { uid: victim_uid.clone(), addr: fake_addr(1001) }];

    // The attacker claims the victim's uid in its handshake.
    let attacker =
        within("attacker connects", ArbiterClient::connect(&addr, &hs_uid(victim_uid.clone()), None))
            .await
            .expect("attacker connects");
    let taken = within("attacker registers", attacker.register(&fake_addr(6666))).await;
    assert!(taken.is_err(), "registering a uid another live connection owns must be refused");
    let refused = taken.unwrap_err();
    assert_eq!(refused.refusal(), Some(Refusal::Claimed), "{refused}");
    assert!(refused.to_string().contains("registered by another connection"), "{refused}");
    assert_eq!(within("find", observer.find("victim")).await.expect("find"), victim_entry);

    let removed = within("attacker unregisters", attacker.unregister()).await;
    assert!(removed.is_err(), "unregistering a uid another connection owns must be refused");
    assert_eq!(removed.unwrap_err().refusal(), Some(Refusal::Claimed));
    assert_eq!(within("find", observer.find("victim")).await.expect("find"), victim_entry);

    // The attacker leaves: the victim's entry stays.
    within("attacker closes", attacker.close()).await;
    within("the arbiter drops the attacker's connection", async {
        while arbiter.registry().connection_count() > 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(within("find", observer.find("victim")).await.expect("find"), victim_entry);

    // The owner itself may still re-register and unregister.
    within("victim re-registers", victim.register(&fake_addr(1002))).await.expect("re-register");
    within("victim unregisters", victim.unregister()).await.expect("unregister");
    assert!(within("find", observer.find("victim")).await.expect("find").is_empty());
}

#[tokio::test]
async fn refusals_of_lengths_are_typed_and_the_connection_lives_on() {
    let arbiter = start().await;
    let addr = arbiter.local_addr().clone();
    let long_name = Uid { name: "n".repeat(MAX_NAME_LEN + 1), id: "1".into() };
    let long_id = Uid { name: "ok".into(), id: "i".repeat(MAX_ID_LEN + 1) };
    for (uid, refusal) in [(long_name, Refusal::NameTooLong), (long_id, Refusal::IdTooLong)] {
        let c = within("connect", ArbiterClient::connect(&addr, &hs_uid(uid), None)).await.expect("connect");
        let e = within("register", c.register(&fake_addr(1))).await.expect_err("refused");
        assert_eq!(e.refusal(), Some(refusal), "{e}");
        assert!(within("list", c.list()).await.expect("still usable").is_empty());
    }
    let c = within("connect", ArbiterClient::connect(&addr, &hs_uid(Uid::new("ok")), None))
        .await
        .expect("connect");
    let e = within("register", c.register(&long_unix_addr(MAX_ADDR_LEN))).await.expect_err("refused");
    assert_eq!(e.refusal(), Some(Refusal::AddrTooLong), "{e}");
    let e = within("wait_for", c.wait_for(&"w".repeat(MAX_NAME_LEN + 1))).await.expect_err("refused");
    assert_eq!(e.refusal(), Some(Refusal::NameTooLong), "{e}");
    assert!(arbiter.registry().is_empty());
    assert_eq!(arbiter.registry().waiter_count(), 0);
}

#[tokio::test]
async fn entries_and_waiters_are_capped_with_typed_refusals() {
    let limits =
        Limits { max_entries: 3, max_entries_per_connection: 1, max_waiters: 2, ..Limits::default() };
    let registry = Arc::new(Registry::with_limits(limits));
    let listener = Listener::bind(&Addr::loopback(0)).await.expect("bind");
    let addr = listener.local_addr().clone();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(serve_registry(listener, config(), registry.clone(), shutdown.clone()));

    let mut clients = Vec::new();
    for i in 0..4u16 {
        let c = within("connect", ArbiterClient::connect(&addr, &hs_uid(Uid::new("many")), None))
            .await
            .expect("connect");
        let res = within("register", c.register(&fake_addr(i))).await;
        if i < 3 {
            res.expect("under the cap");
        } else {
            let e = res.expect_err("past the cap");
            assert_eq!(e.refusal(), Some(Refusal::RegistryFull), "{e}");
        }
        clients.push(Arc::new(c));
    }
    assert_eq!(registry.len(), 3);

    let waiter = clients[0].clone();
    let pending: Vec<_> = (0..2)
        .map(|i| {
            let w = waiter.clone();
            tokio::spawn(async move { w.wait_for(&format!("nobody-{i}")).await })
        })
        .collect();
    within("two waiters", async {
        while registry.waiter_count() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let e = within("third waiter", clients[1].wait_for("nobody-else")).await.expect_err("past the cap");
    assert_eq!(e.refusal(), Some(Refusal::TooManyWaiters), "{e}");
    for p in pending {
        p.abort();
    }
    shutdown.cancel();
    within("shutdown", server).await.expect("join").expect("serve");
}

#[tokio::test]
async fn a_listing_of_many_large_entries_arrives_whole_in_pages() {
    let arbiter = start().await;
    let addr = arbiter.local_addr().clone();
    let name = "n".repeat(MAX_NAME_LEN);
    let mut expected = Vec::new();
    let mut held = Vec::new();
    for i in 0..200 {
        let uid = Uid { name: name.clone(), id: format!("{i:0>width$}", width = MAX_ID_LEN) };
        let c = within("connect", ArbiterClient::connect(&addr, &hs_uid(uid.clone()), None))
            .await
            .expect("connect");
        let a = long_unix_addr(MAX_ADDR_LEN - "unix:///".len() + i % 2);
        let a = if a.to_string().len() > MAX_ADDR_LEN { fake_addr(i as u16) } else { a };
        within("register", c.register(&a)).await.expect("register");
        expected.push(Entry { uid, addr: a });
        held.push(c);
    }
    expected.sort_by(|x, y| x.uid.cmp(&y.uid));
    let lister = within("connect", ArbiterClient::connect(&addr, &hs_uid(Uid::new("lister")), None))
        .await
        .expect("connect");
    // One page cannot hold them: the plain calls refuse, the paged ones deliver.
    let first = within("one page", lister.list_page(None, 0)).await.expect("a page");
    assert!(first.more && first.entries.len() < expected.len(), "{} entries", first.entries.len());
    assert_eq!(within("list", lister.list()).await.expect("list"), expected);
    assert_eq!(within("find", lister.find(&name)).await.expect("find"), expected);
    let (mut raw, _) = within("raw", connect(&addr, &hs_uid(Uid::new("raw")), None)).await.expect("connect");
    raw.send(&start_msg(1, LIST, rmp_serde::to_vec(&()).expect("encode"))).await.expect("send");
    match within("LIST reply", raw.recv()).await {
        Ok(Some(Msg::Error { cid: 1, error })) => {
            assert_eq!(Refusal::from_type_name(&error.type_name), Some(Refusal::ReplyTooLarge), "{error:?}");
            assert!(error.message.contains(actor_arbiter::LIST_PAGE), "{}", error.message);
        }
        other => panic!("expected a ReplyTooLarge refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_until_one_leaves() {
    let limits = Limits { max_connections: 2, ..Limits::default() };
    let registry = Arc::new(Registry::with_limits(limits));
    let listener = Listener::bind(&Addr::loopback(0)).await.expect("bind");
    let addr = listener.local_addr().clone();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(serve_registry(listener, config(), registry.clone(), shutdown.clone()));
    let connect_as = |name: &'static str| {
        let addr = addr.clone();
        async move { ArbiterClient::connect(&addr, &hs_uid(Uid::new(name)), None).await }
    };

    let first = within("first", connect_as("first")).await.expect("under the cap");
    let second = within("second", connect_as("second")).await.expect("under the cap");
    within("register", first.register(&fake_addr(1))).await.expect("register");
    let third = within("third", connect_as("third")).await;
    assert!(matches!(third, Err(ClientError::Handshake { .. })), "past the cap: {third:?}");
    // The admitted connections are undisturbed.
    assert_eq!(within("list", second.list()).await.expect("list").len(), 1);

    drop(first);
    let again = within("a place frees up", async {
        loop {
            match connect_as("again").await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    })
    .await;
    within("list", again.list()).await.expect("list");
    shutdown.cancel();
    within("shutdown", server).await.expect("join").expect("serve");
}
