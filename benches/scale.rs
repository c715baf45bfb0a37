//! Scale: one root holding many live daemon actors at once (issue 15, target 4).
//!
//! The root spawns `--actors N` daemon actors (default 1000), `--batch B` at a
//! time (default 50, all of a batch in flight at once), and prints the time of
//! each block of `--block K` spawns (default 200): if a per-spawn cost grew
//! with the number of live actors, later blocks would take longer. With all
//! N alive it samples the root's RSS and open fds, and the proportional set
//! size (PSS, from /proc/PID/smaps_rollup: shared pages are split among the
//! processes that map them) of every actor; then it makes one call to each
//! actor, all N in flight at once, and finally tears the nursery down and
//! counts the processes left below the root. Each figure is printed beside
//! its target from the issue.
//!
//! The root raises its soft fd limit to the hard one before starting (as
//! `actor::run` itself does since this bench was written), so a build
//! without that still reaches N actors and the two can be compared.
//!
//! Run: `cargo bench --bench scale -- [--actors N] [--batch B] [--block K]`.
//! The arbiter defaults to an ephemeral port (never 1616) unless
//! `ACTOR_ARBITER` is set. This binary is an actor program: the actors it
//! spawns are re-executions of it.

use std::time::{Duration, Instant};

mod shared;

use shared::descendants;

/// How long one call may take before the bench gives up on it.
const CALL_BOUND: Duration = Duration::from_secs(30);

#[actor::remote]
async fn own_pid() -> actor::Result<u32> {
    Ok(std::process::id())
}

struct Args {
    actors: usize,
    batch: usize,
    block: usize,
}

fn parse_args() -> Result<Args, String> {
    let [actors, batch, block] =
        shared::numeric_flags([("--actors", 1000), ("--batch", 50), ("--block", 200)])?;
    let size = |v: u64| usize::try_from(v).map_err(|_| format!("{v} is too large"));
    let a = Args { actors: size(actors)?, batch: size(batch)?, block: size(block)? };
    if a.batch == 0 || a.block == 0 {
        return Err("--batch and --block must be at least 1".into());
    }
    Ok(a)
}

/// A `kB` field of /proc/`pid`/`file`, or 0 if it cannot be read.
fn proc_kib(pid: &str, file: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Raises the soft limit on open files to the hard limit. Best effort: a
/// root that cannot fails its spawns with an error that says so.
fn raise_fd_limit() {
    use nix::libc::{RLIMIT_NOFILE, getrlimit, rlimit, setrlimit};
    let mut limit = rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: both calls only read or write the one rlimit struct passed.
    unsafe {
        if getrlimit(RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            setrlimit(RLIMIT_NOFILE, &limit);
        }
    }
}

fn main() -> actor::Result<()> {
    let args = parse_args().map_err(actor::Error::msg)?;
    if !actor::is_child() {
        raise_fd_limit();
    }
    let config = shared::config_with_ephemeral_arbiter()?;
    let left = actor::run_with(config, async move {
        let n = args.actors;
        println!("== {n} daemon actors, spawned {} at a time", args.batch);
        let t_all = Instant::now();
        actor::open_nursery(|nursery| async move {
            let mut portals = Vec::with_capacity(n);
            let mut block_start = Instant::now();
            let mut blocks = Vec::new();
            while portals.len() < n {
                let batch = args.batch.min(n - portals.len());
                let base = portals.len();
                let spawns = (0..batch).map(|i| nursery.start_actor(format!("d{}", base + i)));
                portals.extend(futures::future::try_join_all(spawns).await?);
                if portals.len() % args.block == 0 || portals.len() == n {
                    blocks.push((portals.len(), block_start.elapsed()));
                    block_start = Instant::now();
                }
            }
            let spawn_time = t_all.elapsed();
            let rate = n as f64 / spawn_time.as_secs_f64();
            println!("spawn {n}:           {spawn_time:>9.2?}  {rate:>7.0} actors/s   target >= 500/s");
            let per_block: Vec<String> =
                blocks.iter().map(|(upto, t)| format!("{upto}: {:.2} s", t.as_secs_f64())).collect();
            println!("per block of {}:   {}", args.block, per_block.join(", "));

            let rss = proc_kib("self", "status", "VmRSS:");
            let fds = open_fds();
            println!(
                "root at {n}:        RSS {:.1} MiB, {fds} fds ({:.2} per actor)",
                mib(rss),
                fds as f64 / n as f64
            );

            let t = Instant::now();
            let calls = portals.iter().map(|p| p.run_with_timeout(own_pid, (), CALL_BOUND));
            let pids = futures::future::try_join_all(calls).await?;
            println!("one call to each:   {:>9.2?}   (all {n} in flight at once)", t.elapsed());

            let pss: Vec<u64> =
                pids.iter().map(|pid| proc_kib(&pid.to_string(), "smaps_rollup", "Pss:")).collect();
            let readable = pss.iter().filter(|&&k| k > 0).count();
            let total: u64 = pss.iter().sum();
            println!(
                "PSS per idle actor: {:.2} MiB (sum {:.0} MiB over {readable} of {n} actors; root {:.1} MiB)",
                mib(total) / readable.max(1) as f64,
                mib(total),
                mib(proc_kib("self", "smaps_rollup", "Pss:")),
            );
            let t = Instant::now();
            nursery.cancel().await;
            Ok(t)
        })
        .await
        .map(|t| {
            // The nursery has reaped every actor once open_nursery returns.
            let teardown = t.elapsed();
            let (alive, zombies) = descendants();
            // The tree's watcher (a re-execution of this program) lives
            // until the root returns; it is not an actor.
            let actors_left = alive.iter().filter(|d| d.contains("actor:")).count();
            println!(
                "teardown of {n}:     {teardown:>9.2?}   target <= 3 s; actors left {actors_left}, zombies {}",
                zombies.len()
            );
            actors_left + zombies.len()
        })
    })?;
    let (alive, zombies) = descendants();
    println!("after actor::run:   {} processes left below the root, {} zombies", alive.len(), zombies.len());
    if left > 0 || !alive.is_empty() || !zombies.is_empty() {
        return Err(actor::Error::msg("processes were left behind"));
    }
    Ok(())
}
