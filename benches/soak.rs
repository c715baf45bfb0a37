//! Soak test: does the root leak memory, file descriptors or processes over a
//! long run?
//!
//! Phase 1 spawns and reaps `--actors N` actors in waves of `--wave W`: each
//! wave is one nursery running W trivial `run_in_actor` functions, spawned
//! concurrently, every result collected and checked. Phase 2 streams from one
//! daemon actor for `--stream-secs S` seconds: repeatedly a stream of 64-byte
//! `Bytes` items read to the end, then a few `portal.run` calls.
//!
//! The root's RSS (VmRSS, and peak VmHWM), open fd count and the number of
//! actors the arbiter lists are sampled at the start, after phase 1 and at the
//! end (RSS and fds also periodically in between); after each phase it counts
//! the processes whose parent chain leads to the root, alive and zombie (0 once
//! the nurseries are closed), and again after `actor::run` returns. Errors are
//! counted, not fatal, and the first message is kept. A summary table is
//! printed last.
//!
//! Run: `cargo bench --bench soak -- [--actors N] [--wave W] [--stream-secs S]`
//! (defaults 10000, 50, 600). The arbiter defaults to an ephemeral port (never
//! 1616) unless `ACTOR_ARBITER` is set. This binary is an actor program: the
//! actors it spawns are re-executions of it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod shared;

use shared::{descendants, echo, produce};

/// Items per stream in phase 2.
const STREAM_ITEMS: u64 = 20_000;
/// `portal.run` calls after each stream in phase 2.
const CALLS_PER_ROUND: u64 = 20;
/// How often the phases print a progress line.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

#[actor::remote]
async fn trivial(i: u64) -> actor::Result<u64> {
    Ok(i * 2 + 1)
}

struct Args {
    actors: u64,
    wave: u64,
    stream_secs: u64,
}

fn parse_args() -> Result<Args, String> {
    let [actors, wave, stream_secs] =
        shared::numeric_flags([("--actors", 10_000), ("--wave", 50), ("--stream-secs", 600)])?;
    let a = Args { actors, wave, stream_secs };
    if a.wave == 0 {
        return Err("--wave must be at least 1".into());
    }
    Ok(a)
}

/// The root's resident set, open fds and peak RSS.
#[derive(Clone, Copy)]
struct Sample {
    rss_kib: u64,
    hwm_kib: u64,
    fds: usize,
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn sample() -> Sample {
    Sample {
        rss_kib: status_kib("VmRSS:"),
        hwm_kib: status_kib("VmHWM:"),
        fds: std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
    }
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RSS {:.1} MiB, {} fds", self.rss_kib as f64 / 1024.0, self.fds)
    }
}

/// Error counts, keeping the first message.
#[derive(Default)]
struct Errors {
    count: AtomicU64,
    first: Mutex<Option<String>>,
}

impl Errors {
    fn record(&self, what: &str, e: &actor::Error) {
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(format!("{what}: {e}"));
        }
        if n < 5 {
            eprintln!("error #{}: {what}: {e}", n + 1);
        }
    }
    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
    fn first(&self) -> String {
        self.first.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_else(|| "-".into())
    }
}

#[derive(Default)]
struct Phase1 {
    spawned: u64,
    results_ok: u64,
    waves: u64,
    errors: Errors,
    wave_ms: Vec<f64>,
    elapsed: Duration,
}

async fn phase1(args: &Args) -> Phase1 {
    let mut p = Phase1::default();
    let start = Instant::now();
    let mut next_report = start + PROGRESS_EVERY;
    let mut done = 0u64;
    while done < args.actors {
        let size = args.wave.min(args.actors - done);
        let base = done;
        let t = Instant::now();
        let errors = &p.errors;
        let outcome = actor::open_nursery(|n| async move {
            let spawns = (0..size).map(|i| n.run_in_actor(format!("soak{}", base + i), trivial, (base + i,)));
            let spawned = futures::future::join_all(spawns).await;
            let (mut started, mut ok) = (0u64, 0u64);
            let mut portals = Vec::new();
            for (i, s) in spawned.into_iter().enumerate() {
                match s {
                    Ok(portal) => {
                        started += 1;
                        portals.push((base + i as u64, portal));
                    }
                    Err(e) => errors.record("spawn", &e),
                }
            }
            for (i, portal) in portals {
                match portal.result().await {
                    Ok(v) if v == i * 2 + 1 => ok += 1,
                    Ok(v) => errors.record("result", &actor::Error::msg(format!("actor {i} returned {v}"))),
                    Err(e) => errors.record("result", &e),
                }
            }
            Ok((started, ok))
        })
        .await;
        match outcome {
            Ok((started, ok)) => {
                p.spawned += started;
                p.results_ok += ok;
            }
            Err(e) => errors.record("nursery", &e),
        }
        p.wave_ms.push(t.elapsed().as_secs_f64() * 1e3);
        p.waves += 1;
        done += size;
        if Instant::now() >= next_report {
            next_report += PROGRESS_EVERY;
            let secs = start.elapsed().as_secs_f64();
            println!(
                "  phase 1: {done:>6}/{} actors, {secs:>6.1} s, {:>6.1} actors/s, {}, {} errors",
                args.actors,
                done as f64 / secs,
                sample(),
                p.errors.count()
            );
        }
    }
    p.elapsed = start.elapsed();
    p
}

#[derive(Default)]
struct Phase2 {
    streams: u64,
    items: u64,
    calls: u64,
    errors: Errors,
    elapsed: Duration,
    rss_min_kib: u64,
    rss_max_kib: u64,
}

async fn phase2(args: &Args) -> Phase2 {
    let mut p = Phase2 { rss_min_kib: u64::MAX, ..Default::default() };
    let duration = Duration::from_secs(args.stream_secs);
    let start = Instant::now();
    let p_ref = &mut p;
    let outcome = actor::open_nursery(|n| async move {
        let daemon = n.start_actor("soak_streamer").await?;
        let mut next_report = start + PROGRESS_EVERY;
        let mut round = 0u64;
        while start.elapsed() < duration {
            round += 1;
            match daemon.open_stream_from(produce, (STREAM_ITEMS, 64)).await {
                Ok(mut s) => {
                    let mut got = 0u64;
                    while let Some(item) = s.recv().await {
                        match item {
                            Ok(b) if b.len() == 64 => got += 1,
                            Ok(b) => p_ref.errors.record("stream item", &actor::Error::msg(format!("{} bytes", b.len()))),
                            Err(e) => p_ref.errors.record("stream", &e),
                        }
                    }
                    p_ref.items += got;
                    p_ref.streams += 1;
                    if got != STREAM_ITEMS {
                        let e = actor::Error::msg(format!("stream {round} ended after {got}/{STREAM_ITEMS} items"));
                        p_ref.errors.record("stream", &e);
                    }
                }
                Err(e) => p_ref.errors.record("open_stream_from", &e),
            }
            for i in 0..CALLS_PER_ROUND {
                let x = round * 1000 + i;
                match daemon.run(echo, (x,)).await {
                    Ok(y) if y == x => p_ref.calls += 1,
                    Ok(y) => p_ref.errors.record("run", &actor::Error::msg(format!("echo({x}) returned {y}"))),
                    Err(e) => p_ref.errors.record("run", &e),
                }
            }
            let now = sample();
            p_ref.rss_min_kib = p_ref.rss_min_kib.min(now.rss_kib);
            p_ref.rss_max_kib = p_ref.rss_max_kib.max(now.rss_kib);
            if Instant::now() >= next_report {
                next_report += PROGRESS_EVERY;
                let secs = start.elapsed().as_secs_f64();
                println!(
                    "  phase 2: {secs:>6.1} s, {} streams, {} items ({:.0} items/s), {} calls, {now}, {} errors",
                    p_ref.streams,
                    p_ref.items,
                    p_ref.items as f64 / secs,
                    p_ref.calls,
                    p_ref.errors.count()
                );
            }
        }
        daemon.cancel_actor().await
    })
    .await;
    if let Err(e) = outcome {
        p.errors.record("nursery", &e);
    }
    p.elapsed = start.elapsed();
    p
}

/// How many actors the arbiter lists (the root only, between phases): a
/// registry that kept reaped actors would grow here.
async fn arbiter_entries() -> String {
    match actor::list_actors().await {
        Ok(entries) => entries.len().to_string(),
        Err(e) => format!("error: {e}"),
    }
}

/// One row of a markdown table: a wide label column, then right-aligned
/// values (one wide column when there is a single value).
fn row(cells: &[&str]) {
    let width = if cells.len() == 2 { 40 } else { 14 };
    let mut line = format!("| {:<34} |", cells[0]);
    for c in &cells[1..] {
        line += &format!(" {c:>width$} |");
    }
    println!("{line}");
}

fn rule(columns: usize) {
    let width = if columns == 2 { 42 } else { 16 };
    println!("|{}|{}", "-".repeat(36), format!("{}|", "-".repeat(width)).repeat(columns - 1));
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn main() -> actor::Result<()> {
    let config = shared::config_with_ephemeral_arbiter()?;
    // Spawned actors get no arguments (and never get past `run_with`).
    let args = parse_args().map_err(|e| {
        actor::Error::msg(format!("{e}; usage: soak [--actors N] [--wave W] [--stream-secs S]"))
    })?;
    let (alive_after_run, zombies_after_run) = actor::run_with(config, async move {
        println!(
            "soak: {} actors in waves of {}, then streaming for {} s (pid {})",
            args.actors,
            args.wave,
            args.stream_secs,
            std::process::id()
        );
        let s0 = sample();
        let reg0 = arbiter_entries().await;
        println!("start: {s0}, {reg0} arbiter entries");

        println!("== phase 1: spawn and reap {} actors in waves of {}", args.actors, args.wave);
        let p1 = phase1(&args).await;
        let s1 = sample();
        let (alive1, zombies1) = descendants();
        let reg1 = arbiter_entries().await;
        println!(
            "after phase 1: {s1}; {:.1} s, {:.1} actors/s; {} descendants alive, {} zombies",
            p1.elapsed.as_secs_f64(),
            p1.spawned as f64 / p1.elapsed.as_secs_f64().max(1e-9),
            alive1.len(),
            zombies1.len()
        );

        println!("== phase 2: stream from a daemon actor for {} s", args.stream_secs);
        let p2 = phase2(&args).await;
        let s2 = sample();
        let (alive2, zombies2) = descendants();
        let reg2 = arbiter_entries().await;
        for d in alive2.iter().chain(&zombies2).take(10) {
            println!("  still there: {d}");
        }

        let mut waves = p1.wave_ms.clone();
        waves.sort_by(f64::total_cmp);
        let pct = |q: f64| if waves.is_empty() { 0.0 } else { shared::percentile(&waves, q) };
        let secs2 = p2.elapsed.as_secs_f64().max(1e-9);

        println!();
        println!("== summary (root process, pid {})", std::process::id());
        row(&["metric", "start", "after phase 1", "end"]);
        rule(4);
        row(&["RSS (VmRSS)", &mib(s0.rss_kib), &mib(s1.rss_kib), &mib(s2.rss_kib)]);
        row(&["peak RSS (VmHWM)", &mib(s0.hwm_kib), &mib(s1.hwm_kib), &mib(s2.hwm_kib)]);
        row(&["open fds", &s0.fds.to_string(), &s1.fds.to_string(), &s2.fds.to_string()]);
        row(&["arbiter entries", &reg0, &reg1, &reg2]);
        row(&["descendant processes alive", "-", &alive1.len().to_string(), &alive2.len().to_string()]);
        row(&["descendant zombies", "-", &zombies1.len().to_string(), &zombies2.len().to_string()]);
        println!();
        row(&["phase 1: spawn and reap", ""]);
        rule(2);
        row(&["actors requested / wave size", &format!("{} / {}", args.actors, args.wave)]);
        row(&["actors spawned / results ok", &format!("{} / {}", p1.spawned, p1.results_ok)]);
        row(&["waves", &p1.waves.to_string()]);
        row(&["duration", &format!("{:.1} s", p1.elapsed.as_secs_f64())]);
        row(&["actors/s", &format!("{:.1}", p1.spawned as f64 / p1.elapsed.as_secs_f64().max(1e-9))]);
        row(&[
            "wave time median / p99 / max",
            &format!("{:.1} / {:.1} / {:.1} ms", pct(0.5), pct(0.99), pct(1.0)),
        ]);
        row(&["errors", &p1.errors.count().to_string()]);
        row(&["first error", &p1.errors.first()]);
        println!();
        row(&["phase 2: streaming", ""]);
        rule(2);
        row(&["duration", &format!("{secs2:.1} s")]);
        row(&["streams / items (64 B)", &format!("{} / {}", p2.streams, p2.items)]);
        row(&["items/s", &format!("{:.0}", p2.items as f64 / secs2)]);
        row(&["portal.run calls", &p2.calls.to_string()]);
        let rss = if p2.rss_max_kib == 0 {
            "-".to_owned()
        } else {
            format!("{} / {}", mib(p2.rss_min_kib), mib(p2.rss_max_kib))
        };
        row(&["RSS min / max while streaming", &rss]);
        row(&["errors", &p2.errors.count().to_string()]);
        row(&["first error", &p2.errors.first()]);
        Ok(())
    })
    .map(|()| descendants())?;
    println!();
    println!(
        "after actor::run returned: {}; {} descendants alive, {} zombies",
        sample(),
        alive_after_run.len(),
        zombies_after_run.len()
    );
    Ok(())
}
