//! Our side of the tractor comparison (`benches/compare/run.sh`): the same four
//! workloads as `benches/compare/tractor_bench.py`, one machine-readable line
//! per workload on stdout:
//!
//! ```text
//! RESULT {"workload": "spawn_one", "value": 1.234, "unit": "ms", ...}
//! ```
//!
//! Workloads (each also in tractor_bench.py, with the same counts):
//! - `spawn_one`: open a nursery, `run_in_actor` one trivial function, await its
//!   result, close the nursery (reaped); median of 9 runs after 1 warm-up.
//! - `spawn_20`: the same with 20 actors in one nursery, until all results are
//!   in and the nursery is closed; median of 3 runs with the 20 `run_in_actor`
//!   calls awaited one after another and median of 3 runs with all of them
//!   awaited at once (`try_join_all`); the faster of the two counts.
//! - `rtt`: 10,000 sequential `portal.run(echo, (i,))` calls to a daemon actor
//!   (after 100 warm-up calls); median per call, and total / 10,000. Then, as
//!   context only, `rtt_raw_tcp`: raw loopback TCP round trips of 12 bytes
//!   between the same two processes, the floor under any round trip here.
//!   Run with `ACTOR_LOW_LATENCY_US` set (as `run.sh` does a second time),
//!   the workload is named `rtt_low_latency`.
//! - `stream`: 100,000 items of 64-byte `Bytes` from a daemon's stream function
//!   (after a 1,000-item warm-up stream); median items/s of 3 runs.
//!
//! Run: `cargo bench --bench compare_ours`. The arbiter defaults to an
//! ephemeral port (never 1616) unless `ACTOR_ARBITER` is set. This binary is an
//! actor program: the actors it spawns are re-executions of it.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod shared;

use shared::{echo, produce, raw_echo_server};

#[actor::remote]
async fn trivial(i: u64) -> actor::Result<u64> {
    Ok(i)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn list(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join(", ")
}

/// One nursery: `parallel` actors spawned (one after another, or all at once),
/// every result awaited, nursery closed. Returns the wall time.
async fn spawn_round(parallel: u64, concurrent: bool) -> actor::Result<Duration> {
    let t = Instant::now();
    actor::open_nursery(|n| async move {
        let portals = if concurrent {
            let spawns = (0..parallel).map(|i| n.run_in_actor(format!("w{i}"), trivial, (i,)));
            futures::future::try_join_all(spawns).await?
        } else {
            let mut portals = Vec::new();
            for i in 0..parallel {
                portals.push(n.run_in_actor(format!("w{i}"), trivial, (i,)).await?);
            }
            portals
        };
        for (i, p) in portals.iter().enumerate() {
            let got = p.result().await?;
            assert_eq!(got, i as u64);
        }
        Ok(())
    })
    .await?;
    Ok(t.elapsed())
}

async fn spawn_one() -> actor::Result<()> {
    spawn_round(1, false).await?; // warm-up
    let mut runs = Vec::new();
    for _ in 0..9 {
        runs.push(ms(spawn_round(1, false).await?));
    }
    println!(
        "RESULT {{\"workload\": \"spawn_one\", \"value\": {:.3}, \"unit\": \"ms\", \"runs\": [{}]}}",
        median(runs.clone()),
        list(&runs)
    );
    Ok(())
}

async fn spawn_20() -> actor::Result<()> {
    // Both ways of filling the nursery; the faster one counts.
    let (mut seq, mut conc) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        seq.push(ms(spawn_round(20, false).await?));
    }
    for _ in 0..3 {
        conc.push(ms(spawn_round(20, true).await?));
    }
    let (s, c) = (median(seq.clone()), median(conc.clone()));
    println!(
        "RESULT {{\"workload\": \"spawn_20\", \"value\": {:.3}, \"unit\": \"ms\", \"mode\": \"{}\", \
         \"sequential\": [{}], \"concurrent\": [{}]}}",
        s.min(c),
        if s <= c { "sequential" } else { "concurrent" },
        list(&seq),
        list(&conc)
    );
    Ok(())
}

/// `workload` names the mode: `rtt`, or `rtt_low_latency` when the tree runs
/// in the opt-in low-latency mode (`ACTOR_LOW_LATENCY_US`).
async fn rtt(portal: &actor::Portal, workload: &str) -> actor::Result<()> {
    for i in 0..100 {
        portal.run(echo, (i,)).await?;
    }
    let calls = 10_000u64;
    let mut each = Vec::with_capacity(calls as usize);
    let total = Instant::now();
    for i in 0..calls {
        let t = Instant::now();
        let x = portal.run(echo, (i,)).await?;
        each.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(x, i);
    }
    let mean = total.elapsed().as_secs_f64() * 1e6 / calls as f64;
    println!(
        "RESULT {{\"workload\": \"{workload}\", \"value\": {:.3}, \"unit\": \"us\", \"mean_us\": {mean:.3}, \"calls\": {calls}}}",
        median(each)
    );
    Ok(())
}

/// Context, not compared: raw loopback TCP round trips (12 bytes, NODELAY)
/// between the root and the same daemon, measured like `rtt`.
async fn rtt_raw_tcp(portal: &actor::Portal) -> actor::Result<()> {
    let port = portal.run(raw_echo_server, ()).await?;
    let mut raw = TcpStream::connect(("127.0.0.1", port)).await.map_err(actor::Error::app)?;
    raw.set_nodelay(true).map_err(actor::Error::app)?;
    let mut buf = [0u8; 12];
    let calls = 10_000u64;
    let mut each = Vec::with_capacity(calls as usize);
    let total = Instant::now();
    for i in 0..100 + calls {
        let t = Instant::now();
        raw.write_all(&buf).await.map_err(actor::Error::app)?;
        raw.read_exact(&mut buf).await.map_err(actor::Error::app)?;
        if i >= 100 {
            each.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let mean = total.elapsed().as_secs_f64() * 1e6 / (100 + calls) as f64;
    println!(
        "RESULT {{\"workload\": \"rtt_raw_tcp\", \"value\": {:.3}, \"unit\": \"us\", \"mean_us\": {mean:.3}, \"calls\": {calls}}}",
        median(each)
    );
    Ok(())
}

async fn stream(portal: &actor::Portal) -> actor::Result<()> {
    async fn one(portal: &actor::Portal, count: u64) -> actor::Result<f64> {
        let t = Instant::now();
        let mut s = portal.open_stream_from(produce, (count, 64)).await?;
        let mut got = 0u64;
        while let Some(item) = s.recv().await {
            let item = item?;
            assert_eq!(item.len(), 64);
            got += 1;
        }
        assert_eq!(got, count);
        Ok(count as f64 / t.elapsed().as_secs_f64())
    }
    one(portal, 1_000).await?; // warm-up
    let count = 100_000;
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(one(portal, count).await?);
    }
    println!(
        "RESULT {{\"workload\": \"stream\", \"value\": {:.1}, \"unit\": \"items/s\", \"items\": {count}, \"runs\": [{}]}}",
        median(runs.clone()),
        list(&runs)
    );
    Ok(())
}

fn main() -> actor::Result<()> {
    let config = shared::config_with_ephemeral_arbiter()?;
    // `cargo bench` passes `--bench`; other arguments pick workloads (default all).
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = move |w: &str| only.is_empty() || only.iter().any(|o| o == w);
    let rtt_workload = if config.low_latency.is_some() { "rtt_low_latency" } else { "rtt" };
    actor::run_with(config, async move {
        if want("spawn_one") {
            spawn_one().await?;
        }
        if want("spawn_20") {
            spawn_20().await?;
        }
        if want("rtt") || want("stream") {
            actor::open_nursery(|n| async move {
                let daemon = n.start_actor("daemon").await?;
                if want("rtt") {
                    rtt(&daemon, rtt_workload).await?;
                    rtt_raw_tcp(&daemon).await?;
                }
                if want("stream") {
                    stream(&daemon).await?;
                }
                daemon.cancel_actor().await
            })
            .await?;
        }
        Ok(())
    })
}
