//! Exporting the spans of calls over OTLP/HTTP with JSON bodies (the
//! `otel` feature), so a collector (Jaeger, Tempo, the OpenTelemetry
//! Collector) shows one request across actors as one trace.
//!
//! Configured by the standard variables: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//! (the full URL) or `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL, `/v1/traces`
//! appended), and `OTEL_SERVICE_NAME` (default: the actor's name). Without
//! an endpoint nothing is exported and recording costs one atomic load.
//! Only `http://` endpoints are supported: the client is a few lines of
//! HTTP/1.1 over a TCP socket, not a TLS stack.
//!
//! Spans are queued in memory (at most [`QUEUE_CAP`]; more are dropped and
//! counted) and posted in batches by a background task, and once more when
//! the actor exits (bounded by [`FLUSH_BOUND`], and in a child by
//! [`exit_flush_bound`]), so a short-lived actor's spans reach the collector. A collector that is slow, down or refusing
//! never delays a call: recording is a push onto the queue.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actor_transport::{SpanId, TraceContext, Uid};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The most spans waiting to be sent; a span recorded past it is dropped.
pub(crate) const QUEUE_CAP: usize = 4096;
/// How long an actor waits at exit for its last spans to be sent.
pub(crate) const FLUSH_BOUND: Duration = Duration::from_secs(2);
/// How often the background task sends what has been recorded.
const BATCH_EVERY: Duration = Duration::from_secs(1);
/// The most bytes of a collector's response that are read (its status line).
const RESPONSE_CAP: usize = 4096;

/// The variable naming the traces endpoint (full URL).
pub const ENV_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// The variable naming the OTLP base URL (`/v1/traces` is appended).
pub const ENV_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The variable naming the service the spans belong to.
pub const ENV_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";

/// What kind of span, in OTLP's numbering.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// The callee's side of a call.
    Server = 2,
    /// The caller's side of a call that started a trace.
    Client = 3,
}

/// One finished span.
pub(crate) struct Record {
    pub(crate) ctx: TraceContext,
    pub(crate) parent: Option<SpanId>,
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) start: SystemTime,
    pub(crate) end: SystemTime,
    /// `None` for success, else the error's message.
    pub(crate) error: Option<String>,
}

/// The caller's span of a call that started a trace, recorded when the
/// call ends (when this is dropped, with the call's guard).
pub(crate) struct ClientSpan {
    ctx: TraceContext,
    name: String,
    start: SystemTime,
}

impl ClientSpan {
    /// The span of the call of `func` that starts trace `ctx`, if spans
    /// are exported.
    pub(crate) fn start(ctx: TraceContext, func: &str) -> Option<ClientSpan> {
        enabled().then(|| ClientSpan { ctx, name: func.to_owned(), start: SystemTime::now() })
    }
}

impl Drop for ClientSpan {
    fn drop(&mut self) {
        let (ctx, kind, start, end) = (self.ctx, Kind::Client, self.start, SystemTime::now());
        record(Record {
            ctx,
            parent: None,
            name: std::mem::take(&mut self.name),
            kind,
            start,
            end,
            error: None,
        });
    }
}

/// Where spans go.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    host: String,
    port: u16,
    path: String,
}

impl Endpoint {
    /// `host:port` as a URL and a `Host` header write it: an IPv6 address
    /// in brackets.
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

struct Exporter {
    endpoint: Endpoint,
    resource: Value,
    queue: Mutex<Vec<Record>>,
    /// Held while a batch is on its way, so the exit flush waits for it.
    sending: tokio::sync::Mutex<()>,
    dropped: AtomicU64,
    warned: AtomicBool,
}

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

/// Whether spans are being exported (an endpoint is configured).
pub(crate) fn enabled() -> bool {
    EXPORTER.get().is_some()
}

/// Starts exporting this actor's spans if an endpoint is configured; a
/// malformed endpoint is reported once and nothing is exported.
pub(crate) fn start(uid: &Uid) {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let url = match (var(ENV_TRACES_ENDPOINT), var(ENV_ENDPOINT)) {
        (Some(full), _) => full,
        (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
        (None, None) => return,
    };
    let endpoint = match parse_endpoint(&url) {
        Ok(e) => e,
        Err(why) => {
            tracing::warn!(%why, "spans are not exported");
            return;
        }
    };
    let service = var(ENV_SERVICE_NAME).unwrap_or_else(|| uid.name.clone());
    let resource = json!({ "attributes": [
        attr("service.name", &service),
        attr("service.instance.id", &format!("{}#{}", uid.name, uid.id)),
        attr("process.pid", &std::process::id().to_string()),
    ]});
    let exporter = Exporter {
        endpoint,
        resource,
        queue: Mutex::new(Vec::new()),
        sending: tokio::sync::Mutex::new(()),
        dropped: AtomicU64::new(0),
        warned: AtomicBool::new(false),
    };
    if EXPORTER.set(exporter).is_ok() {
        tokio::spawn(async {
            loop {
                tokio::time::sleep(BATCH_EVERY).await;
                send_queued().await;
            }
        });
    }
}

/// Queues a finished span for export (dropped when the queue is full).
pub(crate) fn record(span: Record) {
    let Some(e) = EXPORTER.get() else { return };
    let mut q = e.queue.lock().unwrap_or_else(|p| p.into_inner());
    if q.len() < QUEUE_CAP {
        q.push(span);
    } else {
        e.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends what is queued, waiting at most `bound`; at an actor's exit.
pub(crate) async fn flush(bound: Duration) {
    let _ = tokio::time::timeout(bound, send_queued()).await;
}

/// The least time a child's exit flush gets, even late in its teardown.
const LAST_FLUSH_FLOOR: Duration = Duration::from_millis(100);

/// How long a child cancelled at `cancelled_at` may wait at exit for its
/// last spans: what is left of half its cancel grace since the cancel (at
/// most [`FLUSH_BOUND`], at least [`LAST_FLUSH_FLOOR`]).
///
/// The parent sends SIGTERM to a child still running `cancel_grace` after
/// the cancel. A fixed wait per actor would add up along a chain of actors
/// (each flushes after its children exit) and, with a collector that never
/// answers, make every parent escalate; measured from the cancel, which
/// reaches a whole subtree at about the same time, the flushes of a
/// subtree overlap instead.
pub(crate) fn exit_flush_bound(cancelled_at: tokio::time::Instant, cancel_grace: Duration) -> Duration {
    let deadline = cancelled_at + (cancel_grace / 2).min(FLUSH_BOUND);
    deadline.saturating_duration_since(tokio::time::Instant::now()).max(LAST_FLUSH_FLOOR)
}

async fn send_queued() {
    let Some(e) = EXPORTER.get() else { return };
    let _sending = e.sending.lock().await;
    let batch = std::mem::take(&mut *e.queue.lock().unwrap_or_else(|p| p.into_inner()));
    if batch.is_empty() {
        return;
    }
    let body = document(&e.resource, &batch);
    let outcome = tokio::time::timeout(FLUSH_BOUND, post(&e.endpoint, body.as_bytes())).await;
    let failure = match outcome {
        Ok(Ok(status)) if (200..300).contains(&status) => return,
        Ok(Ok(status)) => format!("the collector answered HTTP {status}"),
        Ok(Err(io)) => io.to_string(),
        Err(_) => format!("no answer within {FLUSH_BOUND:?}"),
    };
    // Once per process: a collector that is down must not flood the log.
    if !e.warned.swap(true, Ordering::Relaxed) {
        let dropped = e.dropped.load(Ordering::Relaxed);
        tracing::warn!(
            endpoint = %format!("http://{}{}", e.endpoint.authority(), e.endpoint.path),
            spans = batch.len(),
            dropped,
            %failure,
            "cannot export spans (reported once)"
        );
    }
}

/// POSTs `body` as JSON; returns the response's status code.
async fn post(ep: &Endpoint, body: &[u8]) -> std::io::Result<u16> {
    let mut s = tokio::net::TcpStream::connect((ep.host.as_str(), ep.port)).await?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        ep.path,
        ep.authority(),
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.windows(2).any(|w| w == b"\r\n") && got.len() < RESPONSE_CAP {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    // `HTTP/1.1 200 OK`
    std::str::from_utf8(&got)
        .ok()
        .and_then(|t| t.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))
}

/// `http://host[:port][/path]`; a URL without a path posts to `/`.
fn parse_endpoint(url: &str) -> Result<Endpoint, String> {
    let rest = url
        .trim()
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// OTLP endpoints are supported, not {url:?}"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let port = |p: &str| p.parse::<u16>().map_err(|_| format!("a bad port in the OTLP endpoint {url:?}"));
    let (host, port) = match authority.strip_prefix('[') {
        // An IPv6 literal: `[::1]` or `[::1]:4318`.
        Some(inner) => match inner.split_once(']') {
            Some((h, "")) => (h, 80),
            Some((h, after)) => match after.strip_prefix(':') {
                Some(p) => (h, port(p)?),
                None => return Err(format!("a bad OTLP endpoint {url:?}")),
            },
            None => return Err(format!("a bad OTLP endpoint {url:?}")),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, port(p)?),
            None => (authority, 80),
        },
    };
    if host.is_empty() {
        return Err(format!("no host in the OTLP endpoint {url:?}"));
    }
    let path = if path.is_empty() { "/" } else { path };
    Ok(Endpoint { host: host.to_owned(), port, path: path.to_owned() })
}

fn attr(key: &str, value: &str) -> Value {
    json!({ "key": key, "value": { "stringValue": value } })
}

fn nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()).to_string()
}

/// The OTLP/JSON `ExportTraceServiceRequest` for `spans`.
fn document(resource: &Value, spans: &[Record]) -> String {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut span = json!({
                "traceId": s.ctx.trace_id().to_string(),
                "spanId": s.ctx.span_id().to_string(),
                "name": s.name,
                "kind": s.kind as u8,
                "startTimeUnixNano": nanos(s.start),
                "endTimeUnixNano": nanos(s.end),
                "flags": s.ctx.flags(),
                "attributes": [attr("rpc.system", "procactor"), attr("rpc.method", &s.name)],
            });
            if let Some(p) = s.parent {
                span["parentSpanId"] = json!(p.to_string());
            }
            span["status"] = match &s.error {
                None => json!({ "code": 0 }),
                Some(message) => json!({ "code": 2, "message": message }),
            };
            span
        })
        .collect();
    json!({ "resourceSpans": [{
        "resource": resource,
        "scopeSpans": [{ "scope": { "name": "procactor", "version": env!("CARGO_PKG_VERSION") }, "spans": spans }],
    }]})
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_childs_exit_flush_ends_within_half_its_grace_from_the_cancel() {
        let now = tokio::time::Instant::now();
        let grace = Duration::from_secs(2);
        let fresh = exit_flush_bound(now, grace);
        assert!(fresh <= grace / 2 && fresh > grace / 4, "{fresh:?}");
        assert_eq!(exit_flush_bound(now - grace, grace), LAST_FLUSH_FLOOR, "late: the floor");
        assert!(exit_flush_bound(now, Duration::from_secs(60)) <= FLUSH_BOUND, "capped");
    }

    #[test]
    fn endpoints_are_http_urls() {
        let ep = |host: &str, port, path: &str| Endpoint { host: host.into(), port, path: path.into() };
        assert_eq!(
            parse_endpoint("http://127.0.0.1:4318/v1/traces"),
            Ok(ep("127.0.0.1", 4318, "/v1/traces"))
        );
        assert_eq!(parse_endpoint("http://collector"), Ok(ep("collector", 80, "/")));
        assert_eq!(parse_endpoint("http://[::1]:4318/x"), Ok(ep("::1", 4318, "/x")));
        assert_eq!(parse_endpoint("http://[::1]"), Ok(ep("::1", 80, "/")));
        // The Host header and the log write it back as the URL had it.
        assert_eq!(ep("::1", 4318, "/x").authority(), "[::1]:4318");
        assert_eq!(ep("collector", 80, "/").authority(), "collector:80");
        for bad in
            ["https://c:4318", "c:4318", "http://:4318", "http://c:port/x", "http://c:99999", "http://[::1"]
        {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_document_names_ids_in_hex_and_the_parent() {
        let ctx =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").expect("valid");
        let parent = SpanId::from_bytes([1, 2, 3, 4, 5, 6, 7, 8]);
        let now = SystemTime::now();
        let span = Record {
            ctx,
            parent,
            name: "m::f".into(),
            kind: Kind::Server,
            start: now,
            end: now,
            error: None,
        };
        let doc: Value = serde_json::from_str(&document(&json!({}), &[span])).expect("JSON");
        let s = &doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s["spanId"], "00f067aa0ba902b7");
        assert_eq!(s["parentSpanId"], "0102030405060708");
        assert_eq!(s["kind"], 2);
    }
}
