//! One trace across processes, on real trees built by the `trace_scenarios`
//! fixture (tests/fixtures/trace.rs): each call carries its caller's trace
//! context, so the spans of one request in three actors join one trace,
//! each a child of its caller's span.

mod common;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actor::trace::TraceContext;
use actor::transport::{Addr, CallKind, Channel, HandshakeConfig, Msg, Secret, Uid, connect_on};
use bytes::Bytes;
use common::Tree;
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::io::AsyncWrite;
use tokio::time::timeout;

const BOUND: Duration = Duration::from_secs(60);

/// One actor's view, as the fixture printed it.
struct Hop {
    actor: String,
    ctx: TraceContext,
    parent: Option<String>,
}

fn hops(stdout: &str) -> Vec<Hop> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("HOP "))
        .map(|json| {
            let v: Value = serde_json::from_str(json).expect("a HOP line is JSON");
            Hop {
                actor: v["actor"].as_str().expect("actor").to_owned(),
                ctx: TraceContext::parse(v["traceparent"].as_str().expect("traceparent")).expect("valid"),
                parent: v["parent"].as_str().map(str::to_owned),
            }
        })
        .collect()
}

/// Checks that `hops` are a, b, c in one trace, each span's parent the span
/// of the actor before it; returns that trace's context as `a` saw it.
fn assert_one_chain(hops: &[Hop]) -> &Hop {
    let names: Vec<&str> = hops.iter().map(|h| h.actor.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    let trace = hops[0].ctx.trace_id();
    for pair in hops.windows(2) {
        let (caller, callee) = (&pair[0], &pair[1]);
        assert_eq!(callee.ctx.trace_id(), trace, "{} left the trace", callee.actor);
        assert_eq!(
            callee.parent.as_deref(),
            Some(caller.ctx.span_id().to_string().as_str()),
            "{}'s parent must be {}'s span",
            callee.actor,
            caller.actor
        );
        assert_ne!(callee.ctx.span_id(), caller.ctx.span_id());
    }
    &hops[0]
}

/// A root without a trace context starts one: a, b and c (a portal call,
/// a main call, a stream) share its id, each a child of its caller's span.
#[test]
fn one_request_through_three_actors_is_one_trace() {
    let out = Tree::start("trace_scenarios", &["chain"], &[]).finish(BOUND);
    out.assert_no_warnings();
    assert!(out.status.success(), "{out:?}");
    let hops = hops(&out.stdout);
    let a = assert_one_chain(&hops);
    // The root's call started the trace: `a`'s parent is the root's span.
    assert!(a.parent.is_some(), "{}", out.stdout);
}

/// A root inside a context parsed from a `traceparent` (as an HTTP edge
/// would) puts the whole request in that trace, under that span.
#[test]
fn a_given_traceparent_is_the_parent_of_the_first_call() {
    let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let out = Tree::start("trace_scenarios", &["given", given], &[]).finish(BOUND);
    out.assert_no_warnings();
    assert!(out.status.success(), "{out:?}");
    let hops = hops(&out.stdout);
    let a = assert_one_chain(&hops);
    assert_eq!(a.ctx.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(a.parent.as_deref(), Some("00f067aa0ba902b7"));
    assert_eq!(a.ctx.flags(), 1);
}

/// The trace id every `Start` this test sends carries; the writer below
/// finds it on the wire and spoils it.
const MARK: [u8; 16] = [0x5a; 16];

/// How [`Spoiler`] spoils the marked trace context of each `Start`.
#[derive(Clone, Copy)]
enum Spoil {
    /// An all-zero trace id.
    ZeroTraceId,
    /// The trace id as a string instead of bytes.
    StringTraceId,
    /// Nil flags instead of a number.
    NilFlags,
}

/// A socket writer that rewrites the marked trace context as it passes,
/// keeping every frame's length, so the peer receives a well-framed
/// `Start` whose trace context is malformed in the chosen way.
struct Spoiler<W> {
    inner: W,
    how: Spoil,
    spoiled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Spoiler<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut out = buf.to_vec();
        let pattern = [&[0x93, 0xc4, 0x10][..], &MARK].concat();
        let mut i = 0;
        while let Some(at) = out[i..].windows(pattern.len()).position(|w| w == pattern.as_slice()) {
            let at = i + at;
            match self.how {
                Spoil::ZeroTraceId => out[at + 3..at + 19].fill(0),
                Spoil::StringTraceId => out[at + 1] = 0xd9,
                Spoil::NilFlags => out[at + 29] = 0xc0,
            }
            self.spoiled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            i = at + pattern.len();
        }
        Pin::new(&mut self.inner).poll_write(cx, &out)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

const TOKEN: &str = "00112233445566778899aabbccddeeff";

/// A peer sends `Start`s whose trace context is malformed (zero id, wrong
/// types): each call is still served, in a new trace of the
/// callee's own, and the actor logs no warning and does not close the
/// channel.
#[test]
fn a_malformed_trace_context_from_a_peer_is_ignored() {
    let mut victim = Tree::start("trace_scenarios", &["victim"], &[("ACTOR_TOKEN", TOKEN)]);
    let line = victim.wait_for_line("VICTIM", BOUND);
    let addr: Addr = line.split_whitespace().nth(1).expect("address").parse().expect("victim address");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let Addr::Tcp { host, port } = &addr else { panic!("a tcp address: {addr}") };
        let token = Secret::from_hex(TOKEN).expect("token");
        let cases = [Spoil::ZeroTraceId, Spoil::StringTraceId, Spoil::NilFlags];
        for how in cases {
            let spoiled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let stream = timeout(BOUND, tokio::net::TcpStream::connect((host.as_str(), *port)))
                .await
                .expect("connect in time")
                .expect("connect");
            let (r, w) = stream.into_split();
            let w = Spoiler { inner: w, how, spoiled: spoiled.clone() };
            let ch = Channel::new(r, w, &Default::default());
            let hs =
                HandshakeConfig { uid: Uid::new("spoiler"), timeout: BOUND, channel: Default::default() };
            let (mut ch, _) = connect_on(ch, &hs, Some(&token)).await.expect("handshake");
            let sent = TraceContext::new(
                actor::trace::TraceId::from_bytes(MARK).expect("nonzero"),
                actor::trace::SpanId::from_bytes([7; 8]).expect("nonzero"),
                1,
            );
            for cid in [1, 3] {
                let start = Msg::Start {
                    cid,
                    func: "trace_scenarios::hop".into(),
                    kind: CallKind::Single,
                    args: Bytes::from(rmp_serde::to_vec(&(Vec::<String>::new(),)).expect("args")),
                    window: 0,
                    timeout_ms: None,
                    key: None,
                    trace: Some(sent),
                };
                timeout(BOUND, ch.send(&start)).await.expect("send in time").expect("send");
                let reply = loop {
                    let msg = timeout(BOUND, ch.recv()).await.expect("reply in time").expect("recv");
                    let msg = msg.expect("the victim keeps the channel open");
                    if msg.cid() == Some(cid) {
                        break msg;
                    }
                };
                let Msg::Return { value, .. } = reply else { panic!("the call was not served: {reply:?}") };
                let chain: Vec<(String, String, Option<String>)> =
                    rmp_serde::from_slice(&value).expect("decode the hop");
                let (_, traceparent, parent) = &chain[0];
                let seen = TraceContext::parse(traceparent).expect("valid");
                assert_ne!(seen.trace_id(), sent.trace_id(), "the spoiled context was used");
                assert_eq!(*parent, None, "a spoiled context is no parent");
            }
            assert_eq!(spoiled.load(std::sync::atomic::Ordering::SeqCst), 2, "both Starts were spoiled");
        }
    });
    victim.signal(Signal::SIGTERM);
    let out = victim.finish(BOUND);
    out.assert_no_warnings();
}

/// A tiny OTLP/HTTP receiver on 127.0.0.1:0 for the `otel` test: it keeps
/// each request's JSON body and answers `200 OK`.
#[cfg(feature = "otel")]
mod collector {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::Duration;

    pub struct Collector {
        pub port: u16,
        bodies: Arc<Mutex<Vec<serde_json::Value>>>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Collector {
        pub fn start() -> Collector {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.set_nonblocking(true).expect("nonblocking");
            let port = listener.local_addr().expect("addr").port();
            let bodies = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let (b, s) = (bodies.clone(), stop.clone());
            let thread = std::thread::spawn(move || {
                while !s.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            if let Some(body) = serve(conn) {
                                b.lock().expect("bodies").push(body);
                            }
                        }
                        // Polling a non-blocking listener so the test can stop it.
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
            Collector { port, bodies, stop, thread: Some(thread) }
        }

        /// Stops the receiver (its socket closes) and returns the bodies.
        pub fn finish(mut self) -> Vec<serde_json::Value> {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(t) = self.thread.take() {
                t.join().expect("collector thread");
            }
            std::mem::take(&mut *self.bodies.lock().expect("bodies"))
        }
    }

    impl Drop for Collector {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
        }
    }

    /// Reads one POST and answers it; the body parsed as JSON.
    fn serve(conn: std::net::TcpStream) -> Option<serde_json::Value> {
        conn.set_nonblocking(false).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut reader = BufReader::new(conn.try_clone().ok()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line).ok()?;
        assert!(request_line.starts_with("POST /v1/traces "), "{request_line:?}");
        let mut len = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).ok()?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().ok()?;
                }
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).ok()?;
        let mut conn = conn;
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            .ok()?;
        serde_json::from_slice(&body).ok()
    }
}

/// With the `otel` feature and an endpoint, every actor exports its spans
/// to the collector: the root's call that started the trace, then a, b
/// and c's served calls, all in one trace, each span's parent the span of
/// its caller, each under its actor's service name.
#[cfg(feature = "otel")]
#[test]
fn spans_are_exported_over_otlp_with_their_parents() {
    let collector = collector::Collector::start();
    let endpoint = format!("http://127.0.0.1:{}", collector.port);
    let out = Tree::start("trace_scenarios", &["chain"], &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)])
        .finish(BOUND);
    let bodies = collector.finish();
    out.assert_no_warnings();
    assert!(out.status.success(), "{out:?}");
    let printed = hops(&out.stdout);
    let a = assert_one_chain(&printed);
    // Every exported span: (service, name, trace id, span id, parent).
    let mut spans = Vec::new();
    for body in &bodies {
        for rs in body["resourceSpans"].as_array().expect("resourceSpans") {
            let service = rs["resource"]["attributes"]
                .as_array()
                .and_then(|a| a.iter().find(|kv| kv["key"] == "service.name"))
                .and_then(|kv| kv["value"]["stringValue"].as_str())
                .expect("service.name")
                .to_owned();
            for ss in rs["scopeSpans"].as_array().expect("scopeSpans") {
                for s in ss["spans"].as_array().expect("spans") {
                    let text = |k: &str| s[k].as_str().map(str::to_owned);
                    spans.push((
                        service.clone(),
                        text("name").expect("name"),
                        text("traceId").expect("traceId"),
                        text("spanId").expect("spanId"),
                        text("parentSpanId"),
                    ));
                }
            }
        }
    }
    let trace = a.ctx.trace_id().to_string();
    let in_trace: Vec<_> = spans.iter().filter(|s| s.2 == trace).collect();
    let find = |service: &str, name: &str| {
        in_trace
            .iter()
            .find(|s| s.0 == service && s.1 == name)
            .unwrap_or_else(|| panic!("no span {name} from {service} in {in_trace:?}"))
    };
    let root = find("root", "trace_scenarios::hop");
    assert_eq!(root.4, None, "the root's call starts the trace");
    let sa = find("a", "trace_scenarios::hop");
    let sb = find("b", "trace_scenarios::hop");
    let sc = find("c", "trace_scenarios::hop_stream");
    assert_eq!(sa.4.as_deref(), Some(root.3.as_str()), "a's parent is the root's call");
    assert_eq!(sb.4.as_deref(), Some(sa.3.as_str()), "b's parent is a's span");
    assert_eq!(sc.4.as_deref(), Some(sb.3.as_str()), "c's parent is b's span");
    // The same spans the actors saw themselves in.
    for (span, hop) in [(sa, &printed[0]), (sb, &printed[1]), (sc, &printed[2])] {
        assert_eq!(span.3, hop.ctx.span_id().to_string(), "{span:?}");
    }
}

/// A collector that is not there costs the calls nothing: the request is
/// served as without one, and each actor says once that it cannot export.
#[cfg(feature = "otel")]
#[test]
fn an_unreachable_collector_neither_blocks_nor_fails_calls() {
    // A port nothing listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let out = Tree::start("trace_scenarios", &["chain"], &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)])
        .finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    assert_one_chain(&hops(&out.stdout));
    let warnings = out.warnings();
    assert!(!warnings.is_empty(), "a collector that is down is reported: {}", out.stderr);
    for w in &warnings {
        assert!(w.contains("cannot export spans (reported once)"), "{w}");
    }
    // root, a, b and c: at most once each.
    assert!(warnings.len() <= 4, "{warnings:#?}");
}

/// A collector that misbehaves: it accepts and then never answers (holding
/// every connection open), answers `200` followed by an endless body, or
/// resets each connection at once.
#[cfg(feature = "otel")]
#[derive(Clone, Copy, Debug)]
enum BadCollector {
    Silent,
    EndlessBody,
    Reset,
}

/// Serves `how` on 127.0.0.1:0 until `stop` is set; returns its port and
/// the thread serving it.
#[cfg(feature = "otel")]
fn bad_collector(
    how: BadCollector,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let thread = std::thread::spawn(move || {
        let mut held = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let Ok((mut conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            match how {
                BadCollector::Silent => held.push(conn),
                BadCollector::Reset => {
                    // SO_LINGER 0: the close sends RST.
                    let _ = nix::sys::socket::setsockopt(
                        &conn,
                        nix::sys::socket::sockopt::Linger,
                        &nix::libc::linger { l_onoff: 1, l_linger: 0 },
                    );
                }
                BadCollector::EndlessBody => {
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
                    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
                    let mut sink = [0u8; 64 * 1024];
                    let _ = conn.read(&mut sink);
                    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n");
                    let chunk = vec![b'x'; 64 * 1024];
                    // Until the exporter stops reading (a write times out or fails).
                    for _ in 0..16 * 1024 {
                        if conn.write_all(&chunk).is_err() || stop.load(Ordering::SeqCst) {
                            break;
                        }
                    }
                }
            }
        }
    });
    (port, thread)
}

/// Collectors that never answer, answer without end, or reset: the request
/// is still served, every actor exits on its own (no escalation to SIGKILL),
/// and the only warning is each actor's one report that it cannot export.
#[cfg(feature = "otel")]
#[test]
fn a_misbehaving_collector_neither_blocks_calls_nor_holds_up_exits() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    for how in [BadCollector::Silent, BadCollector::EndlessBody, BadCollector::Reset] {
        let stop = Arc::new(AtomicBool::new(false));
        let (port, thread) = bad_collector(how, stop.clone());
        let endpoint = format!("http://127.0.0.1:{port}");
        let out = Tree::start("trace_scenarios", &["chain"], &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)])
            .finish(BOUND);
        stop.store(true, Ordering::SeqCst);
        thread.join().expect("collector thread");
        assert!(out.status.success(), "{how:?}: {out:?}");
        assert_one_chain(&hops(&out.stdout));
        assert!(!out.stderr.contains("SIGKILL"), "{how:?}: an actor had to be killed: {}", out.stderr);
        let warnings = out.warnings();
        for w in &warnings {
            assert!(w.contains("cannot export spans (reported once)"), "{how:?}: {w}\n{}", out.stderr);
        }
        assert!(warnings.len() <= 4, "{how:?}: {warnings:#?}");
        if !matches!(how, BadCollector::EndlessBody) {
            assert!(!warnings.is_empty(), "{how:?}: the failure is reported: {}", out.stderr);
        }
    }
}
