//! Runtime benchmarks, each printed beside a raw baseline measured in the same
//! run: spawn-to-result (one actor, 50 in parallel), portal round trip vs raw
//! loopback TCP, stream throughput vs raw length-prefixed TCP, restart
//! latency (SIGKILL of a daemon -> its restarted process answers) beside
//! spawn-to-result, spawn-to-result through a host agent beside one here,
//! the round trip and spawn-to-result over mutual TLS beside plaintext, and
//! the low-latency mode (round trip and CPU cost) beside the default.
//!
//! Run: `cargo bench --bench runtime`. This binary is an actor program: the
//! actors it spawns are re-executions of it.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod shared;

use shared::{echo, produce, raw_echo_server, summary};

#[actor::remote]
async fn trivial() -> actor::Result<u32> {
    Ok(42)
}

/// Raw baseline: connects to `port` and writes `count` length-prefixed frames
/// of `size` bytes, batched through a buffered writer.
#[actor::remote]
async fn raw_produce(port: u16, count: u64, size: usize) -> actor::Result<()> {
    let s = TcpStream::connect(("127.0.0.1", port)).await.map_err(actor::Error::app)?;
    s.set_nodelay(true).map_err(actor::Error::app)?;
    let mut w = tokio::io::BufWriter::with_capacity(64 * 1024, s);
    let payload = vec![7u8; size];
    for _ in 0..count {
        w.write_all(&(size as u32).to_be_bytes()).await.map_err(actor::Error::app)?;
        w.write_all(&payload).await.map_err(actor::Error::app)?;
    }
    w.flush().await.map_err(actor::Error::app)?;
    Ok(())
}

async fn spawn_to_result(parallel: usize, rounds: usize) -> actor::Result<Vec<Duration>> {
    let mut times = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        actor::open_nursery(|n| async move {
            // All spawns in flight at once: the children start and connect back
            // concurrently.
            let spawns = (0..parallel).map(|i| n.run_in_actor(format!("w{i}"), trivial, ()));
            let portals = futures::future::try_join_all(spawns).await?;
            for p in &portals {
                p.result().await?;
            }
            Ok(())
        })
        .await?;
        times.push(t.elapsed());
    }
    Ok(times)
}

async fn round_trips(n: &actor::Nursery, calls: usize) -> actor::Result<()> {
    let p = n.start_actor("echo_daemon").await?;
    let port = p.run(raw_echo_server, ()).await?;
    let mut raw = TcpStream::connect(("127.0.0.1", port)).await.map_err(actor::Error::app)?;
    raw.set_nodelay(true).map_err(actor::Error::app)?;
    for _ in 0..1_000 {
        p.run(echo, (1,)).await?;
    }
    let mut buf = [0u8; 12];
    for _ in 0..1_000 {
        raw.write_all(&buf).await.map_err(actor::Error::app)?;
        raw.read_exact(&mut buf).await.map_err(actor::Error::app)?;
    }
    // Interleave the two in blocks so both see the same machine conditions.
    let (mut portal, mut tcp) = (Vec::new(), Vec::new());
    for block in 0..10 {
        for i in 0..calls / 10 {
            let t = Instant::now();
            let x = p.run(echo, ((block * calls + i) as u64,)).await?;
            portal.push(t.elapsed());
            std::hint::black_box(x);
        }
        for _ in 0..calls / 10 {
            let t = Instant::now();
            raw.write_all(&buf).await.map_err(actor::Error::app)?;
            raw.read_exact(&mut buf).await.map_err(actor::Error::app)?;
            tcp.push(t.elapsed());
        }
    }
    let (pm, p99) = summary(portal);
    let (tm, t99) = summary(tcp);
    println!("portal round trip:   median {pm:>9.1?}  p99 {p99:>9.1?}   ({calls} calls)");
    println!("raw TCP round trip:  median {tm:>9.1?}  p99 {t99:>9.1?}");
    println!("  ratio (median): {:.2}x   target <= 1.3x", pm.as_secs_f64() / tm.as_secs_f64());
    p.cancel_actor().await
}

async fn throughput(n: &actor::Nursery, size: usize, count: u64) -> actor::Result<()> {
    let p = n.start_actor(format!("producer_{size}")).await?;
    let pids = [std::process::id(), p.run(own_pid, ()).await?];
    let used = || pids.iter().map(|&pid| cpu_time(pid)).sum::<Duration>();
    // Best of three each, stream and raw in turn so that both see the
    // same phases of the machine; CPU of both processes over all three.
    let (mut best_stream, mut best_raw) = (f64::MAX, f64::MAX);
    let (mut cpu_stream, mut cpu_raw) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..3 {
        let before = used();
        let t = Instant::now();
        let mut s = p.open_stream_from(produce, (count, size)).await?;
        let mut got = 0u64;
        while let Some(item) = s.recv().await {
            got += item?.len() as u64;
        }
        assert_eq!(got, count * size as u64);
        best_stream = best_stream.min(t.elapsed().as_secs_f64());
        cpu_stream += used() - before;
        // Raw length-prefixed frames.
        let before = used();
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(actor::Error::app)?;
        let port = listener.local_addr().map_err(actor::Error::app)?.port();
        let t = Instant::now();
        let producer = p.run(raw_produce, (port, count, size));
        let consumer = async {
            let (s, _) = listener.accept().await.map_err(actor::Error::app)?;
            let mut r = tokio::io::BufReader::with_capacity(64 * 1024, s);
            let mut payload = vec![0u8; size];
            for _ in 0..count {
                let len = r.read_u32().await.map_err(actor::Error::app)? as usize;
                r.read_exact(&mut payload[..len]).await.map_err(actor::Error::app)?;
            }
            Ok::<_, actor::Error>(())
        };
        let (a, b) = tokio::join!(producer, consumer);
        a?;
        b?;
        best_raw = best_raw.min(t.elapsed().as_secs_f64());
        cpu_raw += used() - before;
    }
    let rate = |secs: f64| count as f64 / secs;
    let mbps = |secs: f64| count as f64 * size as f64 / secs / 1e6;
    println!(
        "stream  {size:>5} B items: {:>10.0} items/s {:>8.1} MB/s",
        rate(best_stream),
        mbps(best_stream)
    );
    println!("raw TCP {size:>5} B frames: {:>10.0} items/s {:>8.1} MB/s", rate(best_raw), mbps(best_raw));
    println!("  stream / raw: {:.0}%", 100.0 * best_raw / best_stream);
    let per_item = |cpu: Duration| cpu.as_secs_f64() * 1e6 / (3 * count) as f64;
    println!(
        "  CPU per item, both processes: stream {:.3} us, raw {:.3} us ({:.2}x raw)",
        per_item(cpu_stream),
        per_item(cpu_raw),
        cpu_stream.as_secs_f64() / cpu_raw.as_secs_f64()
    );
    p.cancel_actor().await
}

/// Portal round trips and `find_actor` lookups in one tree; prints medians
/// for the `tls` and `low_latency` sections' parent process to read. With
/// `cpu`, also the CPU time both processes spend per call when calls come
/// one per millisecond, and per second of idling.
async fn portal_rtt_only(cpu: bool) -> actor::Result<()> {
    actor::open_nursery(|n| async move {
        let p = n.start_actor("echo_daemon").await?;
        for _ in 0..1_000 {
            p.run(echo, (1,)).await?;
        }
        let mut rtt = Vec::new();
        for i in 0..20_000u64 {
            let t = Instant::now();
            std::hint::black_box(p.run(echo, (i,)).await?);
            rtt.push(t.elapsed());
        }
        actor::wait_for_actor("echo_daemon").await?;
        let mut find = Vec::new();
        for _ in 0..2_000 {
            let t = Instant::now();
            std::hint::black_box(actor::find_actor("echo_daemon").await?);
            find.push(t.elapsed());
        }
        println!("PORTAL_RTT_NS {}", summary(rtt).0.as_nanos());
        println!("FIND_NS {}", summary(find).0.as_nanos());
        if cpu {
            let pids = [std::process::id(), p.run(own_pid, ()).await?];
            let used = || pids.iter().map(|&pid| cpu_time(pid)).sum::<Duration>();
            let before = used();
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            for i in 0..2_000u64 {
                tick.tick().await;
                std::hint::black_box(p.run(echo, (i,)).await?);
            }
            println!("PACED_CPU_NS_PER_CALL {}", (used() - before).as_nanos() / 2_000);
            let before = used();
            tokio::time::sleep(Duration::from_secs(2)).await;
            println!("IDLE_CPU_NS_PER_S {}", (used() - before).as_nanos() / 2);
        }
        p.cancel_actor().await
    })
    .await
}

/// User plus system CPU time of process `pid` so far, from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// Runs `portal_rtt_only` (with `extra` arguments) as a separate tree with
/// `env`; returns the `KEY value` lines it printed.
fn rtt_tree(extra: &[&str], env: &[(&str, String)]) -> std::collections::HashMap<String, u128> {
    tree("portal_rtt_only", extra, env, "PORTAL_RTT_NS")
}

/// Runs this bench in `mode` (with `extra` arguments) as a separate tree
/// with `env`; returns the `KEY value` lines it printed, which must include
/// `key`.
fn tree(
    mode: &str,
    extra: &[&str],
    env: &[(&str, String)],
    key: &str,
) -> std::collections::HashMap<String, u128> {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("current_exe"));
    cmd.arg(mode).args(extra).env("ACTOR_ARBITER", "tcp://127.0.0.1:0");
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let out = cmd.output().expect("run a tree");
    let text = String::from_utf8_lossy(&out.stdout);
    let values: std::collections::HashMap<String, u128> = text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(k, v)| Some((k.to_owned(), v.trim().parse().ok()?)))
        .collect();
    assert!(
        out.status.success() && values.contains_key(key),
        "the tree failed: {text} / {}",
        String::from_utf8_lossy(&out.stderr)
    );
    values
}

fn median_of(runs: &[std::collections::HashMap<String, u128>], key: &str) -> f64 {
    let mut v: Vec<u128> = runs.iter().map(|r| r[key]).collect();
    v.sort_unstable();
    v[v.len() / 2] as f64
}

/// The low-latency mode against the default, as separate trees run
/// alternately: round trip, CPU per call at one call per millisecond, CPU
/// per second of idling.
fn low_latency_section() {
    const SPIN_US: u64 = 50;
    println!("== low-latency mode (ACTOR_LOW_LATENCY_US={SPIN_US}) vs default (separate trees, alternating)");
    let spin = [(actor::ENV_LOW_LATENCY, SPIN_US.to_string())];
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        off.push(rtt_tree(&["cpu"], &[]));
        on.push(rtt_tree(&["cpu"], &spin));
    }
    for (label, key, unit, scale) in [
        ("portal round trip, median", "PORTAL_RTT_NS", "us", 1e3),
        ("CPU per call at 1,000 calls/s (both processes)", "PACED_CPU_NS_PER_CALL", "us", 1e3),
        ("CPU per second idle (both processes)", "IDLE_CPU_NS_PER_S", "ms", 1e6),
    ] {
        let (a, b) = (median_of(&off, key) / scale, median_of(&on, key) / scale);
        println!("{label:<48} default {a:>8.1} {unit}   low-latency {b:>8.1} {unit}");
    }
    println!(
        "  round trip ratio (default / low-latency): {:.2}x",
        median_of(&off, "PORTAL_RTT_NS") / median_of(&on, "PORTAL_RTT_NS")
    );
}

/// Writes a test CA and a certificate for 127.0.0.1; returns the TLS env.
fn test_pki(dir: &std::path::Path) -> Vec<(&'static str, std::path::PathBuf)> {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).expect("leaf params");
    leaf.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().expect("leaf key");
    let cert = leaf.signed_by(&key, &ca, &ca_key).expect("sign");
    let files = [("ca.pem", ca.pem()), ("node.pem", cert.pem()), ("node.key", key.serialize_pem())];
    for (name, pem) in &files {
        std::fs::write(dir.join(name), pem).expect("write PEM");
    }
    vec![
        ("ACTOR_TLS_CA", dir.join("ca.pem")),
        ("ACTOR_TLS_CERT", dir.join("node.pem")),
        ("ACTOR_TLS_KEY", dir.join("node.key")),
    ]
}

/// Runs `portal_rtt_only` as separate trees, plaintext and TLS alternately.
fn tls_section() {
    println!("== portal round trip: mutual TLS vs plaintext (separate trees, alternating)");
    let dir = std::env::temp_dir().join(format!("actor-bench-pki-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let tls_env = test_pki(&dir);
    let tls_env: Vec<(&str, String)> =
        tls_env.iter().map(|(k, v)| (*k, v.to_string_lossy().into_owned())).collect();
    let run = |tls: bool| {
        let v = rtt_tree(&[], if tls { &tls_env } else { &[] });
        (v["PORTAL_RTT_NS"], v["FIND_NS"])
    };
    let (mut plain, mut tls) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        plain.push(run(false));
        tls.push(run(true));
    }
    let med = |v: &mut Vec<u128>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let (mut p_rtt, mut p_find): (Vec<u128>, Vec<u128>) = plain.into_iter().unzip();
    let (mut t_rtt, mut t_find): (Vec<u128>, Vec<u128>) = tls.into_iter().unzip();
    let (pr, tr, pf, tf) = (med(&mut p_rtt), med(&mut t_rtt), med(&mut p_find), med(&mut t_find));
    println!("plaintext portal round trip: median {:>7.1} us", pr as f64 / 1e3);
    println!("mutual TLS portal round trip: median {:>7.1} us", tr as f64 / 1e3);
    println!("  ratio: {:.2}x   target <= 1.15x", tr as f64 / pr as f64);
    println!(
        "find_actor (cached connection): plaintext {:.1} us, TLS {:.1} us",
        pf as f64 / 1e3,
        tf as f64 / 1e3
    );
    let spawn = |tls: bool| tree("spawn_only", &[], if tls { &tls_env } else { &[] }, "SPAWN_NS")["SPAWN_NS"];
    let (mut plain, mut tls): (Vec<u128>, Vec<u128>) = (0..3).map(|_| (spawn(false), spawn(true))).unzip();
    let (ps, ts) = (med(&mut plain), med(&mut tls));
    println!(
        "spawn to result, one actor: plaintext {:.2} ms, mutual TLS {:.2} ms (medians of 3 trees of 30 spawns)",
        ps as f64 / 1e6,
        ts as f64 / 1e6
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// In a re-execution started by [`floor`]: the port to send its hello to.
const ENV_FLOOR_PORT: &str = "BENCH_FLOOR_PORT";

/// The hello a re-execution sends back.
const HELLO: &[u8; 5] = b"hello";

/// The floor under spawn-to-result: re-executes this binary, which
/// connects back over loopback TCP and sends a hello (before any actor
/// code runs), and waits for the hello and then the process's exit, as a
/// nursery waits for its child's result and exit.
async fn floor() -> actor::Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let t = Instant::now();
    let mut child = tokio::process::Command::new("/proc/self/exe")
        .env(ENV_FLOOR_PORT, port.to_string())
        .kill_on_drop(true)
        .spawn()?;
    let bound = Duration::from_secs(10);
    let hello = tokio::time::timeout(bound, async {
        let (mut s, _) = listener.accept().await?;
        let mut buf = [0u8; HELLO.len()];
        s.read_exact(&mut buf).await?;
        std::io::Result::Ok(buf == *HELLO)
    })
    .await;
    if !matches!(hello, Ok(Ok(true))) {
        return Err(actor::Error::msg("the re-execution did not say hello"));
    }
    tokio::time::timeout(bound, child.wait())
        .await
        .map_err(|_| actor::Error::msg("the re-execution did not exit"))??;
    Ok(t.elapsed())
}

/// The re-execution's side of [`floor`]: says hello and exits.
fn say_hello(port: &str) -> ! {
    use std::io::Write;
    let sent = port
        .parse::<u16>()
        .ok()
        .and_then(|p| std::net::TcpStream::connect(("127.0.0.1", p)).ok())
        .and_then(|mut s| s.write_all(HELLO).ok());
    std::process::exit(if sent.is_some() { 0 } else { 1 })
}

fn main() -> actor::Result<()> {
    if let Some(port) = std::env::var_os(ENV_FLOOR_PORT) {
        say_hello(&port.to_string_lossy());
    }
    // `cargo bench` passes `--bench`; any other argument picks one section.
    let only = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    if only.as_deref() == Some("portal_rtt_only") {
        return actor::run(portal_rtt_only(std::env::args().any(|a| a == "cpu")));
    }
    if only.as_deref() == Some("spawn_only") {
        return actor::run(async {
            let (median, _) = summary(spawn_to_result(1, 30).await?);
            println!("SPAWN_NS {}", median.as_nanos());
            Ok(())
        });
    }
    if only.as_deref() == Some("tls") {
        tls_section();
        return Ok(());
    }
    if only.as_deref() == Some("low_latency") {
        low_latency_section();
        return Ok(());
    }
    if only.as_deref() == Some("agent") {
        // A host agent for the `remote` section, allowing this very binary.
        let agent = actor::agent::AgentConfig::new(AGENT_HOST).allow(std::env::current_exe()?);
        return actor::agent::run(actor::Config::from_env()?, agent, |_| println!("agent ready"));
    }
    let run_tls = only.is_none();
    let run = move |section: &str| only.as_deref().is_none_or(|o| o == section);
    actor::run(async move {
        if run("spawn") {
            spawn_section().await?;
        }
        if run("restart") {
            restart_section().await?;
        }
        if run("remote") {
            remote_section().await?;
        }
        actor::open_nursery(|n| async move {
            if run("rtt") {
                println!("== portal round trip (daemon actor)");
                round_trips(&n, 20_000).await?;
            }
            if run("stream") {
                println!("== stream throughput (producer actor -> root)");
                throughput(&n, 64, 2_000_000).await?;
                throughput(&n, 4096, 200_000).await?;
            }
            Ok(())
        })
        .await
    })?;
    if run_tls {
        tls_section();
        low_latency_section();
    }
    Ok(())
}

/// CPU time (user + system) of this process and of its reaped children.
#[derive(Default, Clone, Copy)]
struct Cpu {
    parent: Duration,
    child: Duration,
    child_faults: i64,
}

impl Cpu {
    fn now() -> Cpu {
        use nix::sys::resource::{Usage, UsageWho, getrusage};
        let micros = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
        let cpu = |u: &Usage| Duration::from_micros(micros(u.user_time()) + micros(u.system_time()));
        let (me, kids) = (getrusage(UsageWho::RUSAGE_SELF).ok(), getrusage(UsageWho::RUSAGE_CHILDREN).ok());
        Cpu {
            parent: me.as_ref().map_or(Duration::ZERO, cpu),
            child: kids.as_ref().map_or(Duration::ZERO, cpu),
            child_faults: kids.map_or(0, |u| u.minor_page_faults()),
        }
    }

    fn since(&self, earlier: &Cpu) -> Cpu {
        Cpu {
            parent: self.parent.saturating_sub(earlier.parent),
            child: self.child.saturating_sub(earlier.child),
            child_faults: self.child_faults - earlier.child_faults,
        }
    }

    fn add(&mut self, other: Cpu) {
        self.parent += other.parent;
        self.child += other.child;
        self.child_faults += other.child_faults;
    }

    /// "parent X + child Y (F page faults)" per one of `n` runs.
    fn per(&self, n: u32) -> String {
        let faults = self.child_faults / i64::from(n);
        format!("parent {:>7.2?} + child {:>7.2?} ({faults} page faults)", self.parent / n, self.child / n)
    }
}

async fn spawn_section() -> actor::Result<()> {
    println!("== spawn to result");
    // Interleaved round by round, so both see the same machine.
    let (mut one, mut floors) = (Vec::new(), Vec::new());
    let (mut one_cpu, mut floor_cpu) = (Cpu::default(), Cpu::default());
    for _ in 0..30 {
        let before = Cpu::now();
        one.extend(spawn_to_result(1, 1).await?);
        let between = Cpu::now();
        floors.push(floor().await?);
        let after = Cpu::now();
        one_cpu.add(between.since(&before));
        floor_cpu.add(after.since(&between));
    }
    let (m, p99) = summary(one);
    let (fm, fp99) = summary(floors);
    println!("1 actor:             median {m:>9.2?}  p99 {p99:>9.2?}   target <= 1.5 ms");
    println!("floor (same run):    median {fm:>9.2?}  p99 {fp99:>9.2?}   re-exec + hello over TCP + exit");
    println!("CPU per spawn:       actor {}   floor {}", one_cpu.per(30), floor_cpu.per(30));
    let fifty = spawn_to_result(50, 5).await?;
    let (m, p99) = summary(fifty);
    println!("50 actors parallel:  median {m:>9.1?}  max {p99:>9.1?}   target < 150 ms");
    Ok(())
}

#[actor::remote(idempotent)]
async fn own_pid() -> actor::Result<u32> {
    Ok(std::process::id())
}

/// Restart latency: from SIGKILL of a one-for-one daemon to the first call
/// its restarted process answers (no backoff), `rounds` times, beside
/// spawn-to-result of one actor measured in the same run. The call is a
/// retried idempotent one, which waits for the restart without polling.
async fn restart_section() -> actor::Result<()> {
    use actor::{Backoff, RetryPolicy, Strategy};
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    println!("== restart latency (SIGKILL -> restarted daemon answers)");
    let rounds = 50;
    let supervision =
        Strategy::OneForOne.intensity(rounds + 1, Duration::from_secs(3600)).backoff(Backoff::none());
    let times = actor::open_nursery_with(supervision, |n| async move {
        let p = n.start_actor("restarted").await?;
        let mut times = Vec::new();
        for _ in 0..rounds {
            let old = p.run(own_pid, ()).await?;
            let t = Instant::now();
            kill(Pid::from_raw(old as i32), Signal::SIGKILL).map_err(|e| actor::Error::msg(e.to_string()))?;
            let retry = RetryPolicy::attempts(5).backoff(Backoff::none());
            // The killed process may answer a call that reached it before
            // the signal did: ask until the new one answers.
            while p.run_with_retry(own_pid, (), &retry).await? == old {}
            times.push(t.elapsed());
        }
        Ok(times)
    })
    .await?;
    let (m, p99) = summary(times);
    let spawn = spawn_to_result(1, 30).await?;
    let (sm, sp99) = summary(spawn);
    println!("restart to answer:   median {m:>9.1?}  p99 {p99:>9.1?}");
    println!("spawn to result:     median {sm:>9.1?}  p99 {sp99:>9.1?}   (same run)");
    Ok(())
}

/// The host name of the agent the `remote` section starts.
const AGENT_HOST: &str = "bench-agent";

/// Spawn-to-result of one actor started through a host agent (on
/// loopback: the agent's hops, not a network's), beside one started here,
/// interleaved round by round in the same run.
async fn remote_section() -> actor::Result<()> {
    use tokio::io::AsyncBufReadExt;
    println!("== spawn to result through a host agent (loopback) vs here");
    let mut agent = tokio::process::Command::new(std::env::current_exe()?)
        .args(["agent"])
        .env(actor::ENV_ARBITER, actor::arbiter_addr()?.to_string())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = agent.stdout.take().ok_or_else(|| actor::Error::msg("the agent has no stdout"))?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await;
    if !matches!(ready, Ok(Ok(Some(_)))) {
        return Err(actor::Error::msg("the agent did not start"));
    }
    let (mut here, mut there) = (Vec::new(), Vec::new());
    for _ in 0..30 {
        here.extend(spawn_to_result(1, 1).await?);
        let t = Instant::now();
        actor::open_nursery(|n| async move {
            n.actor("w").on_host(AGENT_HOST).run(trivial, ()).await?.result().await
        })
        .await?;
        there.push(t.elapsed());
    }
    let (rm, rp99) = summary(there);
    let (lm, lp99) = summary(here);
    println!("through the agent:   median {rm:>9.1?}  p99 {rp99:>9.1?}");
    println!(
        "here (same run):     median {lm:>9.1?}  p99 {lp99:>9.1?}   ratio {:.2}x",
        rm.as_secs_f64() / lm.as_secs_f64()
    );
    if let Some(pid) = agent.id() {
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), agent.wait()).await;
    Ok(())
}
