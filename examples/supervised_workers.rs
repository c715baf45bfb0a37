//! Workers that come back: a one-for-one nursery restarts what dies.
//!
//! Four worker daemons serve jobs under `Strategy::OneForOne`. A chaos task
//! kills a random worker every 40 jobs, alternately with SIGKILL and by making
//! it `exit(3)`. The nursery restarts each dead worker under its name, after a
//! short backoff; the portals follow, so the root keeps sending jobs through
//! the same handles. A job that hits a dying worker is retried (the job
//! function is declared idempotent), so every job gets its answer. At the end
//! the root prints how many restarts each worker needed.
//!
//! Run: `cargo run --example supervised_workers`
//! (`ACTOR_LOG=actor=info` shows each restart, its cause and its delay.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actor::{Backoff, Error, Portal, Restart, RetryPolicy, Strategy};
use futures::StreamExt as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const WORKERS: usize = 4;
const JOBS: u64 = 400;
const KILLS: u64 = 6;

/// The job: idempotent, so a retry after a lost answer is harmless.
#[actor::remote(idempotent)]
async fn square(x: u64) -> actor::Result<u64> {
    Ok(x * x)
}

#[actor::remote]
async fn worker_pid() -> actor::Result<u32> {
    Ok(std::process::id())
}

/// Ends this worker's process with exit status 3, as a crash would.
#[actor::remote]
async fn exit_now() -> actor::Result<()> {
    std::process::exit(3)
}

/// A small xorshift generator: the chaos needs no cryptography.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Kills worker number `pick` by `round`: SIGKILL on even rounds, exit(3) on odd.
async fn kill_one(workers: &[Portal], pick: usize, round: u64) -> actor::Result<()> {
    let w = &workers[pick];
    let pid = w.run(worker_pid, ()).await?;
    if round % 2 == 0 {
        println!("chaos: SIGKILL to {} (pid {pid})", w.uid().name);
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).map_err(|e| Error::msg(format!("kill: {e}")))?;
    } else {
        println!("chaos: exit(3) in {} (pid {pid})", w.uid().name);
        // The call cannot answer: its process ends.
        let _ = w.run(exit_now, ()).await;
    }
    Ok(())
}

fn main() -> actor::Result<()> {
    actor::run(async {
        let supervision = Strategy::OneForOne
            .intensity(20, Duration::from_secs(10))
            .backoff(Backoff::exponential(Duration::from_millis(10), Duration::from_millis(500)));
        actor::open_nursery_with(supervision, |n| async move {
            let mut workers = Vec::new();
            for i in 0..WORKERS {
                workers.push(n.actor(format!("worker{i}")).restart(Restart::Permanent).start().await?);
            }
            let workers = Arc::new(workers);
            let done = Arc::new(AtomicU64::new(0));
            let (progress, mut seen) = tokio::sync::watch::channel(0u64);

            let chaos = {
                let workers = workers.clone();
                tokio::spawn(async move {
                    let mut rng = u64::from(std::process::id()) | 1;
                    for round in 0..KILLS {
                        // Paced by the work done, not by the clock.
                        let at = (round + 1) * 40;
                        if seen.wait_for(|d| *d >= at).await.is_err() {
                            break;
                        }
                        let pick = ((next_random(&mut rng) >> 32) % WORKERS as u64) as usize;
                        if let Err(e) = kill_one(&workers, pick, round).await {
                            println!("chaos: could not kill worker{pick}: {e}");
                        }
                    }
                })
            };

            let retry = RetryPolicy::attempts(8).deadline(Duration::from_secs(20));
            let mut answers = futures::stream::iter(0..JOBS)
                .map(|x| {
                    let (workers, retry, done, progress) = (&workers, &retry, &done, &progress);
                    async move {
                        let w = &workers[(x as usize) % WORKERS];
                        let y = w.run_with_retry(square, (x,), retry).await?;
                        progress.send_replace(done.fetch_add(1, Ordering::SeqCst) + 1);
                        Ok::<_, Error>((x, y))
                    }
                })
                .buffer_unordered(8);
            let mut correct = 0;
            while let Some(answer) = answers.next().await {
                let (x, y) = answer?;
                if y == x * x {
                    correct += 1;
                }
            }
            drop(answers);
            chaos.await.map_err(|e| Error::msg(format!("the chaos task failed: {e}")))?;
            println!("{correct} of {JOBS} jobs answered correctly");
            let restarts = n.restarts();
            let total: u32 = restarts.iter().map(|(_, k)| k).sum();
            for (name, k) in &restarts {
                println!("{name}: restarted {k} time(s)");
            }
            println!("{total} restarts in all");
            Ok(())
        })
        .await
    })
}
