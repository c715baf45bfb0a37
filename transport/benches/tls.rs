//! TLS benchmark: two processes over loopback, each on a current-thread tokio
//! runtime, comparing a [`Channel`] over mutual TLS with one over plain TCP in the
//! same run.
//!
//! ```text
//! cargo bench -p procactor-transport --bench tls
//! ```
//!
//! The benchmark makes a throw-away CA and two leaf certificates with rcgen,
//! writes them to a temporary directory and re-executes its own binary as the
//! peer (environment variable `TLS_BENCH_PEER=1`), which loads its certificate
//! with [`TlsConfig::from_env`] (`ACTOR_TLS_CA`, `ACTOR_TLS_CERT`,
//! `ACTOR_TLS_KEY`). The peer binds two loopback ports, plain and TLS, prints them
//! on stdout and echoes every message on every connection. It exits when its
//! stdin closes, so it cannot outlive the parent.
//!
//! Measured:
//! - round trip of a `Msg::Yield` with a 32 B payload over a plain-TCP channel
//!   and over a mutual-TLS channel, 20,000 each after warm-up, in interleaved
//!   blocks so both see the same machine conditions: median, p99, ratio;
//! - connection set-up as the client sees it, up to the first echoed message
//!   (which proves the server accepted our certificate): plain TCP, a full
//!   mutual-TLS 1.3 handshake (a fresh client configuration each time, so no
//!   session is resumed), and a resumed one (the same configuration reused).
//!
//! Knobs (environment): `TLS_BENCH_ROUND_TRIPS` (default 20000),
//! `TLS_BENCH_HANDSHAKES` (default 300). Without `--bench` on the command line
//! (as under `cargo test --benches`) it runs a quick smoke version and judges no
//! targets.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use actor_transport::{Addr, Channel, ChannelConfig, Listener, Stream, TlsConfig};
use bytes::Bytes;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};

mod common;

use common::{PeerProcess, Result, Stats, channel_round_trips, env_or, print_comparison};

const PEER_ENV: &str = "TLS_BENCH_PEER";
const TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> Result<()> {
    if std::env::var_os(PEER_ENV).is_some() {
        return peer();
    }
    let full = std::env::args().any(|a| a == "--bench");
    let round_trips: usize = env_or("TLS_BENCH_ROUND_TRIPS", if full { 20_000 } else { 400 });
    let handshakes: usize = env_or("TLS_BENCH_HANDSHAKES", if full { 300 } else { 10 });
    let pki = Pki::new()?;
    let (mut child, plain_port, tls_port) = spawn_peer(&pki)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let res = rt.block_on(parent(&pki, plain_port, tls_port, round_trips, handshakes, full));
    child.stop();
    res
}

// ---------------------------------------------------------------------------
// Certificates.

/// A CA and two leaves (client and peer) as PEM files in a temporary directory,
/// removed on drop.
struct Pki {
    dir: PathBuf,
    ca: String,
    client_cert: String,
    client_key: String,
}

impl Pki {
    fn new() -> Result<Pki> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name.push(DnType::CommonName, "bench CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate()?;
        let ca = ca_params.self_signed(&ca_key)?;
        let leaf = |name: &str| -> Result<(String, String)> {
            let mut p = CertificateParams::new(vec!["localhost".to_owned()])?;
            p.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
            p.distinguished_name.push(DnType::CommonName, name);
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages =
                vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            let key = KeyPair::generate()?;
            let cert = p.signed_by(&key, &ca, &ca_key)?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        let (client_cert, client_key) = leaf("bench client")?;
        let (peer_cert, peer_key) = leaf("bench peer")?;
        let dir = std::env::temp_dir().join(format!("actor-tls-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("ca.pem"), ca.pem())?;
        std::fs::write(dir.join("peer.pem"), peer_cert)?;
        std::fs::write(dir.join("peer.key"), peer_key)?;
        Ok(Pki { dir, ca: ca.pem(), client_cert, client_key })
    }

    /// A fresh client configuration (with an empty session cache).
    fn client(&self) -> Result<TlsConfig> {
        Ok(TlsConfig::from_pem(self.ca.as_bytes(), self.client_cert.as_bytes(), self.client_key.as_bytes())?)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------
// The parent: drives the measurements.

/// Starts the peer with its certificate; returns it with its plain and TLS ports.
fn spawn_peer(pki: &Pki) -> Result<(PeerProcess, u16, u16)> {
    let envs = [
        ("ACTOR_TLS_CA", pki.dir.join("ca.pem")),
        ("ACTOR_TLS_CERT", pki.dir.join("peer.pem")),
        ("ACTOR_TLS_KEY", pki.dir.join("peer.key")),
    ];
    let (child, line) = PeerProcess::spawn(PEER_ENV, &envs)?;
    let ports: Vec<u16> = line.split_whitespace().filter_map(|p| p.parse().ok()).collect();
    match ports.as_slice() {
        [plain, tls] => Ok((child, *plain, *tls)),
        _ => Err(format!("peer did not report its two ports: {line:?}").into()),
    }
}

async fn parent(
    pki: &Pki,
    plain_port: u16,
    tls_port: u16,
    round_trips: usize,
    handshakes: usize,
    judge: bool,
) -> Result<()> {
    println!("actor-transport TLS benchmark: two processes, loopback, current-thread runtimes");
    println!("mutual TLS 1.3, rustls with the aws-lc-rs provider, ECDSA P-256 certificates");
    if !judge {
        println!("(smoke run without --bench: short runs, targets not judged)");
    }
    println!();
    let plain = Addr::loopback(plain_port);
    let tls = Addr::loopback(tls_port);
    latency(pki, &plain, &tls, round_trips, judge).await?;
    setup(pki, &plain, &tls, handshakes).await
}

/// Round-trip latency, plain vs TLS.
async fn latency(pki: &Pki, plain: &Addr, tls: &Addr, round_trips: usize, judge: bool) -> Result<()> {
    let block = 100.min(round_trips).max(1);
    let blocks = round_trips.div_ceil(block);
    let config = pki.client()?;
    let mut p = Channel::from_stream(Stream::connect(plain, TIMEOUT).await?, &ChannelConfig::default());
    let mut t =
        Channel::from_stream(Stream::connect_tls(tls, TIMEOUT, &config).await?, &ChannelConfig::default());
    let payload = Bytes::from(vec![0xa5u8; 32]);
    let warm = (round_trips / 10).max(100);
    channel_round_trips(&mut p, &payload, warm, &mut Vec::new()).await?;
    channel_round_trips(&mut t, &payload, warm, &mut Vec::new()).await?;
    let mut plain_ns = Vec::with_capacity(blocks * block);
    let mut tls_ns = Vec::with_capacity(blocks * block);
    for _ in 0..blocks {
        channel_round_trips(&mut p, &payload, block, &mut plain_ns).await?;
        channel_round_trips(&mut t, &payload, block, &mut tls_ns).await?;
    }
    p.sender().close().await;
    t.sender().close().await;
    let (ps, ts) = (Stats::of(&mut plain_ns), Stats::of(&mut tls_ns));
    println!(
        "round trip, Msg::Yield with a 32 B payload, {} round trips each (interleaved blocks of {block})",
        plain_ns.len()
    );
    print_comparison(
        28,
        ("Channel over plain TCP", &ps),
        ("Channel over mutual TLS", &ts),
        "ratio TLS/plain",
    );
    let ratio = ts.p50 / ps.p50;
    if judge {
        println!();
        println!(
            "target: TLS round trip (median) within 1.15x of plaintext: {} ({ratio:.2}x, +{:.1} us)",
            if ratio <= 1.15 { "met" } else { "MISSED" },
            ts.p50 - ps.p50
        );
    }
    println!();
    Ok(())
}

/// Connection set-up up to the first echoed message.
async fn setup(pki: &Pki, plain: &Addr, tls: &Addr, n: usize) -> Result<()> {
    let payload = Bytes::from_static(b"hello");
    let mut plain_ns = Vec::with_capacity(n);
    let mut full_ns = Vec::with_capacity(n);
    let mut resumed_ns = Vec::with_capacity(n);
    let mut handshake_only_ns = Vec::with_capacity(n);
    let reused = pki.client()?;
    // Prime the reused configuration's session cache.
    first_echo(Stream::connect_tls(tls, TIMEOUT, &reused).await?, &payload).await?;
    for _ in 0..n {
        let t = Instant::now();
        first_echo(Stream::connect(plain, TIMEOUT).await?, &payload).await?;
        plain_ns.push(t.elapsed().as_nanos() as u64);

        let fresh = pki.client()?;
        let t = Instant::now();
        let stream = Stream::connect_tls(tls, TIMEOUT, &fresh).await?;
        handshake_only_ns.push(t.elapsed().as_nanos() as u64);
        first_echo(stream, &payload).await?;
        full_ns.push(t.elapsed().as_nanos() as u64);

        let t = Instant::now();
        first_echo(Stream::connect_tls(tls, TIMEOUT, &reused).await?, &payload).await?;
        resumed_ns.push(t.elapsed().as_nanos() as u64);
    }
    let rows = [
        ("plain TCP connect + echo", Stats::of(&mut plain_ns)),
        ("TLS connect (client done)", Stats::of(&mut handshake_only_ns)),
        ("full mTLS handshake + echo", Stats::of(&mut full_ns)),
        ("resumed mTLS + echo", Stats::of(&mut resumed_ns)),
    ];
    println!("connection set-up to the first echoed message, {n} connections each");
    println!("  {:<28}{:>10}{:>10}{:>10}{:>10}", "", "median", "p99", "mean", "min");
    for (label, s) in &rows {
        println!("  {:<28}{:>7.0} us{:>7.0} us{:>7.0} us{:>7.0} us", label, s.p50, s.p99, s.mean, s.min);
    }
    println!("  full TLS handshake cost over plain TCP (median): {:.0} us", rows[2].1.p50 - rows[0].1.p50);
    println!(
        "  (\"client done\" is when TLS 1.3 lets the client send; the server checks the client's \
         certificate after that, so the first echo is the honest end of the handshake)"
    );
    Ok(())
}

async fn first_echo(stream: Stream, payload: &Bytes) -> Result<()> {
    let mut ch = Channel::from_stream(stream, &ChannelConfig::default());
    channel_round_trips(&mut ch, payload, 1, &mut Vec::new()).await?;
    ch.sender().close().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// The peer process.

fn peer() -> Result<()> {
    common::exit_when_stdin_closes();
    let tls =
        TlsConfig::from_env()?.ok_or("the peer needs ACTOR_TLS_CA, ACTOR_TLS_CERT and ACTOR_TLS_KEY")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let plain = Listener::bind(&Addr::loopback(0)).await?;
        let secure = Listener::bind(&Addr::loopback(0)).await?;
        let port = |l: &Listener| match l.local_addr() {
            Addr::Tcp { port, .. } => *port,
            Addr::Unix(_) => 0,
        };
        let mut out = std::io::stdout();
        writeln!(out, "{} {}", port(&plain), port(&secure))?;
        out.flush()?;
        loop {
            let (stream, tls) = tokio::select! {
                r = plain.accept() => (r?.0, None),
                r = secure.accept() => (r?.0, Some(tls.clone())),
            };
            tokio::spawn(async move {
                let stream = match tls {
                    Some(tls) => match tls.accept(stream, TIMEOUT).await {
                        Ok(s) => s,
                        Err(e) => return eprintln!("bench peer: {e}"),
                    },
                    None => stream,
                };
                let mut chan = Channel::from_stream(stream, &ChannelConfig::default());
                loop {
                    match chan.recv().await {
                        Ok(Some(m)) => {
                            if chan.send(&m).await.is_err() {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            eprintln!("bench peer: {e}");
                            break;
                        }
                    }
                }
            });
        }
    })
}
