//! Spawning actors on other hosts, on one machine: the program starts two
//! host agents, `alpha` and `beta`, on loopback ports (each is this same
//! program, run as `spawn_across_hosts agent NAME`), then spawns one actor
//! through each, calls one, streams from the other, crashes a third on
//! `beta` and sees the crash name its host, and ends, stopping the agents.
//!
//! ```sh
//! cargo run --example spawn_across_hosts
//! ```
//!
//! On real hosts, run an agent on each (`actor agent --host NAME --allow
//! /path/to/your/program`, see the README), and the root's nursery spawns on
//! them exactly as below.

use std::process::Stdio;
use std::time::Duration;

use actor::agent::AgentConfig;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Where this actor runs: the host its agent named, and its pid.
#[actor::remote]
async fn where_am_i() -> actor::Result<String> {
    let host = std::env::var(actor::ENV_HOST).unwrap_or_else(|_| "this host".into());
    Ok(format!("host {host} (pid {})", std::process::id()))
}

#[actor::remote]
async fn squares(n: u64, out: actor::Yielder<u64>) -> actor::Result<()> {
    for i in 0..n {
        out.send(i * i).await?;
    }
    Ok(())
}

#[actor::remote]
async fn fail_hard() -> actor::Result<()> {
    std::process::exit(3)
}

/// Starts `spawn_across_hosts agent NAME`, pointed at this tree's arbiter,
/// and waits until it serves.
async fn start_agent(name: &str) -> actor::Result<Child> {
    let mut agent = Command::new(std::env::current_exe()?)
        .args(["agent", name])
        .env(actor::ENV_ARBITER, actor::arbiter_addr()?.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = agent.stdout.take().ok_or_else(|| actor::Error::msg("the agent has no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await;
    match ready {
        Ok(Ok(Some(line))) => println!("{line}"),
        _ => return Err(actor::Error::msg(format!("agent {name} did not start"))),
    }
    // The agent's children print there too: pass it on.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            println!("{line}");
        }
    });
    Ok(agent)
}

/// Stops an agent as its host's service manager would: SIGTERM, then wait.
async fn stop_agent(mut agent: Child) -> actor::Result<()> {
    if let Some(pid) = agent.id() {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).map_err(actor::Error::app)?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).map_err(actor::Error::app)?;
    }
    tokio::time::timeout(Duration::from_secs(10), agent.wait())
        .await
        .map_err(|_| actor::Error::msg("an agent did not stop"))??;
    Ok(())
}

async fn root() -> actor::Result<()> {
    let agents = [start_agent("alpha").await?, start_agent("beta").await?];
    let outcome = actor::open_nursery(|n| async move {
        let counter = n.actor("counter").on_host("alpha").start().await?;
        println!("counter runs on {}", counter.run(where_am_i, ()).await?);
        let squarer = n.actor("squarer").on_host("beta").start().await?;
        let mut stream = squarer.open_stream_from(squares, (6,)).await?;
        let mut seen = Vec::new();
        while let Some(x) = stream.recv().await {
            seen.push(x?);
        }
        println!("squares from {}: {seen:?}", squarer.host().unwrap_or_default());
        // A nested nursery, so this crash fails it alone.
        let crashed = actor::open_nursery(|inner| async move {
            inner.actor("doomed").on_host("beta").run(fail_hard, ()).await?.result().await
        })
        .await;
        if let Err(e) = crashed {
            println!("as expected: {e}");
        }
        Ok(())
    })
    .await;
    for agent in agents {
        stop_agent(agent).await?;
    }
    outcome
}

fn main() -> actor::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, name] = args.as_slice() {
        if mode == "agent" {
            // An agent for host `name` that may start this very program.
            let agent = AgentConfig::new(name).allow(std::env::current_exe()?);
            return actor::agent::run(actor::Config::from_env()?, agent, |info| {
                println!("agent for host {} ready, cores: {}", info.name, info.cores);
            });
        }
    }
    actor::run(root())
}
