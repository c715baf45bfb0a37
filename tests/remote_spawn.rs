//! Supervision across hosts: a root spawns actors on other hosts through
//! their agents (`actor agent`), calls and streams from them, cancels them,
//! sees their crashes, and leaves nothing behind anywhere when it is killed
//! or a host is cut off. Real processes throughout (the fixture is
//! tests/fixtures/remote.rs); first on loopback (agents on loopback ports,
//! no rights needed), then across three network namespaces over mutual TLS
//! (needs root; skipped with a note otherwise).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::Tree;
use common::netns::{Hosts, Pki, on_host};
use nix::sys::signal::Signal;

const BOUND: Duration = Duration::from_secs(60);

/// Whether `pid` is a live process (a zombie is dead: it only awaits reaping).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// Waits (at most `within`) until every pid in `pids` is dead; returns how
/// long that took. Fails the test, after killing them, if one lives on.
fn wait_dead(pids: &[u32], within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() {
            return start.elapsed();
        }
        if start.elapsed() > within {
            for p in &left {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p as i32), Signal::SIGKILL);
            }
            panic!("processes {left:?} still alive after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The value of `key=` in a line of `key=value` words.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}=");
    line.split(' ')
        .find_map(|w| w.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// The pids of an actor and its helper from a READY line.
fn ready_pids(line: &str) -> [u32; 2] {
    ["pid", "helper"].map(|k| field(line, k).parse().expect("a pid"))
}

/// Processes whose parent is `pid`, but for its watcher (the process every
/// root, an agent included, starts to take its helpers down with it).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let watcher = |p: u32| {
        std::fs::read(format!("/proc/{p}/environ"))
            .is_ok_and(|env| env.split(|b| *b == 0).any(|e| e.starts_with(b"ACTOR_TREE_WATCH=")))
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).ok().is_some_and(|stat| {
                stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .filter(|p| !watcher(*p))
        .collect()
}

fn fixture() -> PathBuf {
    common::example("remote_scenarios")
}

fn fixture_arg() -> String {
    fixture().to_string_lossy().into_owned()
}

/// The address an agent announced in its ready line.
fn announced(line: &str) -> actor::Addr {
    let after = line.split(" serving at ").nth(1).expect("an address");
    after.split(';').next().expect("an address").parse().expect("an address")
}

/// An arbiter daemon and host agents, all on loopback ports.
struct Loopback {
    arbiter: Tree,
    addr: String,
    agents: Vec<Tree>,
    agent_addrs: Vec<actor::Addr>,
}

impl Loopback {
    /// Starts the arbiter, then one agent per `(host, label)`, each allowed
    /// to start the fixture.
    fn start(hosts: &[(&str, &str)]) -> Loopback {
        let mut arbiter =
            Tree::start_program(&common::binary("arbiter"), &["--bind", "tcp://127.0.0.1:0"], &[]);
        let line = arbiter.wait_for_line("arbiter listening on", BOUND);
        let addr = line.rsplit(' ').next().expect("an address").to_owned();
        let (mut agents, mut agent_addrs) = (Vec::new(), Vec::new());
        let program = fixture_arg();
        for (host, label) in hosts {
            let mut agent = Tree::start_program(
                &common::binary("actor"),
                &["agent", "--host", host, "--label", label, "--allow", &program],
                &[("ACTOR_ARBITER", &addr)],
            );
            agent_addrs
                .push(announced(&agent.wait_for_line(&format!("agent for host `{host}` serving at"), BOUND)));
            agents.push(agent);
        }
        Loopback { arbiter, addr, agents, agent_addrs }
    }

    /// Runs the fixture's `scenario` with `args` as a root of this cluster.
    fn root(&self, args: &[&str]) -> Tree {
        Tree::start("remote_scenarios", args, &[("ACTOR_ARBITER", &self.addr)])
    }

    /// Stops the agents and the arbiter; returns what the agents logged.
    fn stop(self) -> String {
        let mut logs = String::new();
        for agent in self.agents {
            agent.signal(Signal::SIGTERM);
            let out = agent.finish(BOUND);
            assert!(out.status.success(), "an agent did not stop cleanly: {out:?}");
            logs.push_str(&out.stderr);
        }
        self.arbiter.signal(Signal::SIGTERM);
        let out = self.arbiter.finish(BOUND);
        assert!(out.status.success(), "{out:?}");
        logs
    }
}

/// Fails if `logs` hold WARN or ERROR lines.
fn assert_quiet(logs: &str) {
    let loud: Vec<&str> = logs.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).collect();
    assert!(loud.is_empty(), "unexpected warnings:\n{}", loud.join("\n"));
}

#[test]
fn a_root_calls_and_streams_actors_it_spawned_through_two_agents_then_cancels_them() {
    let cluster = Loopback::start(&[("alpha", "zone=a"), ("beta", "zone=b")]);
    let out = cluster.root(&["calls", "alpha", "beta"]).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    out.assert_no_warnings();
    for (name, host) in [("worker0", "alpha"), ("worker1", "beta")] {
        assert!(out.stdout.contains(&format!("WHOAMI {name} host={host} ")), "{out:?}");
        assert!(out.stdout.contains(&format!("portal_host={host}")), "{out:?}");
        assert!(out.stdout.contains(&format!("GREETING {name} hello from {name}")), "{out:?}");
        assert!(out.stdout.contains(&format!("STREAM {name} [0, 1, 2, 3, 4]")), "{out:?}");
        let cancelled =
            out.stdout.lines().find(|l| l.starts_with(&format!("CANCELLED {name} "))).expect("cancelled");
        let pid: u32 = field(cancelled, "pid").parse().expect("a pid");
        assert!(!alive(pid), "{name} (pid {pid}) outlived its cancel");
    }
    assert!(out.stdout.contains("REFUSED guarded NotExposed"), "{out:?}");
    assert!(out.stdout.contains("RESULT main host=alpha"), "{out:?}");
    assert_quiet(&cluster.stop());
}

#[test]
fn a_label_picks_the_host_and_list_hosts_describes_every_agent() {
    let cluster = Loopback::start(&[("alpha", "zone=a"), ("beta", "zone=b")]);
    let out = cluster.root(&["calls", "label=zone=b"]).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("WHOAMI worker0 host=beta "), "{out:?}");
    let out = cluster.root(&["hosts"]).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    let hosts: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("HOST ")).collect();
    assert_eq!(hosts.len(), 2, "{out:?}");
    assert!(
        hosts[0].starts_with("HOST alpha labels=zone=a cores=") && hosts[0].ends_with("children=0"),
        "{out:?}"
    );
    assert!(hosts[1].starts_with("HOST beta labels=zone=b "), "{out:?}");
    let cli = Tree::start_program(&common::binary("actor"), &["hosts"], &[("ACTOR_ARBITER", &cluster.addr)])
        .finish(BOUND);
    assert!(cli.status.success(), "{cli:?}");
    let rows: Vec<Vec<&str>> = cli.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 3, "{cli:?}");
    assert_eq!(rows[0][..3], ["HOST", "LABELS", "CORES"], "{cli:?}");
    assert_eq!(rows[1][..2], ["alpha", "zone=a"], "{cli:?}");
    assert_eq!(rows[2][..2], ["beta", "zone=b"], "{cli:?}");
    assert_eq!(rows[2].last(), Some(&"remote_scenarios"), "{cli:?}");
    assert_quiet(&cluster.stop());
}

#[test]
fn a_remote_crash_names_its_host_actor_and_exit_status() {
    let cluster = Loopback::start(&[("alpha", "zone=a")]);
    let out = cluster.root(&["crash", "alpha"]).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("CRASHED actor=crasher host=alpha status=exit status 3"), "{out:?}");
    assert!(out.stdout.contains("NURSERY FAILED: actor `crasher#"), "{out:?}");
    assert!(out.stdout.contains("on host `alpha` crashed: exit status 3"), "{out:?}");
    assert_quiet(&cluster.stop());
}

#[test]
fn a_one_for_one_daemon_that_dies_on_its_host_comes_back_there() {
    let cluster = Loopback::start(&[("alpha", "zone=a")]);
    let out = cluster.root(&["restart", "alpha"]).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("DIED actor `phoenix#"), "{out:?}");
    assert!(out.stdout.contains("on host `alpha` crashed: exit status 7"), "{out:?}");
    let line = out.stdout.lines().find(|l| l.starts_with("RESTARTED")).expect("restarted");
    assert_eq!(field(line, "host"), "alpha");
    assert_ne!(field(line, "from"), field(line, "to"), "a new process: {line}");
    assert_eq!(field(line, "restarts"), "1");
    assert_quiet(&cluster.stop());
}

#[test]
fn a_cancel_the_actor_ignores_is_escalated_to_sigterm_and_sigkill_by_its_agent() {
    let cluster = Loopback::start(&[("alpha", "zone=a")]);
    let out = cluster.root(&["escalate", "alpha"]).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    let line = out.stdout.lines().find(|l| l.starts_with("ESCALATED")).expect("escalated");
    assert!(!alive(field(line, "pid").parse().expect("a pid")));
    let warnings = out.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("sending SIGTERM") && warnings[0].contains("host=alpha"), "{warnings:?}");
    assert!(warnings[1].contains("sending SIGKILL") && warnings[1].contains("host=alpha"), "{warnings:?}");
    assert_quiet(&cluster.stop());
}

#[test]
fn spawns_that_cannot_happen_say_why_and_start_nothing() {
    let cluster = Loopback::start(&[("alpha", "zone=a"), ("beta", "zone=b")]);
    let out = cluster.root(&["refused", "alpha", "sh"]).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.contains(
            "SPAWN FAILED: cannot spawn actor `nope`: host `alpha` refused: program `sh` is not on the \
             allow-list of host `alpha` (it allows: remote_scenarios)"
        ),
        "{out:?}"
    );
    let out = cluster.root(&["refused", "nowhere"]).finish(BOUND);
    assert!(
        out.stdout.contains(
            "SPAWN FAILED: cannot spawn actor `nope`: no host agent matches host `nowhere` (agents: `alpha` \
             [zone=a], `beta` [zone=b])"
        ),
        "{out:?}"
    );
    for agent in &cluster.agents {
        assert_eq!(children_of(agent.pid()), Vec::<u32>::new(), "an agent started something");
    }
    assert_quiet(&cluster.stop());
}

#[test]
fn an_unauthenticated_client_cannot_make_an_agent_spawn_anything() {
    let cluster = Loopback::start(&[("alpha", "zone=a")]);
    let agent_addr = cluster.agent_addrs[0].clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let hs = actor::transport::HandshakeConfig {
        uid: actor::Uid::new("stranger"),
        timeout: Duration::from_secs(10),
        channel: Default::default(),
    };
    rt.block_on(async {
        for secret in [None, Some(actor::Secret::random())] {
            let refused = actor::transport::connect(&agent_addr, &hs, secret.as_ref()).await;
            match refused {
                Err(actor::transport::HandshakeError::Refused { reason }) => {
                    assert!(reason.contains("authentication"), "{reason}")
                }
                Err(actor::transport::HandshakeError::ServerUnauthenticated { .. }) if secret.is_some() => {}
                other => panic!("a stranger was not refused: {:?}", other.map(|(_, uid)| uid)),
            }
        }
    });
    assert_eq!(children_of(cluster.agents[0].pid()), Vec::<u32>::new(), "the agent started something");
    let logs = cluster.stop();
    assert!(logs.contains("stranger"), "the refusals are logged: {logs}");
}

#[test]
fn killing_the_root_leaves_nothing_on_any_host() {
    let mut cluster = Loopback::start(&[("alpha", "zone=a"), ("beta", "zone=b")]);
    // Frozen, so that their agents stop them: they cannot go by themselves.
    let mut root = cluster.root(&["hold", "alpha!", "beta!"]);
    let pids: Vec<u32> = root.wait_for_lines("READY", 2, BOUND).iter().flat_map(|l| ready_pids(l)).collect();
    for agent in &mut cluster.agents {
        agent.wait_for_line("FROZEN", BOUND);
    }
    root.signal(Signal::SIGKILL);
    let took = wait_dead(&pids, Duration::from_secs(10));
    eprintln!("remote actors and their helpers gone {took:?} after the root's SIGKILL");
    let out = root.finish(BOUND);
    assert_eq!(out.status.code(), None, "killed by a signal: {out:?}");
    let logs = cluster.stop();
    assert_eq!(logs.matches("lost the parent").count(), 2, "each agent kills its orphan: {logs}");
}

#[test]
fn when_an_agent_dies_its_actors_die_with_it_and_the_root_reports_them_lost() {
    let mut cluster = Loopback::start(&[("alpha", "zone=a")]);
    let mut root = cluster.root(&["hold", "alpha"]);
    let pids = ready_pids(&root.wait_for_line("READY", BOUND));
    let agent = cluster.agents.remove(0);
    agent.signal(Signal::SIGKILL);
    wait_dead(&pids, Duration::from_secs(10));
    let lost = root.wait_for_line("LOST actor=held0", BOUND);
    assert!(lost.contains("host=alpha reason=lost the channel to the agent on host `alpha`"), "{lost}");
    let out = root.finish(BOUND);
    assert!(!out.status.success(), "{out:?}");
    agent.finish(BOUND);
    cluster.stop();
}

/// A child whose channel to its parent is cut under it, and which cannot
/// notice (frozen), is stopped by its parent after its teardown bound: on
/// another host through its agent, and here alike.
#[test]
fn a_child_cut_off_from_its_parent_that_cannot_notice_is_stopped() {
    let mut cluster = Loopback::start(&[("alpha", "zone=a")]);
    for (spec, host) in [("alpha", "alpha"), ("here", "-")] {
        let mut root = cluster.root(&["sever", spec]);
        let ready = root.wait_for_line("READY", BOUND);
        let pid: u32 = field(&ready, "pid").parse().expect("a pid");
        if spec == "here" {
            // Its stdout is the root's.
            root.wait_for_line("FROZEN", BOUND);
        } else {
            cluster.agents[0].wait_for_line("FROZEN", BOUND);
        }
        root.signal(Signal::SIGUSR1);
        root.wait_for_line("SEVERED", BOUND);
        let crashed = root.wait_for_line("CRASHED actor=cut", BOUND);
        assert!(crashed.contains(&format!("host={host} ")), "{crashed}");
        assert!(crashed.contains("it lost its channel to this actor and did not exit within"), "{crashed}");
        assert!(crashed.contains("so it was stopped (killed by signal 15 (SIGTERM))"), "{crashed}");
        assert!(!alive(pid), "the cut-off child {pid} lives on");
        let out = root.finish(BOUND);
        assert!(out.stderr.contains("lost its channel to us and did not exit; sending SIGTERM"), "{out:?}");
    }
    assert_quiet(&cluster.stop());
}

/// Three namespaces: the root and the arbiter on host 1, an agent on each of
/// hosts 2 and 3 (`h2`, `h3`), all over mutual TLS, with a peer timeout of 2 s.
struct Cluster {
    hosts: Hosts,
    dir: PathBuf,
    arbiter: Tree,
    agents: Vec<Tree>,
    agent_addrs: Vec<actor::Addr>,
    root_env: Vec<(String, String)>,
}

const PEER_TIMEOUT_S: u64 = 2;

impl Cluster {
    fn start(prefix: &str, net: u8) -> Option<Cluster> {
        let hosts = match Hosts::create(prefix, net) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("SKIPPED: {e}");
                return None;
            }
        };
        let dir = std::env::temp_dir().join(format!("actor-remote-{}", hosts.ns(1)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let pki = Pki::new(dir.clone());
        let timeout = ("ACTOR_PEER_TIMEOUT".to_owned(), PEER_TIMEOUT_S.to_string());
        let mut arbiter_env = pki.host("h1", &hosts.ips(1));
        arbiter_env.push(("ACTOR_LOG".into(), "warn".into()));
        let bind = format!("tcp://{}:0", hosts.ip_of(1));
        let mut arbiter = on_host(hosts.ns(1), &common::binary("arbiter"), &["--bind", &bind], &arbiter_env);
        let line = arbiter.wait_for_line("arbiter listening on", BOUND);
        let arbiter_addr = line.rsplit(' ').next().expect("an address").to_owned();
        let (mut agents, mut agent_addrs) = (Vec::new(), Vec::new());
        let program = fixture_arg();
        for n in [2, 3] {
            let name = format!("h{n}");
            let mut env = pki.host(&name, &hosts.ips(n));
            env.push(("ACTOR_ARBITER".into(), arbiter_addr.clone()));
            env.push(timeout.clone());
            let bind = format!("tcp://{}:0", hosts.ip_of(n));
            let mut agent = on_host(
                hosts.ns(n),
                &common::binary("actor"),
                &["agent", "--host", &name, "--label", "pool=x", "--bind", &bind, "--allow", &program],
                &env,
            );
            agent_addrs
                .push(announced(&agent.wait_for_line(&format!("agent for host `{name}` serving at"), BOUND)));
            agents.push(agent);
        }
        let mut root_env = pki.host("root", &hosts.ips(1));
        root_env.push(("ACTOR_ARBITER".into(), arbiter_addr));
        root_env.push(("ACTOR_BIND".into(), format!("tcp://{}:0", hosts.ip_of(1))));
        root_env.push(timeout);
        Some(Cluster { hosts, dir, arbiter, agents, agent_addrs, root_env })
    }

    fn root(&self, args: &[&str]) -> Tree {
        on_host(self.hosts.ns(1), &fixture(), args, &self.root_env)
    }

    /// Stops the agents and the arbiter; returns what the agents logged.
    fn stop(self) -> String {
        let mut logs = String::new();
        for agent in self.agents {
            agent.signal(Signal::SIGTERM);
            let out = agent.finish(BOUND);
            logs.push_str(&out.stderr);
        }
        self.arbiter.signal(Signal::SIGTERM);
        self.arbiter.finish(BOUND);
        drop(self.hosts);
        let _ = std::fs::remove_dir_all(self.dir);
        logs
    }
}

#[test]
fn across_three_hosts_a_root_spawns_calls_streams_cancels_and_sees_crashes() {
    let Some(cluster) = Cluster::start("rsa", 211) else { return };
    let out = cluster.root(&["calls", "h2", "h3"]).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    out.assert_no_warnings();
    for (name, host) in [("worker0", "h2"), ("worker1", "h3")] {
        assert!(out.stdout.contains(&format!("WHOAMI {name} host={host} ")), "{out:?}");
        assert!(out.stdout.contains(&format!("STREAM {name} [0, 1, 2, 3, 4]")), "{out:?}");
        let cancelled =
            out.stdout.lines().find(|l| l.starts_with(&format!("CANCELLED {name} "))).expect("cancelled");
        assert!(!alive(field(cancelled, "pid").parse().expect("a pid")), "{name} outlived its cancel");
    }
    let out = cluster.root(&["crash", "h3"]).finish(BOUND);
    assert!(out.stdout.contains("CRASHED actor=crasher host=h3 status=exit status 3"), "{out:?}");

    // A root without a certificate from the cluster's CA cannot use an agent.
    let plain: Vec<(String, String)> = cluster
        .root_env
        .iter()
        .filter(|(k, _)| !k.starts_with("ACTOR_TLS"))
        .cloned()
        .chain([
            ("ACTOR_INSECURE".to_owned(), "1".to_owned()),
            ("ACTOR_ARBITER".to_owned(), "private".to_owned()),
        ])
        .collect();
    let agent_at = format!("at={}", cluster.agent_addrs[0]);
    let refused = on_host(cluster.hosts.ns(1), &fixture(), &["refused", &agent_at], &plain).finish(BOUND);
    assert!(refused.stdout.contains("SPAWN FAILED: cannot spawn actor `nope`"), "{refused:?}");
    assert_eq!(children_of(cluster.agents[0].pid()), Vec::<u32>::new(), "the agent started something");
    let logs = cluster.stop();
    assert!(logs.contains("TLS"), "the agent logs the refused handshake: {logs}");
}

#[test]
fn across_three_hosts_killing_the_root_leaves_no_actor_on_any_host() {
    let Some(mut cluster) = Cluster::start("rsk", 212) else { return };
    // Frozen, so that their agents stop them: they cannot go by themselves.
    let mut root = cluster.root(&["hold", "h2!", "h3!"]);
    let pids: Vec<u32> = root.wait_for_lines("READY", 2, BOUND).iter().flat_map(|l| ready_pids(l)).collect();
    for agent in &mut cluster.agents {
        agent.wait_for_line("FROZEN", BOUND);
    }
    root.signal(Signal::SIGKILL);
    let took = wait_dead(&pids, Duration::from_secs(10));
    eprintln!("actors on h2 and h3 and their helpers gone {took:?} after the root's SIGKILL");
    root.finish(BOUND);
    let logs = cluster.stop();
    assert_eq!(logs.matches("lost the parent").count(), 2, "each agent kills its orphan: {logs}");
}

#[test]
fn across_three_hosts_a_host_cut_off_kills_its_orphans_and_the_root_reports_them_lost() {
    let Some(mut cluster) = Cluster::start("rsp", 213) else { return };
    // h3's actor is frozen, so that its agent stops it: it cannot go by itself.
    let mut root = cluster.root(&["hold", "h2", "h3!"]);
    let ready = root.wait_for_lines("READY", 2, BOUND);
    cluster.agents[1].wait_for_line("FROZEN", BOUND);
    let on_h3 = ready.iter().find(|l| l.contains("host=h3")).map(|l| ready_pids(l)).expect("an actor on h3");
    let on_h2 = ready.iter().find(|l| l.contains("host=h2")).map(|l| ready_pids(l)).expect("an actor on h2");
    cluster.hosts.cut(3).expect("cut h3 off");
    let took = wait_dead(&on_h3, Duration::from_secs(PEER_TIMEOUT_S + 10));
    let dead_at = seconds_of_day(std::time::SystemTime::now());
    let lost = root.wait_for_line("LOST actor=held1", BOUND);
    assert!(lost.contains("host=h3"), "{lost}");
    let out = root.finish(BOUND);
    assert!(!out.status.success(), "the root fails with the lost actor: {out:?}");
    assert!(out.stdout.contains("NURSERY FAILED: lost actor `held1#"), "{out:?}");
    assert!(out.stdout.contains("on host `h3`"), "{out:?}");
    wait_dead(&on_h2, Duration::from_secs(10));
    let logs = cluster.stop();
    let detected = logs.lines().find(|l| l.contains("lost the parent")).and_then(log_time);
    assert!(detected.is_some(), "h3's agent kills its orphan itself: {logs}");
    let after_detection = detected.map(|t| (dead_at - t).rem_euclid(86_400.0) * 1000.0).unwrap_or_default();
    eprintln!(
        "h3's actor and its helper were killed by h3's agent {took:?} after the link went down (peer timeout \
         {PEER_TIMEOUT_S} s), {after_detection:.0} ms after the agent detected the loss"
    );
}

/// Seconds since midnight (UTC) of `t`.
fn seconds_of_day(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() % 86_400.0)
}

/// Seconds since midnight (UTC) of a log line's timestamp, e.g.
/// `2026-01-01T12:34:56.789012Z  WARN ...`.
fn log_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (_, time) = stamp.split_once('T')?;
    let mut parts = time.split(':');
    let (h, m, s) = (
        parts.next()?.parse::<f64>().ok()?,
        parts.next()?.parse::<f64>().ok()?,
        parts.next()?.parse::<f64>().ok()?,
    );
    Some(h * 3600.0 + m * 60.0 + s)
}

#[test]
fn across_three_hosts_a_daemon_placed_by_label_moves_to_another_host_when_its_host_is_lost() {
    let Some(cluster) = Cluster::start("rsf", 214) else { return };
    let mut root = cluster.root(&["failover", "label=pool=x"]);
    let placed = root.wait_for_line("PLACED", BOUND);
    let (from, pid) =
        (field(&placed, "host").to_owned(), field(&placed, "pid").parse::<u32>().expect("a pid"));
    cluster.hosts.cut(if from == "h2" { 2 } else { 3 }).expect("cut its host off");
    let cut = Instant::now();
    let moved = root.wait_for_line("MOVED", BOUND);
    eprintln!("the daemon answered from the other host {:?} after its host was cut off", cut.elapsed());
    assert_eq!(field(&moved, "from"), from, "{moved}");
    assert_ne!(field(&moved, "to"), from, "{moved}");
    assert_eq!(field(&moved, "restarts"), "1", "{moved}");
    wait_dead(&[pid], Duration::from_secs(PEER_TIMEOUT_S + 10));
    let out = root.finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    cluster.stop();
}
