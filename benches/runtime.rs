//! Runtime benchmarks, each printed beside a raw baseline measured in the same
//! run: spawn-to-result (one actor, 50 in parallel), portal round trip vs raw
//! loopback TCP, stream throughput vs raw length-prefixed TCP.
//!
//! Run: `cargo bench --bench runtime`. This binary is an actor program: the
//! actors it spawns are re-executions of it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[actor::remote]
async fn trivial() -> actor::Result<u32> {
    Ok(42)
}

#[actor::remote]
async fn echo(x: u64) -> actor::Result<u64> {
    Ok(x)
}

/// Serves one raw TCP connection: echoes 8-byte frames (round-trip baseline).
#[actor::remote]
async fn raw_echo_server() -> actor::Result<u16> {
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
async fn produce(count: u64, size: usize, out: actor::Yielder<Bytes>) -> actor::Result<()> {
    let item = Bytes::from(vec![7u8; size]);
    for _ in 0..count {
        out.send(item.clone()).await?;
    }
    Ok(())
}

/// Raw baseline: connects to `port` and writes `count` length-prefixed frames
/// of `size` bytes, batched through a buffered writer.
#[actor::remote]
async fn raw_produce(port: u16, count: u64, size: usize) -> actor::Result<()> {
    let s = TcpStream::connect(("127.0.0.1", port)).await.map_err(actor::Error::app)?;
    s.set_nodelay(true).map_err(actor::Error::app)?;
    let mut w = tokio::io::BufWriter::with_capacity(64 * 1024, s);
    let payload = vec![7u8; size];
    for _ in 0..count {
        w.write_all(&(size as u32).to_be_bytes()).await.map_err(actor::Error::app)?;
        w.write_all(&payload).await.map_err(actor::Error::app)?;
    }
    w.flush().await.map_err(actor::Error::app)?;
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn summary(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

async fn spawn_to_result(parallel: usize, rounds: usize) -> actor::Result<Vec<Duration>> {
    let mut times = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        actor::open_nursery(|n| async move {
            let mut portals = Vec::new();
            for i in 0..parallel {
                portals.push(n.run_in_actor(format!("w{i}"), trivial, ()).await?);
            }
            for p in &portals {
                p.result().await?;
            }
            Ok(())
        })
        .await?;
        times.push(t.elapsed());
    }
    Ok(times)
}

async fn round_trips(n: &actor::Nursery, calls: usize) -> actor::Result<()> {
    let p = n.start_actor("echo_daemon").await?;
    let port = p.run(raw_echo_server, ()).await?;
    let mut raw = TcpStream::connect(("127.0.0.1", port)).await.map_err(actor::Error::app)?;
    raw.set_nodelay(true).map_err(actor::Error::app)?;
    for _ in 0..1_000 {
        p.run(echo, (1,)).await?;
    }
    let mut buf = [0u8; 12];
    for _ in 0..1_000 {
        raw.write_all(&buf).await.map_err(actor::Error::app)?;
        raw.read_exact(&mut buf).await.map_err(actor::Error::app)?;
    }
    // Interleave the two in blocks so both see the same machine conditions.
    let (mut portal, mut tcp) = (Vec::new(), Vec::new());
    for block in 0..10 {
        for i in 0..calls / 10 {
            let t = Instant::now();
            let x = p.run(echo, ((block * calls + i) as u64,)).await?;
            portal.push(t.elapsed());
            std::hint::black_box(x);
        }
        for _ in 0..calls / 10 {
            let t = Instant::now();
            raw.write_all(&buf).await.map_err(actor::Error::app)?;
            raw.read_exact(&mut buf).await.map_err(actor::Error::app)?;
            tcp.push(t.elapsed());
        }
    }
    let (pm, p99) = summary(portal);
    let (tm, t99) = summary(tcp);
    println!("portal round trip:   median {pm:>9.1?}  p99 {p99:>9.1?}   ({calls} calls)");
    println!("raw TCP round trip:  median {tm:>9.1?}  p99 {t99:>9.1?}");
    println!("  ratio (median): {:.2}x   target <= 1.3x", pm.as_secs_f64() / tm.as_secs_f64());
    p.cancel_actor().await
}

async fn throughput(n: &actor::Nursery, size: usize, count: u64) -> actor::Result<()> {
    let p = n.start_actor(format!("producer_{size}")).await?;
    // Streams, best of three.
    let mut best_stream = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let mut s = p.open_stream_from(produce, (count, size)).await?;
        let mut got = 0u64;
        while let Some(item) = s.recv().await {
            got += item?.len() as u64;
        }
        assert_eq!(got, count * size as u64);
        best_stream = best_stream.min(t.elapsed().as_secs_f64());
    }
    // Raw length-prefixed frames, best of three.
    let mut best_raw = f64::MAX;
    for _ in 0..3 {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(actor::Error::app)?;
        let port = listener.local_addr().map_err(actor::Error::app)?.port();
        let t = Instant::now();
        let producer = p.run(raw_produce, (port, count, size));
        let consumer = async {
            let (s, _) = listener.accept().await.map_err(actor::Error::app)?;
            let mut r = tokio::io::BufReader::with_capacity(64 * 1024, s);
            let mut payload = vec![0u8; size];
            for _ in 0..count {
                let len = r.read_u32().await.map_err(actor::Error::app)? as usize;
                r.read_exact(&mut payload[..len]).await.map_err(actor::Error::app)?;
            }
            Ok::<_, actor::Error>(())
        };
        let (a, b) = tokio::join!(producer, consumer);
        a?;
        b?;
        best_raw = best_raw.min(t.elapsed().as_secs_f64());
    }
    let rate = |secs: f64| count as f64 / secs;
    let mbps = |secs: f64| count as f64 * size as f64 / secs / 1e6;
    println!(
        "stream  {size:>5} B items: {:>10.0} items/s {:>8.1} MB/s",
        rate(best_stream),
        mbps(best_stream)
    );
    println!("raw TCP {size:>5} B frames: {:>10.0} items/s {:>8.1} MB/s", rate(best_raw), mbps(best_raw));
    println!("  stream / raw: {:.0}%", 100.0 * best_raw / best_stream);
    p.cancel_actor().await
}

fn main() -> actor::Result<()> {
    // `cargo bench` passes `--bench`; any other argument picks one section.
    let only = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let run = move |section: &str| only.as_deref().is_none_or(|o| o == section);
    actor::run(async move {
        if run("spawn") {
            spawn_section().await?;
        }
        actor::open_nursery(|n| async move {
            if run("rtt") {
                println!("== portal round trip (daemon actor)");
                round_trips(&n, 20_000).await?;
            }
            if run("stream") {
                println!("== stream throughput (producer actor -> root)");
                throughput(&n, 64, 2_000_000).await?;
                throughput(&n, 4096, 200_000).await?;
            }
            Ok(())
        })
        .await
    })
}

async fn spawn_section() -> actor::Result<()> {
    println!("== spawn to result");
    let one = spawn_to_result(1, 30).await?;
    let (m, p99) = summary(one);
    println!("1 actor:             median {m:>9.1?}  p99 {p99:>9.1?}   target < 3 ms");
    let fifty = spawn_to_result(50, 5).await?;
    let (m, p99) = summary(fifty);
    println!("50 actors parallel:  median {m:>9.1?}  max {p99:>9.1?}   target < 150 ms");
    Ok(())
}
