//! Nothing an authenticated peer sends makes the arbiter's memory grow without
//! bound: each attack runs against a fresh `arbiter` daemon, whose resident
//! memory (/proc/PID/status) is read before, at its peak (VmHWM) and after.

mod common;

use std::process::Stdio;
use std::time::Duration;

use actor_arbiter::{ArbiterClient, LIST, WAIT_FOR};
use actor_transport::{Addr, Channel, Msg, Uid, connect};
use common::{hs_uid, long_unix_addr, start_msg, within};
use tokio::io::{AsyncBufReadExt, BufReader};

// ---------------------------------------------------------------------------
// Memory: the `arbiter` daemon's RSS before, at its peak and after each attack.

fn arbiter_cmd() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_arbiter"));
    // Open: these attacks come from authenticated-or-not clients alike.
    cmd.args(["--bind", "tcp://127.0.0.1:0", "--open"])
        .env_remove("ACTOR_ARBITER")
        .env_remove("ACTOR_TOKEN")
        .env("ACTOR_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    cmd
}

/// A running `arbiter` daemon and its address.
struct Daemon {
    child: tokio::process::Child,
    addr: Addr,
}

impl Daemon {
    async fn start() -> Daemon {
        let mut child = arbiter_cmd().spawn().expect("spawn the arbiter daemon");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        within("the listening line", BufReader::new(stdout).read_line(&mut line)).await.expect("read stdout");
        let addr = line
            .trim()
            .strip_prefix("arbiter listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        Daemon { child, addr }
    }

    /// A field of /proc/PID/status, in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let pid = self.child.id().expect("the daemon is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
    }

    /// Resident memory now, in KiB.
    fn rss(&self) -> u64 {
        self.status_kib("VmRSS")
    }

    /// Resident memory once every earlier client's entries are gone (so the
    /// daemon has handled their disconnects), in KiB.
    async fn rss_after_cleanup(&self) -> u64 {
        let c = within("connect", ArbiterClient::connect(&self.addr, &hs_uid(Uid::new("checker")), None))
            .await
            .expect("connect");
        within("the attackers' entries leave", async {
            while !within("list", c.list()).await.expect("list").is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        self.rss()
    }

    /// The highest resident memory so far, in KiB.
    fn peak(&self) -> u64 {
        self.status_kib("VmHWM")
    }
}

/// How much an attack may grow the daemon's resident memory.
const GROWTH_BOUND_KIB: u64 = 24 * 1024;

fn report(attack: &str, before: u64, peak: u64, after: u64) {
    eprintln!("{attack}: RSS before {before} KiB, peak {peak} KiB, after {after} KiB");
    for (what, value) in [("peak", peak), ("after", after)] {
        assert!(
            value.saturating_sub(before) < GROWTH_BOUND_KIB,
            "{attack}: the arbiter's {what} RSS grew by {} KiB (bound {GROWTH_BOUND_KIB} KiB)",
            value.saturating_sub(before)
        );
    }
}

#[tokio::test]
async fn oversized_identities_and_addresses_do_not_grow_the_arbiter() {
    let daemon = Daemon::start().await;
    let before = daemon.rss();
    let mut held = Vec::new();
    for i in 0..3 {
        // A uid of 2 x 7 MiB in the hello, then a 14 MiB address.
        let uid = Uid { name: format!("{i}{}", "n".repeat(7 << 20)), id: "i".repeat(7 << 20) };
        if let Ok(c) =
            within("huge uid connects", ArbiterClient::connect(&daemon.addr, &hs_uid(uid), None)).await
        {
            let _ = within("huge register", c.register(&long_unix_addr(14 << 20))).await;
            held.push(c);
        }
        // An ordinary uid registering a huge address.
        let c = within("connect", ArbiterClient::connect(&daemon.addr, &hs_uid(Uid::new("plain")), None))
            .await
            .expect("an ordinary client connects");
        let _ = within("huge address", c.register(&long_unix_addr(14 << 20))).await;
        held.push(c);
        // The largest uid and address that fit a frame: refused, the uid held
        // only as long as its connection.
        let uid = Uid { name: format!("{i}{}", "n".repeat(30 << 10)), id: "i".repeat(30 << 10) };
        let c = within("connect", ArbiterClient::connect(&daemon.addr, &hs_uid(uid), None))
            .await
            .expect("a 60 KiB uid fits a frame");
        let _ = within("long register", c.register(&long_unix_addr(60 << 10))).await;
        held.push(c);
    }
    let peak = daemon.peak();
    drop(held);
    let after = daemon.rss_after_cleanup().await;
    report("3 connections with 14 MiB uids and addresses", before, peak, after);
}

#[tokio::test]
async fn many_waiters_with_huge_names_do_not_grow_the_arbiter() {
    let daemon = Daemon::start().await;
    let before = daemon.rss();
    let (mut ch, _): (Channel, _) =
        within("raw connect", connect(&daemon.addr, &hs_uid(Uid::new("waiter")), None))
            .await
            .expect("connect");
    let mut sent = 0u64;
    for i in 0..64u64 {
        let name = format!("{i}{}", "w".repeat(2 << 20));
        let args = rmp_serde::to_vec(&(name,)).expect("encode");
        if ch.send(&start_msg(2 * i + 1, WAIT_FOR, args)).await.is_err() {
            break;
        }
        sent += 1;
    }
    settle(&mut ch, 2 * sent + 1).await;
    // Names that fit a frame but not the registry are refused, not held; the
    // longest names it takes, as many as a connection may wait for, on 4
    // connections.
    let mut held = vec![ch];
    for c in 0..5u64 {
        let (mut ch, _): (Channel, _) =
            within("raw connect", connect(&daemon.addr, &hs_uid(Uid::new("waiter")), None))
                .await
                .expect("connect");
        let len = if c == 0 { 60 << 10 } else { 255 - 8 };
        for i in 0..1024u64 {
            let name = format!("{c:04}{i:04}{}", "w".repeat(len));
            let args = rmp_serde::to_vec(&(name,)).expect("encode");
            ch.send(&start_msg(2 * i + 1, WAIT_FOR, args)).await.expect("send");
        }
        settle(&mut ch, 2 * 1024 + 1).await;
        held.push(ch);
    }
    let peak = daemon.peak();
    drop(held);
    let after = daemon.rss_after_cleanup().await;
    report(
        "64 waiters with 2 MiB names, 1024 with 60 KiB names, 4096 with 255-byte names",
        before,
        peak,
        after,
    );
}

/// Sends a listing as call `cid` and reads until its answer (or the end of the
/// connection): replies come in order of requests, so every request sent
/// before it has then been handled.
async fn settle(ch: &mut Channel, cid: u64) {
    if ch.send(&start_msg(cid, LIST, rmp_serde::to_vec(&()).expect("encode"))).await.is_err() {
        return;
    }
    loop {
        match within("the listing or the end", ch.recv()).await {
            Ok(Some(Msg::Return { cid: got, .. })) if got == cid => break,
            Ok(None) | Err(_) => break,
            Ok(Some(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_listing_larger_than_a_frame_never_hangs_the_caller() {
    let daemon = Daemon::start().await;
    let before = daemon.rss();
    let mut held = Vec::new();
    for _ in 0..2 {
        let c = within("connect", ArbiterClient::connect(&daemon.addr, &hs_uid(Uid::new("fat")), None))
            .await
            .expect("connect");
        let _ = within("register a 9 MiB address", c.register(&long_unix_addr(9 << 20))).await;
        held.push(c);
    }
    let lister = within("connect", ArbiterClient::connect(&daemon.addr, &hs_uid(Uid::new("lister")), None))
        .await
        .expect("connect");
    let listed = within("list", lister.list()).await.expect("list");
    assert!(listed.iter().all(|e| e.addr.to_string().len() <= 1024), "no oversized address is stored");
    let peak = daemon.peak();
    drop(held);
    drop(lister);
    let after = daemon.rss_after_cleanup().await;
    report("2 registrations of 9 MiB addresses, then a listing", before, peak, after);
}
