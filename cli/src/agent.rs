//! `actor agent`: run this host's agent, which spawns actors here for
//! parents on other hosts; `actor hosts`: list the hosts whose agents have
//! joined the tree.

use std::path::PathBuf;
use std::time::Duration;

use actor::agent::{AgentConfig, HostInfo};
use serde_json::json;

/// What `actor agent` is told.
#[derive(clap::Args, Debug)]
pub(crate) struct AgentArgs {
    /// This host's name, which parents select it by (`on_host("NAME")`).
    /// Default: the kernel's host name.
    #[arg(long)]
    host: Option<String>,
    /// A label parents may select this host by (`HostSelector::label`), as
    /// KEY=VALUE; repeat for more.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = key_value)]
    labels: Vec<(String, String)>,
    /// A program the agent may start, as PATH (asked for by its file name)
    /// or NAME=PATH; repeat for more. Nothing else is ever started.
    #[arg(long = "allow", value_name = "[NAME=]PATH", required = true)]
    allow: Vec<String>,
    /// Where the agent listens for parents: an address of this host they
    /// can reach (with TLS between hosts). Default: ACTOR_BIND, else an
    /// ephemeral loopback port.
    #[arg(long, value_name = "ADDR")]
    bind: Option<actor::Addr>,
    /// The host (an IP address or name of this host) its children listen
    /// on. Default: the host part of --bind.
    #[arg(long, value_name = "HOST")]
    child_bind: Option<String>,
    /// The most children it runs at once; more spawns are refused.
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_children: u32,
    /// How long a child whose parent is lost gets between SIGTERM and SIGKILL.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    orphan_grace_ms: u64,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

/// The kernel's host name, the default `--host`.
fn kernel_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "localhost".into(), |h| h.trim().to_owned())
}

/// Runs the agent until SIGTERM or Ctrl-C; prints one line (or JSON object)
/// once it serves.
pub(crate) fn run(mut config: actor::Config, args: AgentArgs, as_json: bool) -> actor::Result<()> {
    if let Some(bind) = args.bind {
        config = config.bind(bind);
    }
    let mut agent = AgentConfig::new(args.host.unwrap_or_else(kernel_hostname))
        .max_children(args.max_children)
        .orphan_grace(Duration::from_millis(args.orphan_grace_ms));
    for (k, v) in args.labels {
        agent = agent.label(k, v);
    }
    for allowed in args.allow {
        agent = match allowed.split_once('=') {
            Some((name, path)) => agent.allow_as(name, PathBuf::from(path)),
            None => agent.allow(PathBuf::from(allowed)),
        };
    }
    if let Some(host) = args.child_bind {
        agent = agent.child_bind(host);
    }
    actor::agent::run(config, agent, |info| {
        let addr = actor::addr().map(|a| a.to_string()).unwrap_or_default();
        if as_json {
            let mut o = host_json(info);
            o["addr"] = json!(addr);
            println!("{o}");
        } else {
            println!(
                "agent for host `{}` serving at {addr}; it may start: {}",
                info.name,
                info.programs.join(", ")
            );
        }
    })
}

fn host_json(h: &HostInfo) -> serde_json::Value {
    json!({
        "name": h.name,
        "labels": h.labels,
        "cores": h.cores,
        "memory_available": h.memory_available,
        "memory_total": h.memory_total,
        "children": h.children,
        "programs": h.programs,
        "child_bind": h.child_bind.to_string(),
    })
}

/// `actor hosts`: every host whose agent answers, as a table or JSON array.
pub(crate) fn hosts(hosts: &[HostInfo], as_json: bool) -> String {
    if as_json {
        return format!("{}\n", serde_json::Value::Array(hosts.iter().map(host_json).collect()));
    }
    let mib = |b: u64| format!("{} MiB", b / (1024 * 1024));
    let mut rows = vec![["HOST", "LABELS", "CORES", "MEM FREE", "CHILDREN", "PROGRAMS"].map(String::from)];
    for h in hosts {
        let labels: Vec<String> = h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push([
            h.name.clone(),
            if labels.is_empty() { "-".into() } else { labels.join(",") },
            h.cores.to_string(),
            mib(h.memory_available),
            h.children.to_string(),
            h.programs.join(","),
        ]);
    }
    let widths: Vec<usize> =
        (0..6).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
