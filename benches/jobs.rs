//! Durable jobs against plain portal calls, in the same run: the round trip
//! of one journaled job (recorded before dispatch, attempt and outcome
//! committed) beside a plain call to the same daemon, and jobs per second
//! with durable commits (`synchronous=FULL`), one at a time and 32 at once,
//! beside `synchronous=NORMAL` and the local executor.
//!
//! Run: `cargo bench --bench jobs`. The journal lives in the temporary
//! directory (`TMPDIR`), so its disk sets the durable figures.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use actor::jobs::{Durability, Job, Journal};
use futures::StreamExt as _;

mod shared;

use shared::summary;

#[actor::remote(idempotent)]
async fn echo_job(x: u64) -> actor::Result<u64> {
    Ok(x)
}

fn journal_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("procactor-bench-jobs-{}-{name}.db", std::process::id()))
}

fn remove(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Jobs per second: `count` jobs, `parallel` at a time.
async fn rate(
    journal: &Journal,
    p: &actor::Portal,
    tag: &str,
    count: u64,
    parallel: usize,
) -> actor::Result<f64> {
    let t = Instant::now();
    let mut done = futures::stream::iter(0..count)
        .map(|i| journal.submit(Job::new(echo_job, (i,)).on_portal(p).key(format!("{tag}-{i}"))))
        .buffer_unordered(parallel);
    while let Some(r) = done.next().await {
        r?;
    }
    Ok(count as f64 / t.elapsed().as_secs_f64())
}

fn main() -> actor::Result<()> {
    actor::run(async {
        let full_path = journal_path("full");
        let normal_path = journal_path("normal");
        remove(&full_path);
        remove(&normal_path);
        let full = Journal::open_with(&full_path, Durability::Full)?;
        let normal = Journal::open_with(&normal_path, Durability::Normal)?;
        let local = Journal::in_memory()?.local();
        actor::open_nursery(|n| async move {
            let p = n.start_actor("echo_daemon").await?;
            for i in 0..500 {
                p.run(echo_job, (i,)).await?;
                full.submit(Job::new(echo_job, (i,)).on_portal(&p).key(format!("warm-{i}"))).await?;
            }
            println!("== journaled job round trip vs plain portal call (same daemon, interleaved blocks)");
            let calls = 2_000u64;
            let (mut plain, mut durable, mut relaxed, mut named) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for block in 0..10 {
                for i in 0..calls / 10 {
                    let x = block * calls + i;
                    let t = Instant::now();
                    std::hint::black_box(p.run(echo_job, (x,)).await?);
                    plain.push(t.elapsed());
                    let t = Instant::now();
                    full.submit(Job::new(echo_job, (x,)).on_portal(&p).key(format!("rt-{x}"))).await?;
                    durable.push(t.elapsed());
                    let t = Instant::now();
                    normal.submit(Job::new(echo_job, (x,)).on_portal(&p).key(format!("rt-{x}"))).await?;
                    relaxed.push(t.elapsed());
                    let t = Instant::now();
                    normal
                        .submit(Job::new(echo_job, (x,)).on("echo_daemon").key(format!("named-{x}")))
                        .await?;
                    named.push(t.elapsed());
                }
            }
            let show = |what: &str, v: Vec<Duration>| {
                let (m, p99) = summary(v);
                println!("{what:<44} median {m:>9.1?}  p99 {p99:>9.1?}");
                m
            };
            let base = show("plain portal call", plain);
            let d = show("job, synchronous=FULL (the default)", durable);
            let r = show("job, synchronous=NORMAL", relaxed);
            let nm = show("job, NORMAL, target found by name", named);
            let ratio = |m: Duration| m.as_secs_f64() / base.as_secs_f64();
            println!(
                "  ratios to the plain call: FULL {:.1}x, NORMAL {:.1}x, by name {:.1}x",
                ratio(d),
                ratio(r),
                ratio(nm)
            );

            println!("== jobs per second ({calls} jobs each)");
            let plain_rate = {
                let t = Instant::now();
                let mut done =
                    futures::stream::iter(0..calls).map(|i| p.run(echo_job, (i,))).buffer_unordered(32);
                while let Some(r) = done.next().await {
                    r?;
                }
                calls as f64 / t.elapsed().as_secs_f64()
            };
            println!("plain portal calls, 32 at once:       {plain_rate:>9.0} calls/s");
            for (what, journal, tag) in
                [("FULL", &full, "f"), ("NORMAL", &normal, "n"), ("local executor, in memory", &local, "l")]
            {
                let one = rate(journal, &p, &format!("{tag}1"), calls, 1).await?;
                let many = rate(journal, &p, &format!("{tag}32"), calls, 32).await?;
                println!("jobs, {what}: {one:>9.0} jobs/s one at a time, {many:>9.0} jobs/s 32 at once");
            }
            Ok(())
        })
        .await?;
        remove(&full_path);
        remove(&normal_path);
        Ok(())
    })
}
