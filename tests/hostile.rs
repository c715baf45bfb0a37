//! Hostile and broken peers against a live actor: each attempt gets a clear
//! error or a closed connection, while a legitimate peer keeps being served
//! and the actor's memory stays bounded.

mod common;

use std::time::Duration;

use actor::transport::Stream;
use actor::transport::{
    Addr, CallKind, Channel, ErrorKind, HandshakeConfig, HandshakeError, Listener, Msg, Secret, Uid, connect,
};
use bytes::Bytes;
use common::Tree;
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const TOKEN: &str = "00112233445566778899aabbccddeeff";
const BOUND: Duration = Duration::from_secs(20);

fn hs(name: &str) -> HandshakeConfig {
    HandshakeConfig { uid: Uid::new(name), timeout: Duration::from_secs(5), channel: Default::default() }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("victim status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS")
}

/// One call over a raw channel: `Start` then the matching reply.
async fn call(ch: &mut Channel, cid: u64, func: &str, args: &impl serde::Serialize) -> Msg {
    let args = Bytes::from(rmp_serde::to_vec(args).expect("encode args"));
    let start = Msg::Start {
        cid,
        func: func.into(),
        kind: CallKind::Single,
        args,
        window: 0,
        timeout_ms: None,
        key: None,
        trace: None,
    };
    timeout(BOUND, ch.send(&start)).await.expect("send in time").expect("send");
    loop {
        let msg = timeout(BOUND, ch.recv()).await.expect("reply in time").expect("recv").expect("open");
        if msg.cid() == Some(cid) {
            return msg;
        }
    }
}

async fn square(ch: &mut Channel, cid: u64, x: u64) -> u64 {
    match call(ch, cid, "scenarios::square", &(x,)).await {
        Msg::Return { value, .. } => rmp_serde::from_slice(&value).expect("decode"),
        other => panic!("legitimate call failed: {other:?}"),
    }
}

/// Waits until the server closes `s` (reads EOF or a reset).
async fn closed_by_server(mut s: tokio::net::TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match timeout(BOUND, s.read(&mut buf)).await.expect("the server must close the connection") {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn raw(addr: &Addr) -> tokio::net::TcpStream {
    match Stream::connect(addr, Duration::from_secs(5)).await.expect("connect") {
        Stream::Tcp(s) => s,
        _ => unreachable!("tcp address"),
    }
}

#[test]
fn an_actor_under_attack_keeps_serving_its_legitimate_peers() {
    let mut victim = Tree::start("scenarios", &["victim"], &[("ACTOR_TOKEN", TOKEN)]);
    let line = victim.wait_for_line("VICTIM", BOUND);
    let parts: Vec<&str> = line.split_whitespace().collect();
    let addr: Addr = parts[1].parse().expect("victim address");
    let arbiter: Addr = parts[2].parse().expect("arbiter address");
    let pid: u32 = parts[3].parse().expect("pid");
    let token = Secret::from_hex(TOKEN).expect("token");

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let (mut legit, _) = connect(&addr, &hs("legit"), Some(&token)).await.expect("legit connect");
        let mut cid = 1;
        let mut next = || {
            cid += 2;
            cid
        };
        assert_eq!(square(&mut legit, next(), 7).await, 49);
        let rss_before = rss_kib(pid);

        // Garbage instead of a hello.
        let mut s = raw(&addr).await;
        s.write_all(b"GET / HTTP/1.1\r\nHost: victim\r\n\r\n").await.expect("write");
        closed_by_server(s).await;

        // A 4 GiB length prefix, before and after the handshake.
        let mut s = raw(&addr).await;
        s.write_all(&[0xff, 0xff, 0xff, 0xff]).await.expect("write");
        closed_by_server(s).await;
        let (ch, _) = connect(&addr, &hs("prefix"), Some(&token)).await.expect("connect");
        drop(ch);
        let mut s = raw(&addr).await;
        s.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await.expect("write");
        closed_by_server(s).await;
        assert_eq!(square(&mut legit, next(), 8).await, 64);

        // Half a frame, then silence: dropped at the handshake timeout.
        let mut s = raw(&addr).await;
        s.write_all(&[0, 0, 0, 50, 0x81]).await.expect("write");
        closed_by_server(s).await;

        // No token, a wrong token: refused with a reason.
        for secret in [None, Some(Secret::random())] {
            match connect(&addr, &hs("intruder"), secret.as_ref()).await {
                Err(HandshakeError::Refused { reason }) => {
                    assert!(reason.contains("authentication"), "{reason}")
                }
                other => panic!("an intruder got in: {:?}", other.map(|(_, u)| u)),
            }
        }

        // A thousand connections that never finish the handshake, while the
        // legitimate peer keeps calling.
        let mut silent = Vec::new();
        for _ in 0..1000 {
            silent.push(raw(&addr).await);
        }
        for x in 0..20 {
            assert_eq!(square(&mut legit, next(), x).await, x * x);
        }
        let closes: Vec<_> = silent.into_iter().map(closed_by_server).collect();
        futures::future::join_all(closes).await;

        // Unknown functions, wrong argument types, cancels for calls it does not own.
        match call(&mut legit, next(), "no::such::function", &()).await {
            Msg::Error { error, .. } => assert_eq!(error.kind, ErrorKind::UnknownFunction),
            other => panic!("{other:?}"),
        }
        match call(&mut legit, next(), "scenarios::square", &("seven",)).await {
            Msg::Error { error, .. } => {
                assert_eq!(error.kind, ErrorKind::BadArguments);
                assert!(error.message.contains("(u64,)"), "{}", error.message);
            }
            other => panic!("{other:?}"),
        }
        for cid in [999_999, 2, 4] {
            legit.send(&Msg::Cancel { cid, canceller: Uid::new("legit") }).await.expect("send");
        }
        let (mut other, _) = connect(&addr, &hs("other"), Some(&token)).await.expect("connect");
        let c = 1;
        other.send(&Msg::Cancel { cid: c + 2, canceller: Uid::new("other") }).await.expect("send");
        assert_eq!(square(&mut other, c, 3).await, 9);
        assert_eq!(square(&mut legit, next(), 12).await, 144);

        // Registering with the arbiter without the cluster token: refused.
        match actor::arbiter::ArbiterClient::connect(&arbiter, &hs("root"), None).await {
            Err(e) => assert!(e.to_string().contains("refused"), "{e}"),
            Ok(_) => panic!("registered without credentials"),
        }

        let rss_after = rss_kib(pid);
        assert!(
            rss_after < rss_before + 64 * 1024,
            "the victim grew from {rss_before} KiB to {rss_after} KiB under attack"
        );
    });
    drop(rt);
    victim.signal(Signal::SIGTERM);
    let out = victim.finish(BOUND);
    assert!(out.status.success(), "{out:?}");
}

/// Peak resident memory (VmHWM) of `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("victim status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Starts a victim with the cluster token and returns it with its address and pid.
fn victim(env: &[(&str, &str)]) -> (common::Tree, Addr, u32) {
    let mut all = vec![("ACTOR_TOKEN", TOKEN)];
    all.extend_from_slice(env);
    let mut victim = Tree::start("scenarios", &["victim"], &all);
    let line = victim.wait_for_line("VICTIM", BOUND);
    let parts: Vec<&str> = line.split_whitespace().collect();
    let addr: Addr = parts[1].parse().expect("victim address");
    let pid: u32 = parts[3].parse().expect("pid");
    (victim, addr, pid)
}

/// Writes a 16 MiB length prefix and (nearly) all of its payload before any
/// handshake, then waits for the victim to hang up. Write errors are the
/// victim closing on us, which is the point.
async fn announce_huge_frame(addr: Addr) {
    const HUGE: usize = 16 * 1024 * 1024;
    let mut s = raw(&addr).await;
    let mut bytes = vec![0u8; HUGE + 3];
    bytes[..4].copy_from_slice(&(HUGE as u32).to_be_bytes());
    let _ = timeout(BOUND, s.write_all(&bytes)).await.expect("the victim must read or close");
    drop(bytes);
    closed_by_server(s).await;
}

#[test]
fn unauthenticated_peers_announcing_huge_frames_cost_little_memory() {
    let (victim, addr, pid) = victim(&[]);
    let token = Secret::from_hex(TOKEN).expect("token");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let (mut legit, _) = connect(&addr, &hs("legit"), Some(&token)).await.expect("legit connect");
        assert_eq!(square(&mut legit, 1, 7).await, 49);
        let before = rss_kib(pid);
        let attacks: Vec<_> = (0..100).map(|_| tokio::spawn(announce_huge_frame(addr.clone()))).collect();
        for a in attacks {
            a.await.expect("attacker task");
        }
        let peak = peak_rss_kib(pid);
        assert_eq!(square(&mut legit, 3, 8).await, 64);
        let after = rss_kib(pid);
        println!("victim RSS under 100 x 16 MiB pre-auth frames: before {before} KiB, peak {peak} KiB, after {after} KiB");
        assert!(
            peak < before + 64 * 1024,
            "the victim grew from {before} KiB to a peak of {peak} KiB (after: {after} KiB)"
        );
    });
    drop(rt);
    victim.signal(Signal::SIGTERM);
    let out = victim.finish(BOUND);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn peers_cannot_forge_log_lines_and_hangups_are_not_warnings() {
    // An empty NO_COLOR leaves the colour decision to the program: its stderr
    // is a pipe here, so it must not colour.
    let (victim, addr, _) = victim(&[("NO_COLOR", "")]);
    let token = Secret::from_hex(TOKEN).expect("token");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        // A uid crafted to forge a log line and to drive the terminal.
        let forged =
            Uid { name: "evil\nFORGED WARN all is well\x1b[2J".into(), id: "\x1b[31mred\r\n".into() };
        let config = HandshakeConfig { uid: forged, ..hs("unused") };
        assert!(connect(&addr, &config, None).await.is_err(), "admitted without the token");

        // Peers that reset or hang up in the middle of the handshake.
        for _ in 0..5 {
            let s = raw(&addr).await;
            s.set_zero_linger().expect("linger");
            drop(s);
            drop(raw(&addr).await);
        }
        let (mut legit, _) = connect(&addr, &hs("legit"), Some(&token)).await.expect("legit connect");
        assert_eq!(square(&mut legit, 1, 5).await, 25);
    });
    drop(rt);
    victim.signal(Signal::SIGTERM);
    let out = victim.finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    assert!(!out.stderr.contains('\x1b'), "escape codes in the log: {:?}", out.stderr);
    assert!(!out.stderr.contains('\r'), "carriage return in the log: {:?}", out.stderr);
    for line in out.stderr.lines() {
        assert!(!line.trim_start().starts_with("FORGED"), "a forged log line: {:?}", out.stderr);
        if line.contains("WARN") {
            assert!(line.contains("authentication"), "an unexpected warning: {line:?}");
        }
    }
    assert!(out.stderr.contains(r"evil\nFORGED"), "the refusal is not logged escaped: {:?}", out.stderr);
}

#[test]
fn short_or_empty_tokens_are_refused_at_startup() {
    for bad in ["", "abcd", "00112233445566778899aabbccddee"] {
        let tree = Tree::start("scenarios", &["victim"], &[("ACTOR_TOKEN", bad)]);
        let out = tree.finish(BOUND);
        assert!(!out.status.success(), "started with ACTOR_TOKEN={bad:?}: {out:?}");
        assert!(out.stderr.contains("ACTOR_TOKEN"), "{bad:?}: {:?}", out.stderr);
        assert!(out.stderr.contains("16 bytes"), "{bad:?}: {:?}", out.stderr);
    }
}

#[test]
fn the_arbiter_daemon_refuses_a_short_token() {
    let dir = std::env::temp_dir().join(format!("actor-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("token");
    std::fs::write(&file, "abcdef0123\n").expect("token file");
    let file = file.to_str().expect("utf-8 path");
    let tree = Tree::start_program(
        &common::binary("arbiter"),
        &["--bind", "tcp://127.0.0.1:0", "--token-file", file],
        &[],
    );
    let out = tree.finish(BOUND);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success(), "the arbiter started with a 5-byte token: {out:?}");
    assert!(out.stderr.contains("16 bytes"), "{:?}", out.stderr);
}

#[test]
fn an_actor_with_a_token_refuses_an_arbiter_that_cannot_prove_it() {
    // Whoever listens on the arbiter's address without the cluster token. It
    // speaks the client's own version and admits it without proving anything
    // (as every acceptor did before servers had to prove the token).
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let listener = rt.block_on(Listener::bind(&Addr::loopback(0))).expect("bind");
    let addr = listener.local_addr().to_string();
    rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut ch = Channel::from_stream(stream, &Default::default());
                let Ok(Some(Msg::Hello { version, .. })) = ch.recv().await else { return };
                let nonce = Bytes::from_static(&[7; 32]);
                if ch.send(&Msg::Hello { version, uid: Uid::new("impostor"), nonce }).await.is_err() {
                    return;
                }
                let Ok(Some(Msg::Auth { .. })) = ch.recv().await else { return };
                if ch.send(&Msg::Welcome).await.is_err() {
                    return;
                }
                // Hold the channel as a real arbiter would.
                while let Ok(Some(_)) = ch.recv().await {}
            });
        }
    });
    let tree = Tree::start("scenarios", &["victim"], &[("ACTOR_TOKEN", TOKEN), ("ACTOR_ARBITER", &addr)]);
    let out = tree.finish(BOUND);
    drop(rt);
    assert!(!out.status.success(), "the actor trusted an arbiter without the token: {out:?}");
    assert!(out.stderr.contains("did not prove"), "{:?}", out.stderr);
    assert!(!out.stdout.contains("VICTIM"), "the actor started serving: {:?}", out.stdout);
}

/// Waits for the server to close `s` and says whether it did so without
/// sending anything (a refusal at accept, not a handshake answer).
async fn closed_silently(mut s: tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match timeout(BOUND, s.read(&mut buf)).await.expect("the server must close the connection") {
        Ok(0) | Err(_) => true,
        Ok(_) => false,
    }
}

#[test]
fn a_listener_closes_connections_beyond_its_caps_at_once() {
    use actor::arbiter::{ArbiterConfig, spawn_embedded};
    use actor::transport::AdmissionConfig;

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let listener = Listener::bind(&Addr::loopback(0)).await.expect("bind");
        let mut config = ArbiterConfig::new(Uid::new("arbiter"));
        // Far beyond this test's bounded waits: a close is the cap, not a timeout.
        config.handshake_timeout = Duration::from_secs(600);
        config.admission = AdmissionConfig { max_handshakes: 2, max_connections: 3 };
        let arbiter = spawn_embedded(listener, config).await;
        let addr = arbiter.local_addr().clone();

        // Two silent connections fill the handshake slots; a third is closed.
        let silent = [raw(&addr).await, raw(&addr).await];
        assert!(closed_silently(raw(&addr).await).await, "a third handshake was let in");

        // Completing the handshakes frees their slots but keeps the connections'.
        drop(silent);
        let mut held = Vec::new();
        for name in ["a", "b", "c"] {
            let mut attempt = 0;
            // The server notices the two dropped connections asynchronously: a
            // connection refused meanwhile is closed at once, so retry (bounded).
            let ch = loop {
                attempt += 1;
                match connect(&addr, &hs(name), None).await {
                    Ok((ch, _)) => break ch,
                    Err(e) if attempt < 1000 && e.is_hangup() => tokio::task::yield_now().await,
                    Err(e) => panic!("client {name} refused: {e}"),
                }
            };
            held.push(ch);
        }
        assert!(closed_silently(raw(&addr).await).await, "a fourth connection was let in");
        drop(held);
        arbiter.shutdown().await.expect("shutdown");
    });
}

// Authenticated attackers: peers holding the cluster token, so past every
// pre-authentication limit, that try to make the victim hold memory or keep
// work alive on their behalf. Each test runs its own victim (the
// `hostile_victim` fixture, with a 1 s peer timeout) so its peak RSS (VmHWM)
// is that attack's alone.

/// The RSS every authenticated attack must keep the victim under.
const RSS_BOUND_KIB: u64 = 256 * 1024;

/// The victim's peer timeout: a peer silent this long is dropped.
const PEER_TIMEOUT: &str = "1";

/// Runs `attack` against a fresh authenticated victim with a peer timeout
/// of `peer_timeout` seconds, given the victim's address and pid; then stops
/// the victim, which must exit cleanly.
fn against_victim<F: std::future::Future<Output = ()>>(
    peer_timeout: &str,
    attack: impl FnOnce(Addr, u32) -> F,
) {
    let (victim, addr, pid) = authed_victim(peer_timeout);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(attack(addr, pid));
    drop(rt);
    victim.signal(Signal::SIGTERM);
    let out = victim.finish(BOUND);
    assert!(out.status.success(), "{out:?}");
}

/// A fresh victim that demands the token, with a peer timeout of
/// `peer_timeout` seconds: its handle, address and pid.
fn authed_victim(peer_timeout: &str) -> (Tree, Addr, u32) {
    let mut victim =
        Tree::start("hostile_victim", &[], &[("ACTOR_TOKEN", TOKEN), ("ACTOR_PEER_TIMEOUT", peer_timeout)]);
    let line = victim.wait_for_line("VICTIM", BOUND);
    let parts: Vec<&str> = line.split_whitespace().collect();
    let addr: Addr = parts[1].parse().expect("victim address");
    let pid: u32 = parts[2].parse().expect("pid");
    (victim, addr, pid)
}

/// RSS now, and the peak so far, in KiB.
fn mem(pid: u32) -> (u64, u64) {
    (rss_kib(pid), peak_rss_kib(pid))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// An authenticated peer over a raw channel whose reader task answers the
/// victim's pings (so it is never dropped as silent) and hands every other
/// message to [`Peer::reply`], except stream items, which it drops.
struct Peer {
    sender: actor::transport::Sender,
    replies: tokio::sync::mpsc::UnboundedReceiver<Msg>,
    /// Replies read while waiting for another call's.
    early: Vec<Msg>,
    next_cid: u64,
    /// The reader task, which holds a sender too: aborted on drop, so that
    /// dropping a `Peer` closes its channel.
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Peer {
    async fn connect(addr: &Addr, name: &str) -> Peer {
        let token = Secret::from_hex(TOKEN).expect("token");
        let (ch, _) = connect(addr, &hs(name), Some(&token)).await.expect("connect with the token");
        let (sender, mut receiver) = ch.split();
        let (tx, replies) = tokio::sync::mpsc::unbounded_channel();
        let pong = sender.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(msg)) = receiver.recv().await {
                match msg {
                    Msg::Ping { nonce } => {
                        let _ = pong.send_now(&Msg::Pong { nonce });
                    }
                    Msg::Yield { .. } | Msg::YieldBatch { .. } => {}
                    other => {
                        if tx.send(other).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Peer { sender, replies, early: Vec::new(), next_cid: 1, reader }
    }

    /// Sends a `Start`; returns its call id.
    async fn start(&mut self, func: &str, kind: CallKind, args: &impl serde::Serialize, window: u32) -> u64 {
        let cid = self.next_cid;
        self.next_cid += 2;
        let args = Bytes::from(rmp_serde::to_vec(args).expect("encode args"));
        let start = Msg::Start {
            cid,
            func: func.into(),
            kind,
            args,
            window,
            timeout_ms: None,
            key: None,
            trace: None,
        };
        timeout(BOUND, self.sender.send(&start)).await.expect("send in time").expect("send");
        cid
    }

    /// The next message for call `cid` (bounded wait).
    async fn reply(&mut self, cid: u64) -> Msg {
        if let Some(i) = self.early.iter().position(|m| m.cid() == Some(cid)) {
            return self.early.remove(i);
        }
        loop {
            let msg =
                timeout(BOUND, self.replies.recv()).await.expect("a reply in time").expect("channel open");
            if msg.cid() == Some(cid) {
                return msg;
            }
            self.early.push(msg);
        }
    }

    async fn call<R: serde::de::DeserializeOwned>(&mut self, func: &str, args: &impl serde::Serialize) -> R {
        let cid = self.start(func, CallKind::Single, args, 0).await;
        match self.reply(cid).await {
            Msg::Return { value, .. } => rmp_serde::from_slice(&value).expect("decode the result"),
            other => panic!("call of {func} failed: {other:?}"),
        }
    }

    async fn square(&mut self, x: u64) {
        assert_eq!(self.call::<u64>("hostile_victim::square", &(x,)).await, x * x);
    }

    /// Waits (bounded) until the victim closes this channel.
    async fn closed_by_victim(mut self) {
        while timeout(BOUND, self.replies.recv()).await.expect("the victim must close the channel").is_some()
        {
        }
    }
}

/// Unread context windows: contexts whose callee never reads what it is sent
/// hold at most the channel's cap on served windows (64 MiB), the next is
/// refused; an item beyond a window closes the channel. Contexts sending to a
/// caller that never grants credit hold at most their windows too.
#[test]
fn unread_context_windows_are_capped_per_channel() {
    const WINDOW: u32 = 16 * 1024 * 1024;
    const ITEM: usize = 1024 * 1024;
    against_victim(PEER_TIMEOUT, |addr, pid| async move {
        let mut legit = Peer::connect(&addr, "legit").await;
        legit.square(7).await;
        let (before, _) = mem(pid);

        // Four contexts of 16 MiB windows fill the 64 MiB cap; the fifth is refused.
        let mut attacker = Peer::connect(&addr, "hoarder").await;
        let mut held = Vec::new();
        for i in 0..5 {
            let cid = attacker.start("hostile_victim::hoard", CallKind::Context, &(), WINDOW).await;
            match attacker.reply(cid).await {
                Msg::Started { .. } if i < 4 => held.push(cid),
                Msg::Error { error, .. } if i == 4 => {
                    assert_eq!(error.kind, ErrorKind::Protocol);
                    assert!(error.message.contains("window"), "{}", error.message);
                }
                other => panic!("context {i}: {other:?}"),
            }
        }
        // Fill every window with items the callee never reads.
        let item = Bytes::from(vec![0x33u8; ITEM]);
        for &cid in &held {
            for _ in 0..WINDOW as usize / ITEM {
                let y = Msg::Yield { cid, value: item.clone() };
                timeout(BOUND, attacker.sender.send(&y)).await.expect("send in time").expect("send");
            }
        }
        // The victim reads a channel in order: this answer comes after it
        // took every item above.
        assert_eq!(attacker.call::<u64>("hostile_victim::running", &()).await, 4);
        legit.square(8).await;
        let (holding, peak) = mem(pid);

        // One item beyond a full window breaks flow control: closed.
        let y = Msg::Yield { cid: held[0], value: item.clone() };
        timeout(BOUND, attacker.sender.send(&y)).await.expect("send in time").expect("send");
        attacker.closed_by_victim().await;
        assert_eq!(legit.call::<u64>("hostile_victim::until_idle", &()).await, 0);
        legit.square(9).await;
        let (after, _) = mem(pid);
        println!(
            "unread contexts (4 x 16 MiB windows filled): RSS before {}, holding {}, peak {}, after {}",
            mib(before),
            mib(holding),
            mib(peak),
            mib(after)
        );
        assert!(peak < RSS_BOUND_KIB, "peak RSS {} over the bound", mib(peak));
        // Large items are not copied out of the read buffer: each pins the
        // buffer it arrived in, up to twice its size (the buffer grows by
        // doubling), so 64 MiB of items may hold up to 128 MiB.
        assert!(
            peak < before + (2 * 64 + 16) * 1024,
            "the 64 MiB cap did not hold: {} -> {}",
            mib(before),
            mib(peak)
        );

        // Contexts that send to a caller that never grants credit: 64 windows
        // of 1 MiB fill the cap, the 65th is refused, each sender stops at
        // its window.
        let mut greedy = Peer::connect(&addr, "greedy").await;
        for i in 0..65 {
            let cid = greedy.start("hostile_victim::flood", CallKind::Context, &(), 1024 * 1024).await;
            match greedy.reply(cid).await {
                Msg::Started { .. } if i < 64 => {}
                Msg::Error { error, .. } if i == 64 => {
                    assert!(error.message.contains("window"), "{}", error.message)
                }
                other => panic!("flood {i}: {other:?}"),
            }
        }
        legit.square(10).await;
        // (VmHWM still holds the first attack's peak: RSS is what counts here.)
        let (flooding, _) = mem(pid);
        drop(greedy);
        assert_eq!(legit.call::<u64>("hostile_victim::until_idle", &()).await, 0);
        let (after2, _) = mem(pid);
        println!(
            "64 flooding contexts never granted credit: RSS {} while flooding, after {}",
            mib(flooding),
            mib(after2)
        );
        assert!(flooding < RSS_BOUND_KIB, "RSS {} over the bound", mib(flooding));
    });
}

/// Batches of items answer to the same rules as single items: a batch that
/// costs more than the credit left, or that is not a sequence of items,
/// closes the sender's channel at once, and the victim keeps serving others.
#[test]
fn batches_beyond_credit_or_malformed_close_the_channel() {
    const WINDOW: u32 = 64 * 1024;
    against_victim(PEER_TIMEOUT, |addr, _pid| async move {
        let mut legit = Peer::connect(&addr, "legit").await;
        legit.square(3).await;
        let mut beyond = actor::transport::BatchBuilder::new();
        // 65 items of 1 KiB: more than the 64 KiB window in one frame.
        for _ in 0..65 {
            beyond.push(&serde_bytes::ByteBuf::from(vec![1u8; 1024])).expect("encode");
        }
        let (beyond, _) = beyond.take().expect("items");
        let cut = Bytes::from_static(b"\xc4\x02\x01\xc4\x09\x01");
        for (name, items) in [("beyond", beyond), ("cut", cut)] {
            let mut attacker = Peer::connect(&addr, name).await;
            let cid = attacker.start("hostile_victim::hoard", CallKind::Context, &(), WINDOW).await;
            match attacker.reply(cid).await {
                Msg::Started { .. } => {}
                other => panic!("{name}: {other:?}"),
            }
            let batch = Msg::YieldBatch { cid, items };
            timeout(BOUND, attacker.sender.send(&batch)).await.expect("send in time").expect("send");
            attacker.closed_by_victim().await;
            legit.square(4).await;
        }
        assert_eq!(legit.call::<u64>("hostile_victim::until_idle", &()).await, 0);
    });
}

/// Sends `calls` calls of `blob(15)` (15 MiB results) on a fresh
/// authenticated channel and returns its halves: the test holds them and
/// never reads (a receiver reads the socket only when polled) nor sends again.
async fn unread_results(addr: &Addr, calls: usize) -> (actor::transport::Sender, actor::transport::Receiver) {
    let token = Secret::from_hex(TOKEN).expect("token");
    let (ch, _) = connect(addr, &hs("unread"), Some(&token)).await.expect("connect");
    let (sender, receiver) = ch.split();
    for cid in (1..).step_by(2).take(calls) {
        let args = Bytes::from(rmp_serde::to_vec(&(15u64,)).expect("args"));
        let start = Msg::Start {
            cid,
            func: "hostile_victim::blob".into(),
            kind: CallKind::Single,
            args,
            window: 0,
            timeout_ms: None,
            key: None,
            trace: None,
        };
        timeout(BOUND, sender.send(&start)).await.expect("send in time").expect("send");
    }
    (sender, receiver)
}

/// Waits (polling /proc, bounded) until the victim's RSS is under `kib`:
/// memory being given back has no event to await. Returns how long it took.
async fn rss_falls_under(pid: u32, kib: u64, within: Duration) -> Duration {
    let t0 = std::time::Instant::now();
    loop {
        let rss = rss_kib(pid);
        if rss < kib {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < within, "the victim still holds {} after {within:?}", mib(rss));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Results a peer never reads: 40 calls returning 15 MiB each, then silence.
/// The victim keeps at most `actor::RESULT_BUDGET` (64 MiB) of results
/// waiting for the peer and drops the others as they finish, so it stays
/// under the 256 MiB bound; it drops the silent peer at its peer timeout (or
/// at once, when a ping finds 4 MiB already queued for it), which frees the
/// rest; the legitimate peer is served throughout.
///
/// With glibc's default (dynamic) mmap threshold the freed results stay
/// resident until the channel's writer gives up on its stalled write
/// (write_stall, 30 s) and frees the buffer pinning the top of the heap;
/// with `MALLOC_MMAP_THRESHOLD_=131072` they are returned within 0.5 s.
#[test]
fn results_a_peer_never_reads_are_dropped_with_the_peer() {
    const CALLS: u64 = 40;
    against_victim(PEER_TIMEOUT, |addr, pid| async move {
        let mut legit = Peer::connect(&addr, "legit").await;
        legit.square(7).await;
        let (before, _) = mem(pid);
        let attacker = unread_results(&addr, CALLS as usize).await;
        // The results are made, or some are not: a refusal past the budget
        // that finds 4 MiB queued for the peer drops it as one that stopped
        // reading, and its calls not yet run never run.
        let made = legit.call::<u64>("hostile_victim::blobs_made", &(CALLS,)).await;
        assert!(made > 4, "only {made} results made");
        legit.square(8).await;
        // The write stall (30 s) after the peer timeout, with room.
        let took = rss_falls_under(pid, before + 48 * 1024, Duration::from_secs(45)).await;
        legit.square(9).await;
        let (after, peak) = mem(pid);
        drop(attacker);
        println!(
            "{CALLS} x 15 MiB results never read ({made} made): RSS before {}, peak {}, after {} (back within 48 MiB of before {took:?} after the calls)",
            mib(before),
            mib(peak),
            mib(after),
        );
        assert!(peak < RSS_BOUND_KIB, "peak RSS {} for {CALLS} results of 15 MiB", mib(peak));
    });
}

/// A peer that calls for more large results than the result budget holds
/// and reads them only once all are made: every call gets its answer, and
/// those past the budget are errors naming it rather than results held for
/// the peer.
#[test]
fn results_past_the_budget_become_errors_naming_it() {
    const CALLS: u64 = 8;
    // Not dropped as silent while it does not read.
    against_victim("20", |addr, pid| async move {
        let mut legit = Peer::connect(&addr, "legit").await;
        let (before, _) = mem(pid);
        let (_sender, mut receiver) = unread_results(&addr, CALLS as usize).await;
        assert_eq!(legit.call::<u64>("hostile_victim::blobs_made", &(CALLS,)).await, CALLS);
        let (mut results, mut refused) = (0, 0);
        while results + refused < CALLS {
            let msg =
                timeout(BOUND, receiver.recv()).await.expect("a reply in time").expect("recv").expect("open");
            match msg {
                Msg::Return { value, .. } => {
                    assert!(value.len() > 15 * 1024 * 1024, "a 15 MiB result, got {} bytes", value.len());
                    results += 1;
                }
                Msg::Error { error, .. } => {
                    assert!(error.message.contains("at most 64 MiB"), "{}", error.message);
                    assert_eq!(error.type_name, "actor::ResultsUnread");
                    refused += 1;
                }
                Msg::Ping { .. } => {}
                other => panic!("{other:?}"),
            }
        }
        let (_, peak) = mem(pid);
        println!(
            "{CALLS} x 15 MiB results read late: {results} delivered, {refused} refused; RSS before {}, peak {}",
            mib(before),
            mib(peak)
        );
        // The budget holds four 15 MiB results; the channel queues one more
        // and writes another.
        assert!(refused >= 1 && results >= 4, "{results} delivered, {refused} refused");
        legit.square(9).await;
    });
}

/// A peer that sends calls answered at once with small replies and does not
/// read them: a finished call keeps its place under the call cap until its
/// reply is queued, and small replies count against the result budget, so
/// the replies waiting for the peer stay bounded and later calls are
/// refused, where before they piled up for as long as the peer kept calling.
#[test]
fn small_replies_a_peer_does_not_read_stay_bounded() {
    const CALLS: usize = 66_000;
    against_victim("20", |addr, pid| async move {
        let mut legit = Peer::connect(&addr, "legit").await;
        let (before, _) = mem(pid);
        let token = Secret::from_hex(TOKEN).expect("token");
        let (ch, _) = connect(&addr, &hs("unread"), Some(&token)).await.expect("connect");
        let (sender, mut receiver) = ch.split();
        let args = Bytes::from(rmp_serde::to_vec(&(1u64,)).expect("args"));
        for cid in (1..).step_by(2).take(CALLS) {
            let start = Msg::Start {
                cid,
                func: "hostile_victim::kib".into(),
                kind: CallKind::Single,
                args: args.clone(),
                window: 0,
                timeout_ms: None,
                key: None,
                trace: None,
            };
            timeout(BOUND, sender.send(&start)).await.expect("send in time").expect("send");
        }
        legit.square(8).await;
        let (_, peak) = mem(pid);
        // Now read: every call is answered, and some were refused.
        let (mut answered, mut refused) = (0, 0);
        while answered + refused < CALLS {
            match timeout(BOUND, receiver.recv()).await.expect("a reply in time").expect("recv") {
                Some(Msg::Return { .. }) => answered += 1,
                Some(Msg::Error { error, .. }) => {
                    assert!(
                        error.message.contains("concurrent calls")
                            || error.type_name == "actor::ResultsUnread",
                        "{error:?}"
                    );
                    refused += 1;
                }
                Some(_) => {}
                None => break,
            }
        }
        println!(
            "{CALLS} calls with 1 KiB replies sent before reading: {answered} answered, {refused} refused; RSS before {}, peak {}",
            mib(before),
            mib(peak)
        );
        assert!(refused > 0, "all {answered} replies were held for a peer that did not read");
        assert!(peak < RSS_BOUND_KIB, "peak RSS {} over the bound", mib(peak));
        legit.square(9).await;
    });
}

/// A peer that stops reading and answering (as if SIGSTOPped) while it holds
/// calls open, some of them sending to it: dropped at the peer timeout, and
/// every call it held ends.
#[test]
fn a_peer_that_stops_reading_is_dropped_and_its_calls_end() {
    against_victim(PEER_TIMEOUT, |addr, pid| async move {
        let mut legit = Peer::connect(&addr, "legit").await;
        legit.square(7).await;
        let (before, _) = mem(pid);

        let token = Secret::from_hex(TOKEN).expect("token");
        let (ch, _) = connect(&addr, &hs("frozen"), Some(&token)).await.expect("connect");
        let (sender, mut receiver) = ch.split();
        let mut cid = 1;
        let mut start = |func: &str, kind, window| {
            let msg = Msg::Start {
                cid,
                func: func.into(),
                kind,
                args: Bytes::from_static(b"\x90"),
                window,
                timeout_ms: None,
                key: None,
                trace: None,
            };
            cid += 2;
            msg
        };
        let mut starts: Vec<Msg> =
            (0..200).map(|_| start("hostile_victim::wait_forever", CallKind::Single, 0)).collect();
        starts.extend((0..16).map(|_| start("hostile_victim::flood", CallKind::Context, 1024 * 1024)));
        for m in &starts {
            timeout(BOUND, sender.send(m)).await.expect("send in time").expect("send");
        }
        // Read until every context has started (their tasks are running and
        // only end if cancelled), then freeze: never read or send again.
        let mut started = 0;
        while started < 16 {
            let msg = timeout(BOUND, receiver.recv()).await.expect("in time").expect("recv").expect("open");
            match msg {
                Msg::Started { .. } => started += 1,
                Msg::Yield { .. } | Msg::YieldBatch { .. } | Msg::Ping { .. } => {}
                other => panic!("{other:?}"),
            }
        }
        let frozen_at = std::time::Instant::now();
        legit.square(8).await;
        // Nothing but the victim dropping the frozen peer ends these calls.
        assert_eq!(legit.call::<u64>("hostile_victim::until_idle", &()).await, 0);
        let dropped_after = frozen_at.elapsed();
        legit.square(9).await;
        let (after, peak) = mem(pid);
        drop((sender, receiver));
        println!(
            "a frozen peer holding 200 calls and 16 flooding contexts: dropped {dropped_after:?} after it froze (peer timeout {PEER_TIMEOUT} s); RSS before {}, peak {}, after {}",
            mib(before),
            mib(peak),
            mib(after)
        );
        assert!(peak < RSS_BOUND_KIB, "peak RSS {} over the bound", mib(peak));
    });
}

/// Calls in flight up to the per-channel cap (65,536 served calls): the
/// calls past it are refused with an error, memory stays bounded, and the
/// calls end when the peer goes.
#[test]
fn calls_in_flight_are_capped_per_channel() {
    const CAP: usize = 65_536;
    const OVER: usize = 16;
    // Serving 65,552 calls keeps the victim busy for a while on a loaded
    // machine: a 1 s peer timeout could then drop the legitimate peer, whose
    // pongs wait in line. Nothing here needs the timeout; the attacker's
    // calls end when it disconnects.
    against_victim("20", |addr, pid| async move {
        let mut legit = Peer::connect(&addr, "legit").await;
        legit.square(7).await;
        let (before, _) = mem(pid);

        let mut attacker = Peer::connect(&addr, "greedy").await;
        for _ in 0..CAP + OVER {
            attacker.start("hostile_victim::wait_forever", CallKind::Single, &(), 0).await;
        }
        for _ in 0..OVER {
            let msg =
                timeout(BOUND, attacker.replies.recv()).await.expect("a refusal in time").expect("open");
            match msg {
                Msg::Error { cid, error } => {
                    assert!(cid > 2 * CAP as u64, "call {cid}, under the cap, was refused: {error:?}");
                    assert_eq!(error.kind, ErrorKind::Protocol);
                    assert!(error.message.contains("concurrent calls"), "{}", error.message);
                }
                other => panic!("{other:?}"),
            }
        }
        legit.square(8).await;
        let running = legit.call::<u64>("hostile_victim::running", &()).await;
        let (holding, peak) = mem(pid);
        drop(attacker);
        assert_eq!(legit.call::<u64>("hostile_victim::until_idle", &()).await, 0);
        legit.square(9).await;
        let (after, _) = mem(pid);
        println!(
            "{CAP} calls in flight ({running} running) and {OVER} refused: RSS before {}, holding {}, peak {}, after {}",
            mib(before),
            mib(holding),
            mib(peak),
            mib(after)
        );
        assert!(peak < RSS_BOUND_KIB, "peak RSS {} over the bound", mib(peak));
    });
}

/// Tiny items a callee never reads: each is queued on its own (about 73
/// bytes here), so each must cost enough credit that a full window of them
/// holds about a window of memory. Before items cost at least
/// `MIN_ITEM_COST` (64), a 4 MiB window of one-byte items (4 Mi messages)
/// took 294 MiB of the victim, single `Yield`s and one-item batches alike,
/// and the 64 MiB of served windows a channel may hold could cost 4 GiB.
#[test]
fn a_window_of_tiny_unread_items_holds_about_a_window_of_memory() {
    tiny_unread_items(true);
    tiny_unread_items(false);
}

/// Fills one 4 MiB context window of a fresh victim with one-byte items (as
/// many as its credit allows), as one-item `YieldBatch`es if `batched`, else
/// as `Yield`s; checks its growth.
fn tiny_unread_items(batched: bool) {
    const WINDOW: u32 = 4 * 1024 * 1024;
    // The attacker's pongs queue behind its millions of items: a peer
    // timeout of 1 s would drop it before the victim took them all.
    against_victim("30", |addr, pid| async move {
        let mut legit = Peer::connect(&addr, "legit").await;
        legit.square(2).await;
        let (before, _) = mem(pid);
        let mut attacker = Peer::connect(&addr, "tiny").await;
        let cid = attacker.start("hostile_victim::hoard", CallKind::Context, &(), WINDOW).await;
        match attacker.reply(cid).await {
            Msg::Started { .. } => {}
            other => panic!("{other:?}"),
        }
        // msgpack `nil`: a one-byte document, the cheapest item there is.
        let msg = if batched {
            Msg::YieldBatch { cid, items: Bytes::from_static(b"\xc4\x01\xc0") }
        } else {
            Msg::Yield { cid, value: Bytes::from_static(b"\xc0") }
        };
        for _ in 0..WINDOW / actor::transport::MIN_ITEM_COST {
            timeout(BOUND, attacker.sender.send(&msg)).await.expect("send in time").expect("send");
        }
        // Answered after the victim took every item above.
        assert_eq!(attacker.call::<u64>("hostile_victim::running", &()).await, 1);
        legit.square(3).await;
        let (holding, _) = mem(pid);
        println!(
            "a {} window of 1-byte items (batched: {batched}): RSS {} -> {}",
            mib(u64::from(WINDOW) / 1024),
            mib(before),
            mib(holding)
        );
        // The credit is spent: one more tiny item breaks the flow rules.
        timeout(BOUND, attacker.sender.send(&msg)).await.expect("send in time").expect("send");
        attacker.closed_by_victim().await;
        assert_eq!(legit.call::<u64>("hostile_victim::until_idle", &()).await, 0);
        assert!(
            holding < before + 4 * u64::from(WINDOW) / 1024,
            "a {} window of tiny items made the victim grow from {} to {}",
            mib(u64::from(WINDOW) / 1024),
            mib(before),
            mib(holding)
        );
    });
}
