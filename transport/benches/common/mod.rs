//! Helpers shared by the transport benchmarks (`channel`, `tls`), included by
//! each with `mod common;`. Cargo does not build this file as a bench of its own
//! (only `benches/*.rs` and `benches/*/main.rs` are discovered).
//!
//! Both benchmarks re-execute their own binary as a peer process, which prints
//! its port(s) on its first line of stdout and exits when its stdin closes.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actor_transport::{Channel, Msg};
use bytes::Bytes;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = BoxError> = std::result::Result<T, E>;

/// The environment variable `name` parsed as a `T`, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

// ---------------------------------------------------------------------------
// The parent's side.

/// The peer process, killed if still running when dropped.
pub struct PeerProcess {
    child: Child,
}

impl PeerProcess {
    /// Re-executes this binary with `peer_env=1` and the given extra environment,
    /// and returns it with the first line it printed (its port or ports).
    pub fn spawn(peer_env: &str, envs: &[(&str, PathBuf)]) -> Result<(PeerProcess, String)> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(peer_env, "1")
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        // From here on, an early return kills and reaps the child (`Drop`).
        let stdout = child.stdout.take();
        let peer = PeerProcess { child };
        let stdout = stdout.ok_or("no peer stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        Ok((peer, line))
    }

    /// Closes the peer's stdin (its signal to exit) and reaps it, killing it if
    /// it has not exited within a few seconds.
    pub fn stop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `n` round trips of a `Msg::Yield` carrying `payload` over a channel to an
/// echoing peer, each one's time in nanoseconds pushed to `out`.
pub async fn channel_round_trips(
    chan: &mut Channel,
    payload: &Bytes,
    n: usize,
    out: &mut Vec<u64>,
) -> Result<()> {
    for i in 0..n as u64 {
        let t = Instant::now();
        chan.send(&Msg::Yield { cid: i, value: payload.clone() }).await?;
        let reply = chan.recv().await?;
        out.push(t.elapsed().as_nanos() as u64);
        match reply {
            Some(Msg::Yield { cid, value }) if cid == i && value == *payload => {}
            other => return Err(format!("channel echo returned {other:?}").into()),
        }
    }
    Ok(())
}

pub struct Stats {
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
    pub min: f64,
}

impl Stats {
    /// Percentiles of samples in nanoseconds, reported in microseconds (NaN for
    /// no samples).
    pub fn of(ns: &mut [u64]) -> Stats {
        if ns.is_empty() {
            return Stats { p50: f64::NAN, p99: f64::NAN, mean: f64::NAN, min: f64::NAN };
        }
        ns.sort_unstable();
        let at = |q: f64| ns[((ns.len() - 1) as f64 * q).round() as usize] as f64 / 1e3;
        let mean = ns.iter().sum::<u64>() as f64 / ns.len() as f64 / 1e3;
        Stats { p50: at(0.5), p99: at(0.99), mean, min: ns[0] as f64 / 1e3 }
    }
}

/// Prints round-trip statistics of `a` and `b` in microseconds under a header
/// (median, p99, mean, min), then a row `ratio_label` with `b / a` for each;
/// labels padded to `width`.
pub fn print_comparison(width: usize, a: (&str, &Stats), b: (&str, &Stats), ratio_label: &str) {
    println!("  {:<width$}{:>10}{:>10}{:>10}{:>10}", "", "median", "p99", "mean", "min");
    for (label, s) in [a, b] {
        println!("  {label:<width$}{:>7.1} us{:>7.1} us{:>7.1} us{:>7.1} us", s.p50, s.p99, s.mean, s.min);
    }
    let (a, b) = (a.1, b.1);
    println!(
        "  {ratio_label:<width$}{:>9.2}x{:>9.2}x{:>9.2}x{:>9.2}x",
        b.p50 / a.p50,
        b.p99 / a.p99,
        b.mean / a.mean,
        b.min / a.min
    );
}

// ---------------------------------------------------------------------------
// The peer's side.

/// Exits the process as soon as the parent closes our stdin (or dies).
pub fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
}
