//! `actor`: look at and act on the live actors of a tree, through its
//! arbiter. `ps` lists them, `tree` draws the supervision tree, `call` runs a
//! remote function with JSON arguments, `cancel` cancels an actor the way a
//! portal does.
//!
//! The command joins the tree as a short-lived actor of its own (so it
//! authenticates exactly as any member does: the tree's secret, the per-user
//! secret file, or TLS certificates, from the usual `ACTOR_*` variables),
//! asks, prints, and leaves. It never hosts an arbiter: with none at the
//! address, it says so.

mod agent;
mod json;
mod show;
mod survey;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match actor::Config::from_env().and_then(|c| c.registry(&cli.arbiter)) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let ask = match cli.command {
        Command::Agent(args) => {
            return match agent::run(config, args, cli.json) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            };
        }
        Command::Ask(ask) => ask,
    };
    let mut config = config.name("actor-cli");
    // A tool that looks at a tree must not start one when none is there.
    config.embed_arbiter = false;
    match actor::run_with(config, run(ask, cli.json)) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`actor ps | head`) is not worth a panic.
            let _ = stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
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
