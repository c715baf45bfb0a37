//! A durable workflow: 20 steps on two worker actors, each step a job
//! recorded in a journal (an SQLite file) before it is dispatched and when it
//! ends. Kill the program halfway and run it again: the finished steps come
//! back from the journal without running, and the work goes on from the
//! first unfinished step.
//!
//! ```sh
//! cargo run --example durable_workflow -- --crash-after 7   # SIGKILLs itself after step 7
//! cargo run --example durable_workflow                      # resumes at step 8
//! cargo run -p procactor-cli -- jobs /tmp/procactor-durable-workflow.db
//! ```
//!
//! `--crash-after N` starts over (it removes the journal first); `--journal
//! PATH` puts the journal elsewhere (default: `procactor-durable-workflow.db`
//! in the temporary directory).

use std::path::PathBuf;

use actor::jobs::{Job, Journal};
use actor::{Error, RetryPolicy};

const STEPS: u64 = 20;

/// One step: folds `step` into the running value. Idempotent (the same
/// inputs give the same output), so a step cut short may run again.
#[actor::remote(idempotent)]
async fn mix(acc: u64, step: u64) -> actor::Result<u64> {
    Ok((acc * 31 + step * step) % 1_000_003)
}

struct Options {
    journal: PathBuf,
    crash_after: Option<u64>,
}

fn options() -> actor::Result<Options> {
    let mut journal = std::env::temp_dir().join("procactor-durable-workflow.db");
    let mut crash_after = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| Error::Config(format!("{arg} needs a value")));
        match arg.as_str() {
            "--journal" => journal = value()?.into(),
            "--crash-after" => {
                let n = value()?;
                crash_after =
                    Some(n.parse().map_err(|_| Error::Config(format!("--crash-after {n}: not a number")))?);
            }
            other => return Err(Error::Config(format!("unknown argument {other:?}"))),
        }
    }
    Ok(Options { journal, crash_after })
}

fn main() -> actor::Result<()> {
    actor::run(async {
        let Options { journal: path, crash_after } = options()?;
        if crash_after.is_some() {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
        let journal = Journal::open(&path)?;
        println!("journal: {}", path.display());
        actor::open_nursery(|n| async move {
            // Two workers; the jobs find them by name through the arbiter.
            n.start_actor("left").await?;
            n.start_actor("right").await?;
            let (value, replayed) = journal
                .workflow("durable-demo")
                .run(|wf| async move {
                    let mut acc = 1;
                    for step in 1..=STEPS {
                        let worker = if step % 2 == 1 { "left" } else { "right" };
                        let before = wf.replayed();
                        let job = Job::new(mix, (acc, step)).on(worker).retry(RetryPolicy::attempts(5));
                        acc = wf.step(job).await?;
                        if wf.replayed() > before {
                            println!("step {step:2}: {acc:7}  (replayed from the journal)");
                        } else {
                            println!("step {step:2}: {acc:7}  (ran on {worker})");
                            if crash_after == Some(step) {
                                println!("crashing after step {step}: SIGKILL");
                                nix::sys::signal::kill(
                                    nix::unistd::getpid(),
                                    nix::sys::signal::Signal::SIGKILL,
                                )
                                .map_err(|e| Error::msg(format!("kill: {e}")))?;
                            }
                        }
                    }
                    Ok((acc, wf.replayed()))
                })
                .await?;
            println!(
                "result: {value}; {replayed} of {STEPS} steps replayed from the journal, {} run now",
                STEPS - replayed as u64
            );
            Ok(())
        })
        .await
    })
}
