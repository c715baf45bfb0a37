//! Remote functions and helpers shared by the root benchmarks (`runtime`,
//! `compare_ours`, `soak`), included by each with `mod shared;`. Each bench is
//! an actor program whose spawned actors are re-executions of the same binary,
//! so the remote functions here are compiled into, and registered by, every
//! bench that includes this module. Cargo does not build this file as a bench
//! of its own (only `benches/*.rs` and `benches/*/main.rs` are discovered).

// Each bench uses only some of what is here.
#![allow(dead_code)]

use std::collections::HashMap;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[actor::remote]
pub async fn echo(x: u64) -> actor::Result<u64> {
    Ok(x)
}

/// Serves one raw TCP connection that echoes 12-byte frames: the round-trip
/// baseline, the floor under any round trip between these two processes.
#[actor::remote]
pub async fn raw_echo_server() -> actor::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(actor::Error::app)?;
    let port = listener.local_addr().map_err(actor::Error::app)?.port();
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else { return };
        let _ = s.set_nodelay(true);
        let mut buf = [0u8; 12];
        while s.read_exact(&mut buf).await.is_ok() {
            if s.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    Ok(port)
}

/// Streams `count` items of `size` bytes.
#[actor::remote]
pub async fn produce(count: u64, size: usize, out: actor::Yielder<Bytes>) -> actor::Result<()> {
    let item = Bytes::from(vec![7u8; size]);
    for _ in 0..count {
        out.send(item.clone()).await?;
    }
    Ok(())
}

/// The configuration from the environment, but never the default arbiter port
/// 1616: an ephemeral one unless the caller chose (`ACTOR_ARBITER`).
pub fn config_with_ephemeral_arbiter() -> actor::Result<actor::Config> {
    let mut config = actor::Config::from_env()?;
    if std::env::var_os(actor::ENV_ARBITER).is_none() {
        config = config.arbiter(actor::Addr::loopback(0));
    }
    Ok(config)
}

/// Reads `--flag value` pairs of whole numbers from the command line: each
/// of `flags` with its default, in the same order; `--bench` (from `cargo
/// bench`) is skipped.
///
/// # Errors
///
/// A sentence naming an unknown flag, a flag without a value, or a value
/// that is not a whole number.
pub fn numeric_flags<const N: usize>(flags: [(&str, u64); N]) -> Result<[u64; N], String> {
    let mut values = flags.map(|(_, default)| default);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--bench" {
            continue;
        }
        let i = flags
            .iter()
            .position(|(name, _)| *name == flag)
            .ok_or_else(|| format!("unknown argument `{flag}`"))?;
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        values[i] = v.parse().map_err(|_| format!("{flag}: `{v}` is not a number"))?;
    }
    Ok(values)
}

/// The `p` quantile (0.0 to 1.0) of sorted, non-empty samples: the sample at
/// index `(len - 1) * p`, rounded down.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// Median and p99 of non-empty samples.
pub fn summary<T: Copy + Ord>(mut v: Vec<T>) -> (T, T) {
    v.sort();
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

/// Processes (not threads) whose parent chain leads to this process: (alive,
/// zombies), each with a short description.
pub fn descendants() -> (Vec<String>, Vec<String>) {
    let me = std::process::id();
    let mut procs: HashMap<u32, (u32, char, String)> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid ...; comm may contain spaces and parentheses.
        let Some(close) = stat.rfind(')') else { continue };
        let comm = stat[stat.find('(').map_or(0, |i| i + 1)..close].to_owned();
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let Some(ppid) = rest.next().and_then(|s| s.parse().ok()) else { continue };
        procs.insert(pid, (ppid, state, comm));
    }
    let (mut alive, mut zombies) = (Vec::new(), Vec::new());
    for (&pid, (_, state, comm)) in &procs {
        if pid == me {
            continue;
        }
        let mut cur = pid;
        let mut hops = 0;
        let leads_to_me = loop {
            match procs.get(&cur) {
                Some(&(ppid, _, _)) if ppid == me => break true,
                Some(&(ppid, _, _)) if ppid > 1 && hops < 64 => {
                    cur = ppid;
                    hops += 1;
                }
                _ => break false,
            }
        };
        if leads_to_me {
            let d = format!("{pid} {comm} ({state})");
            if *state == 'Z' { zombies.push(d) } else { alive.push(d) }
        }
    }
    (alive, zombies)
}
