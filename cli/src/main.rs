//! `actor`: look at and act on the live actors of a tree, through its
//! arbiter. `ps` lists them, `tree` draws the supervision tree, `top`
//! shows them refreshed with their call rates, `call` runs a remote
//! function with JSON arguments, `cancel` cancels an actor the way a portal
//! does. `jobs` reads a durable-jobs journal file instead (no tree
//! needed).
//!
//! The command joins the tree as a short-lived actor of its own (so it
//! authenticates exactly as any member does: the tree's secret, the per-user
//! secret file, or TLS certificates, from the usual `ACTOR_*` variables),
//! asks, prints, and leaves. It never hosts an arbiter: with none at the
//! address, it says so.

mod agent;
#[cfg(feature = "jobs")]
mod jobs;
mod json;
mod show;
mod survey;
mod top;

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Look at and act on the live actors of a tree.
#[derive(Parser, Debug)]
#[command(name = "actor", version, about, long_about = None)]
struct Cli {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// The tree's registry: its arbiter's address, or `etcd://host:port,...`
    /// when it keeps it in etcd (with the `etcd` feature).
    #[arg(long, global = true, env = actor::ENV_ARBITER, default_value = "tcp://127.0.0.1:1616")]
    arbiter: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    Ask(Ask),
    /// Run this host's agent: it starts the allowed programs as actors for parents on other hosts.
    Agent(agent::AgentArgs),
    /// The workflows and jobs a durable-jobs journal records (read from the file; no tree needed).
    #[cfg(feature = "jobs")]
    Jobs {
        /// The journal file.
        journal: std::path::PathBuf,
        /// A workflow id: list its steps. Without: every workflow, and the jobs submitted on their own.
        workflow: Option<String>,
        /// Settle this job (unresolved or failed) instead of listing: give --succeeded, --failed or --retry.
        #[arg(long, value_name = "KEY")]
        resolve: Option<String>,
        /// It ran, with this result (JSON).
        #[arg(long, value_name = "JSON", requires = "resolve", conflicts_with_all = ["failed", "retry"])]
        succeeded: Option<String>,
        /// It failed, for this reason.
        #[arg(long, value_name = "REASON", requires = "resolve", conflicts_with = "retry")]
        failed: Option<String>,
        /// It did not run: dispatch it again on the next run.
        #[arg(long, requires = "resolve")]
        retry: bool,
    },
}

/// The commands that ask a live tree and print the answer.
#[derive(Subcommand, Debug)]
enum Ask {
    /// Every live actor: name, uid, pid, host, parent, uptime, calls in flight, restarts.
    Ps,
    /// The live supervision tree.
    Tree,
    /// Call a remote function and print its result as JSON.
    Call {
        /// The actor: a name, or a uid (`name#id`, shortened as `ps` shows it, or an id prefix).
        actor: String,
        /// The function's registered name: its module path and name, e.g. `my_app::add`.
        func: String,
        /// The arguments: a JSON array of them, or one JSON value for a one-argument function.
        #[arg(long, default_value = "[]", value_parser = json::args)]
        args: json::CallArgs,
    },
    /// Cancel an actor, as `Portal::cancel_actor` does, and wait until it is gone.
    Cancel {
        /// The actor: a name, or a uid (as for `call`).
        actor: String,
    },
    /// Every host whose agent has joined the tree: name, labels, cores, free memory, children.
    Hosts,
    /// The live tree, refreshed: each actor's calls per second, calls served and in flight.
    Top {
        /// Seconds between refreshes (fractions allowed).
        #[arg(long, default_value = "2", value_parser = top::interval)]
        interval: std::time::Duration,
        /// Stop after this many refreshes (default: until interrupted).
        #[arg(long, value_name = "N")]
        iterations: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let as_json = cli.json;
    let registry = || actor::Config::from_env().and_then(|c| c.registry(&cli.arbiter));
    let ask = match cli.command {
        #[cfg(feature = "jobs")]
        Command::Jobs { journal, workflow, resolve, succeeded, failed, retry } => {
            // A file, not a tree: no runtime, no registry.
            let out = match resolve {
                None => jobs::list(&journal, workflow.as_deref(), as_json),
                Some(key) => settle(succeeded.as_deref(), failed, retry)
                    .and_then(|how| jobs::resolve(&journal, &key, how, as_json)),
            };
            return out.map_or_else(|e| fail(&e), |out| print(&out));
        }
        Command::Agent(args) => {
            return match registry().and_then(|config| agent::run(config, args, as_json)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            };
        }
        Command::Ask(ask) => ask,
    };
    let mut config = match registry() {
        Ok(c) => c.name("actor-cli"),
        Err(e) => return fail(&e),
    };
    // A tool that looks at a tree must not start one when none is there.
    config.embed_arbiter = false;
    match actor::run_with(config, run(ask, as_json)) {
        Ok(out) => print(&out),
        Err(e) => fail(&e),
    }
}

fn print(out: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`actor ps | head`) is not worth a panic.
    let _ = stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush());
    ExitCode::SUCCESS
}

/// How `--resolve` settles its job: exactly one of the three ways.
#[cfg(feature = "jobs")]
fn settle(succeeded: Option<&str>, failed: Option<String>, retry: bool) -> actor::Result<jobs::Settle> {
    match (succeeded, failed, retry) {
        (Some(json), None, false) => serde_json::from_str(json)
            .map(jobs::Settle::Succeeded)
            .map_err(|e| actor::Error::Config(format!("--succeeded: not JSON: {e}"))),
        (None, Some(reason), false) => Ok(jobs::Settle::Failed(reason)),
        (None, None, true) => Ok(jobs::Settle::Retry),
        _ => Err(actor::Error::Config(
            "--resolve needs one of --succeeded JSON, --failed REASON, --retry".into(),
        )),
    }
}

fn fail(e: &actor::Error) -> ExitCode {
    eprintln!("actor: {e}");
    ExitCode::FAILURE
}

/// Runs the command; returns what to print.
async fn run(ask: Ask, as_json: bool) -> actor::Result<String> {
    Ok(match ask {
        Ask::Ps => show::ps(&survey::survey().await?, as_json),
        Ask::Tree => show::tree(&survey::survey().await?, as_json),
        Ask::Call { actor, func, args } => {
            let portal = survey::find(&actor).await?;
            let json::Json(result) = portal.run_by_name(&func, &args.0).await?;
            format!("{result}\n")
        }
        Ask::Hosts => agent::hosts(&actor::agent::list_hosts().await?, as_json),
        Ask::Top { interval, iterations } => {
            // It prints as it goes: nothing is left to print at the end.
            top::run(interval, iterations, as_json).await?;
            String::new()
        }
        Ask::Cancel { actor } => {
            let portal = survey::find(&actor).await?;
            let uid = portal.uid();
            portal.cancel_actor().await?;
            if as_json {
                format!("{}\n", serde_json::json!({ "cancelled": survey::full(&uid) }))
            } else {
                format!("cancelled {uid}\n")
            }
        }
    })
}
