//! The registry in etcd beside the embedded arbiter, measured in the same
//! run: `find_actor` latency (median and p99, the found actor's connection
//! cached, so the lookup itself), and new registrations per second, one at a
//! time and 16 at a time, each over a new connection as a starting actor
//! makes it (`actor::__private::register_many`).
//!
//! It starts its own single-member etcd on free loopback ports with a
//! temporary data directory, and stops it at the end. Run:
//! `cargo bench --features etcd --bench registry` (needs `etcd` on PATH).
//! This binary is an actor program: run with `inner`, it is the measuring
//! root, once per registry.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FINDS: usize = 3_000;
const SEQUENTIAL: usize = 300;
const PARALLEL: usize = 2_000;
const CONCURRENCY: usize = 16;

fn main() -> actor::Result<()> {
    if std::env::args().any(|a| a == "inner") {
        return actor::run(inner());
    }
    let etcd = Etcd::start().map_err(actor::Error::Config)?;
    let arbiter = measure(&[("ACTOR_ARBITER", "private".to_owned())]);
    let in_etcd = measure(&[
        ("ACTOR_ARBITER", etcd.url.clone()),
        ("ACTOR_ETCD_PREFIX", format!("/bench-{}/", std::process::id())),
    ]);
    etcd.stop();
    let (arbiter, in_etcd) = (arbiter?, in_etcd?);
    println!("== the registry: embedded arbiter vs etcd 3.4 (one member, loopback, data on disk), same run");
    println!("{:<44} {:>18} {:>18}", "", "embedded arbiter", "etcd");
    let row = |what: &str, key: &str, unit: &str| {
        println!("{what:<44} {:>15} {unit} {:>15} {unit}", value(&arbiter, key), value(&in_etcd, key));
    };
    row("find_actor, median", "FIND_MEDIAN_US", "us");
    row("find_actor, p99", "FIND_P99_US", "us");
    row("registrations/s, one at a time", "REG_SEQUENTIAL", "/s");
    row(&format!("registrations/s, {CONCURRENCY} at a time"), "REG_PARALLEL", "/s");
    Ok(())
}

/// The measuring root: a child to find, lookups of it, then registrations.
async fn inner() -> actor::Result<()> {
    actor::open_nursery(|n| async move {
        n.start_actor("target").await?;
        actor::wait_for_actor_within("target", Duration::from_secs(10)).await?;
        for _ in 0..200 {
            actor::find_actor("target").await?;
        }
        let mut times = Vec::with_capacity(FINDS);
        for _ in 0..FINDS {
            let t = Instant::now();
            std::hint::black_box(actor::find_actor("target").await?);
            times.push(t.elapsed());
        }
        times.sort();
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
        println!("FIND_MEDIAN_US {:.0}", at(0.5));
        println!("FIND_P99_US {:.0}", at(0.99));
        let took = actor::__private::register_many(SEQUENTIAL, 1).await?;
        println!("REG_SEQUENTIAL {:.0}", SEQUENTIAL as f64 / took.as_secs_f64());
        let took = actor::__private::register_many(PARALLEL, CONCURRENCY).await?;
        println!("REG_PARALLEL {:.0}", PARALLEL as f64 / took.as_secs_f64());
        Ok(())
    })
    .await
}

/// Runs this program as the measuring root with `env`; returns its output.
fn measure(env: &[(&str, String)]) -> actor::Result<String> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("inner").stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(actor::Error::Config(format!(
            "the measuring root failed with {env:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn value<'a>(output: &'a str, key: &str) -> &'a str {
    output.lines().find_map(|l| l.strip_prefix(key)).map(str::trim).unwrap_or("?")
}

/// A single-member etcd on free loopback ports, with a temporary data dir.
struct Etcd {
    child: std::process::Child,
    dir: std::path::PathBuf,
    url: String,
}

impl Etcd {
    fn start() -> Result<Etcd, String> {
        let port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|e| e.to_string())
        };
        let (client, peer) = (port()?, port()?);
        let dir = std::env::temp_dir().join(format!("actor-bench-etcd-{}", std::process::id()));
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut child = Command::new("etcd")
            .args(["--name", "bench", "--data-dir"])
            .arg(&dir)
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args([
                "--initial-cluster",
                &format!("bench={peer_url}"),
                "--logger",
                "zap",
                "--log-outputs",
                "stdout",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start etcd (apt-get install etcd-server): {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout from etcd")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("serving client traffic") {
                    let _ = tx.send(());
                }
            }
        });
        let etcd = Etcd { child, dir, url: format!("etcd://127.0.0.1:{client}") };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(()) => Ok(etcd),
            Err(_) => {
                etcd.stop();
                Err("etcd did not start serving within 30 s".into())
            }
        }
    }

    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
