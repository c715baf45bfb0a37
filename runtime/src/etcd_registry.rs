//! The registry in etcd: this actor's registration, attached to a lease it
//! keeps alive, and lookups by reads (`find`, `list`) and watches
//! (`wait_for`).
//!
//! A registration lives exactly as long as its lease: an actor that exits
//! revokes it, one that dies or loses etcd for longer than the TTL leaves by
//! expiry. A keep-alive stream that breaks (a member died, the connection
//! reset) is opened again on whichever member answers; a lease found expired
//! is replaced by a new one and the key put again. Every unary request is
//! bounded by [`EtcdConfig::request_timeout`]; only a watch waits without a
//! bound, and its caller bounds it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actor_arbiter::Entry;
use actor_arbiter::registry::check_name;
use actor_transport::{Addr, Uid};
use etcd_client::{Client, ConnectOptions, EventType, GetOptions, KeyValue, PutOptions, WatchOptions};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::etcd_config::EtcdConfig;
use crate::etcd_keys;
use crate::supervise::{Backoff, unit_random};

/// Entries asked for in one read: a page stays far below the 4 MiB a
/// response may take even with values at their longest.
const PAGE: i64 = 512;
/// The most entries a listing collects, as many as an arbiter holds.
const MAX_ENTRIES: usize = 16_384;
/// The first delay before retrying after etcd failed, doubling up to
/// [`RETRY_MAX`].
const RETRY_INITIAL: Duration = Duration::from_millis(50);
/// The longest delay between retries.
const RETRY_MAX: Duration = Duration::from_secs(1);
/// After how many failed attempts in a row an outage is logged at WARN.
const WARN_AFTER_ATTEMPTS: u32 = 8;
/// The bound on revoking the lease on the way out: an exit must not wait
/// long for an etcd that does not answer (the lease then simply expires).
const REVOKE_BOUND: Duration = Duration::from_secs(2);

/// gRPC's status code for "unavailable": a member down, or without a
/// leader (etcd's client crate does not re-export tonic's `Code`).
const GRPC_UNAVAILABLE: i32 = 14;

/// How often an idle connection to a member is pinged while a stream is
/// open: above etcd's default minimum of 5 s between a client's pings.
const PING_EVERY: Duration = Duration::from_secs(6);
/// How long a ping may go unanswered before the connection is dropped.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// How a keep-alive stream ended.
enum KeepAlive {
    /// The lease no longer exists: register again.
    Lost,
    /// The stream broke; the lease may still be alive: open another.
    Broken(String),
}

/// This actor's client of the registry in etcd.
pub(crate) struct EtcdRegistry {
    client: Client,
    config: EtcdConfig,
    /// This actor's key and value.
    key: Vec<u8>,
    value: Vec<u8>,
    /// Whether etcd answered the last request (for error messages).
    reachable: AtomicBool,
}

impl EtcdRegistry {
    /// A client of the etcd members of `config`, registering `uid` at
    /// `addr`. Nothing is sent yet: connections are made on first use.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the TLS files cannot be read, or TLS is asked
    /// for in a build without the `tls` feature; [`Error::Arbiter`] if the
    /// client cannot be built from the endpoints.
    pub(crate) async fn connect(config: &EtcdConfig, uid: &Uid, addr: &Addr) -> Result<EtcdRegistry> {
        // HTTP/2 pings find a member that went silent (a partition) under
        // a watch. etcd turns away a client that pings more often than every
        // 5 s (`--grpc-keepalive-min-time`) or while it has no stream open,
        // so pings are spaced above that; keep-alives, which have their own
        // bound, notice a silent member sooner.
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.request_timeout)
            .with_keep_alive(PING_EVERY, PING_TIMEOUT)
            .with_keep_alive_while_idle(false)
            // A member cut off from the majority refuses at once instead of
            // serving stale reads or stalling a watch.
            .with_require_leader(true);
        let scheme = if config.tls { "https" } else { "http" };
        if config.tls {
            options = with_tls(options, config)?;
        }
        let endpoints: Vec<String> = config.endpoints.iter().map(|e| format!("{scheme}://{e}")).collect();
        let client = tokio::time::timeout(config.request_timeout, Client::connect(endpoints, Some(options)))
            .await
            .map_err(|_| {
                Error::Arbiter(format!("cannot set up a client of etcd at {}: timed out", config.url()))
            })?
            .map_err(|e| {
                Error::Arbiter(format!("cannot set up a client of etcd at {}: {e}", config.url()))
            })?;
        Ok(EtcdRegistry {
            client,
            key: etcd_keys::key(&config.prefix, uid),
            value: etcd_keys::value(addr),
            config: config.clone(),
            reachable: AtomicBool::new(false),
        })
    }

    /// The registry's address, for messages.
    pub(crate) fn url(&self) -> String {
        self.config.url()
    }

    /// Whether etcd answered the last request made to it.
    pub(crate) fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// Registers this actor under a new lease; returns the lease.
    ///
    /// # Errors
    ///
    /// [`Error::Arbiter`] if etcd does not grant the lease or store the key
    /// within the request timeout.
    pub(crate) async fn register(&self) -> Result<i64> {
        let ttl = i64::try_from(self.config.lease_ttl.as_secs()).unwrap_or(i64::MAX);
        let lease = self
            .bounded("grant a lease", || {
                let mut c = self.client.clone();
                async move { c.lease_grant(ttl, None).await }
            })
            .await?
            .id();
        self.bounded("store the registration", || {
            let mut c = self.client.clone();
            let (key, value) = (self.key.clone(), self.value.clone());
            async move { c.put(key, value, Some(PutOptions::new().with_lease(lease))).await }
        })
        .await?;
        Ok(lease)
    }

    /// As [`EtcdRegistry::register`], for a root starting up: when no
    /// member answered, the error also says whether each endpoint accepts
    /// connections, and what to do.
    ///
    /// # Errors
    ///
    /// As [`EtcdRegistry::register`].
    pub(crate) async fn register_at_start(&self) -> Result<i64> {
        match self.register().await {
            Err(Error::Arbiter(e)) if !self.is_reachable() => Err(Error::Arbiter(format!(
                "{e}; endpoints: {}; start etcd there, or point {} at the cluster's members",
                probe_endpoints(&self.config).await,
                crate::ENV_ARBITER
            ))),
            r => r,
        }
    }

    /// Registers this actor, retrying with a capped backoff until etcd
    /// answers; `None` once `token` is cancelled.
    pub(crate) async fn register_until_done(&self, token: &CancellationToken) -> Option<i64> {
        let backoff = Backoff::exponential(RETRY_INITIAL, RETRY_MAX).jitter(0.2);
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            let registered = tokio::select! {
                r = self.register() => r,
                _ = token.cancelled() => return None,
            };
            match registered {
                Ok(lease) => return Some(lease),
                Err(e) if attempt == WARN_AFTER_ATTEMPTS => {
                    tracing::warn!(etcd = %self.url(), attempt, error = %e, "etcd is still unreachable; retrying every second");
                }
                Err(e) => tracing::debug!(etcd = %self.url(), attempt, error = %e, "cannot register in etcd"),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.delay(attempt, unit_random())) => {}
                _ = token.cancelled() => return None,
            }
        }
    }

    /// Keeps the registration under `lease` alive until `token` is
    /// cancelled, then revokes it (so the entry leaves at once). A broken
    /// keep-alive stream is opened again; an expired lease is replaced and
    /// the key stored again.
    pub(crate) async fn keep_registered(&self, token: CancellationToken, mut lease: i64) {
        let backoff = Backoff::exponential(RETRY_INITIAL, RETRY_MAX).jitter(0.2);
        let mut attempt = 0u32;
        loop {
            let ended = tokio::select! {
                e = self.keep_alive(lease, &mut attempt) => e,
                _ = token.cancelled() => break,
            };
            match ended {
                KeepAlive::Broken(why) => {
                    attempt = attempt.saturating_add(1);
                    if attempt == WARN_AFTER_ATTEMPTS {
                        tracing::warn!(etcd = %self.url(), attempt, error = %why, "cannot keep the registration alive in etcd; retrying every second");
                    } else {
                        tracing::debug!(etcd = %self.url(), attempt, error = %why, "the lease keep-alive stream broke");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.delay(attempt, unit_random())) => {}
                        _ = token.cancelled() => break,
                    }
                }
                KeepAlive::Lost => {
                    // At INFO: the entry was gone from the registry meanwhile.
                    tracing::info!(etcd = %self.url(), "the registration's lease expired in etcd; registering again");
                    match self.register_until_done(&token).await {
                        Some(l) => lease = l,
                        None => break,
                    }
                    tracing::info!(etcd = %self.url(), "registered again in etcd");
                    attempt = 0;
                }
            }
        }
        let mut c = self.client.clone();
        match tokio::time::timeout(REVOKE_BOUND, c.lease_revoke(lease)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot revoke the lease; the registration expires instead")
            }
            Err(_) => tracing::debug!("etcd did not answer the revocation; the registration expires instead"),
        }
    }

    /// Keeps `lease` alive over one stream until the stream breaks or the
    /// lease is found gone; a third of the TTL between keep-alives. Resets
    /// `attempt` once the stream works.
    async fn keep_alive(&self, lease: i64, attempt: &mut u32) -> KeepAlive {
        let timeout = self.config.request_timeout;
        let mut c = self.client.clone();
        let (mut keeper, mut stream) = match tokio::time::timeout(timeout, c.lease_keep_alive(lease)).await {
            Ok(Ok(pair)) => pair,
            // The crate's word for a lease the server no longer has.
            Ok(Err(etcd_client::Error::LeaseKeepAliveError(_))) => return KeepAlive::Lost,
            Ok(Err(e)) => return self.broken(e.to_string()),
            Err(_) => return self.broken(format!("no answer within {timeout:?}")),
        };
        self.reachable.store(true, Ordering::Relaxed);
        *attempt = 0;
        let every = self.config.lease_ttl / 3;
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = keeper.keep_alive().await {
                return self.broken(e.to_string());
            }
            match tokio::time::timeout(timeout.min(self.config.lease_ttl), stream.message()).await {
                Ok(Ok(Some(answer))) if answer.ttl() > 0 => self.reachable.store(true, Ordering::Relaxed),
                Ok(Ok(Some(_))) => return KeepAlive::Lost,
                Ok(Ok(None)) => return self.broken("the stream ended".into()),
                Ok(Err(e)) => return self.broken(e.to_string()),
                Err(_) => return self.broken("a keep-alive went unanswered".into()),
            }
        }
    }

    fn broken(&self, why: String) -> KeepAlive {
        self.reachable.store(false, Ordering::Relaxed);
        KeepAlive::Broken(why)
    }

    /// The entries registered under `name`, sorted by uid.
    ///
    /// # Errors
    ///
    /// [`Error::Arbiter`] if the name is empty or too long, etcd does not
    /// answer in time, or an entry under the name is malformed.
    pub(crate) async fn find(&self, name: &str) -> Result<Vec<Entry>> {
        Ok(self.find_at(name).await?.0)
    }

    /// As [`EtcdRegistry::find`], with the revision the read saw.
    async fn find_at(&self, name: &str) -> Result<(Vec<Entry>, i64)> {
        check_name(name).map_err(|e| Error::Arbiter(e.to_string()))?;
        let (kvs, revision) =
            self.range(etcd_keys::name_prefix(&self.config.prefix, name).into_bytes()).await?;
        let mut entries = self.decode(&kvs)?;
        entries.sort_by(|a, b| a.uid.cmp(&b.uid));
        Ok((entries, revision))
    }

    /// Every entry, sorted by name then uid.
    ///
    /// # Errors
    ///
    /// [`Error::Arbiter`] if etcd does not answer in time, an entry is
    /// malformed, or there are more than 16,384.
    pub(crate) async fn list(&self) -> Result<Vec<Entry>> {
        let (kvs, _) = self.range(self.config.prefix.clone().into_bytes()).await?;
        let mut entries = self.decode(&kvs)?;
        entries.sort_by(|a, b| a.uid.cmp(&b.uid));
        Ok(entries)
    }

    /// Waits until an entry is registered under `name`, then returns the
    /// name's entries (at once if there is one): reads, and if there is none,
    /// watches the name from the revision read until a key is put, then
    /// reads again. A broken watch or an unreachable etcd is retried with a
    /// capped backoff; the caller bounds the whole wait.
    ///
    /// # Errors
    ///
    /// [`Error::Arbiter`] if the name is empty or too long, or an entry
    /// under it is malformed.
    pub(crate) async fn wait_for(&self, name: &str) -> Result<Vec<Entry>> {
        check_name(name).map_err(|e| Error::Arbiter(e.to_string()))?;
        let backoff = Backoff::exponential(RETRY_INITIAL, RETRY_MAX).jitter(0.2);
        let mut attempt = 0u32;
        let prefix = etcd_keys::name_prefix(&self.config.prefix, name);
        loop {
            let revision = match self.find_at(name).await {
                Ok((entries, _)) if !entries.is_empty() => return Ok(entries),
                Ok((_, revision)) => Some(revision),
                Err(e) if self.is_reachable() => return Err(e),
                Err(e) => {
                    tracing::debug!(etcd = %self.url(), error = %e, "waiting for etcd to answer");
                    None
                }
            };
            if let Some(revision) = revision {
                match self.watch_for_put(&prefix, revision + 1).await {
                    Ok(()) => {
                        attempt = 0;
                        continue;
                    }
                    Err(why) => tracing::debug!(etcd = %self.url(), error = %why, "the watch broke"),
                }
            }
            attempt = attempt.saturating_add(1);
            tokio::time::sleep(backoff.delay(attempt, unit_random())).await;
        }
    }

    /// Watches the keys under `prefix` from `revision` until one is put.
    async fn watch_for_put(&self, prefix: &str, revision: i64) -> std::result::Result<(), String> {
        let mut c = self.client.clone();
        let options = WatchOptions::new().with_prefix().with_start_revision(revision);
        let timeout = self.config.request_timeout;
        let mut stream = match tokio::time::timeout(timeout, c.watch(prefix, Some(options))).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no answer within {timeout:?}")),
        };
        loop {
            match stream.message().await {
                Ok(Some(answer)) if answer.canceled() => {
                    // Compacted past `revision`, say: the caller reads again.
                    return Err(format!("etcd cancelled the watch: {}", answer.cancel_reason()));
                }
                Ok(Some(answer)) => {
                    if answer.events().iter().any(|e| e.event_type() == EventType::Put) {
                        return Ok(());
                    }
                }
                Ok(None) => return Err("the watch stream ended".into()),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Every key under `prefix`, read page by page in key order, and the
    /// revision of the first read.
    async fn range(&self, prefix: Vec<u8>) -> Result<(Vec<KeyValue>, i64)> {
        let end = prefix_end(&prefix);
        let mut from = prefix;
        let mut kvs: Vec<KeyValue> = Vec::new();
        let mut revision = 0;
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            // Later pages read the same revision as the first: one snapshot.
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let mut page = self
                .bounded("read the registry", || {
                    let (mut c, from, options) = (self.client.clone(), from.clone(), options.clone());
                    async move { c.get(from, Some(options)).await }
                })
                .await?;
            if revision == 0 {
                revision = page.header().map(|h| h.revision()).unwrap_or_default();
            }
            let more = page.more();
            kvs.extend(page.take_kvs());
            if kvs.len() > MAX_ENTRIES {
                return Err(Error::Arbiter(format!(
                    "etcd at {} holds more than {MAX_ENTRIES} registrations under `{}`",
                    self.url(),
                    String::from_utf8_lossy(&end[..end.len().saturating_sub(1)])
                )));
            }
            match (more, kvs.last()) {
                (true, Some(last)) => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok((kvs, revision)),
            }
        }
    }

    fn decode(&self, kvs: &[KeyValue]) -> Result<Vec<Entry>> {
        kvs.iter().map(|kv| etcd_keys::decode(&self.config.prefix, kv.key(), kv.value())).collect()
    }

    /// Makes the request `request()` makes, again while etcd answers that
    /// it is unavailable or does not answer (a member down, no leader yet:
    /// another member, or the next leader, may answer), all within the
    /// request timeout. Only idempotent requests come here (a lease granted
    /// twice leaves the spare to expire). Errors say what was asked.
    async fn bounded<T, F, Fut>(&self, what: &str, mut request: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let timeout = self.config.request_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let backoff = Backoff::exponential(Duration::from_millis(10), Duration::from_millis(500)).jitter(0.2);
        let mut attempt = 0u32;
        let unanswered = |why: String| {
            Error::Arbiter(format!(
                "no etcd member at {} answered within {timeout:?} to {what}{why}",
                self.url()
            ))
        };
        // One attempt gets a quarter of the bound: a request that a member
        // accepted just before its leader died is lost, not answered, and
        // another attempt after the election succeeds.
        let per_attempt = (timeout / 4).max(Duration::from_millis(250));
        loop {
            attempt = attempt.saturating_add(1);
            let until = deadline.min(tokio::time::Instant::now() + per_attempt);
            let answer = tokio::time::timeout_at(until, request()).await;
            self.reachable.store(matches!(answer, Ok(Ok(_))), Ordering::Relaxed);
            let last = match answer {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if !unavailable(&e) => {
                    return Err(Error::Arbiter(format!(
                        "etcd at {} failed to {what}: {}",
                        self.url(),
                        describe(&e)
                    )));
                }
                Ok(Err(e)) => describe(&e),
                Err(_) => format!("no answer within {per_attempt:?}"),
            };
            let pause = backoff.delay(attempt, unit_random());
            if tokio::time::Instant::now() + pause >= deadline {
                return Err(unanswered(format!(" (last: {last})")));
            }
            tokio::time::sleep(pause).await;
        }
    }
}

/// Whether etcd's answer says to try again, maybe at another member: it is
/// unavailable, or the status was made here from a broken connection
/// (only those carry a cause; etcd's own refusals do not).
fn unavailable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            i32::from(s.code()) == GRPC_UNAVAILABLE || std::error::Error::source(s).is_some()
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

/// An error of the etcd client in a line: the message and its root cause
/// (a gRPC status's debug form is a page of nested types).
fn describe(e: &etcd_client::Error) -> String {
    let etcd_client::Error::GRpcStatus(status) = e else { return e.to_string() };
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(status);
    let mut root = None;
    while let Some(c) = cause {
        root = Some(c.to_string());
        cause = c.source();
    }
    match root {
        Some(root) if !status.message().is_empty() => format!("{}: {root}", status.message()),
        Some(root) => root,
        None => format!("{:?}: {}", status.code(), status.message()),
    }
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff: to the end of the keyspace, as etcd spells it.
    vec![0]
}

/// Says, for each endpoint, whether it accepts TCP connections (at most a
/// second each): what tells "nothing runs there" from "it does not answer".
async fn probe_endpoints(config: &EtcdConfig) -> String {
    let mut said = Vec::new();
    for endpoint in &config.endpoints {
        let host = endpoint.rsplit_once(':').map(|(h, p)| (h.trim_matches(['[', ']']), p));
        let outcome = match host.and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?))) {
            Some(target) => {
                match tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(target))
                    .await
                {
                    Ok(Ok(_)) => "accepts connections but did not answer".to_owned(),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "no answer to a connection within 1 s".to_owned(),
                }
            }
            None => "not host:port".to_owned(),
        };
        said.push(format!("{endpoint}: {outcome}"));
    }
    said.join("; ")
}

#[cfg(feature = "tls")]
fn with_tls(options: ConnectOptions, config: &EtcdConfig) -> Result<ConnectOptions> {
    use etcd_client::{Certificate, Identity, TlsOptions};
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path)
            .map_err(|e| Error::Config(format!("cannot read the etcd {what} {}: {e}", path.display())))
    };
    let ca = config.ca.as_deref().ok_or_else(|| {
        Error::Config(format!("{} speaks TLS: set {}", config.url(), crate::etcd_config::ENV_ETCD_CA))
    })?;
    let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(ca, "CA")?));
    if let Some((cert, key)) = &config.identity {
        tls = tls.identity(Identity::from_pem(read(cert, "certificate")?, read(key, "key")?));
    }
    Ok(options.with_tls(tls))
}

#[cfg(not(feature = "tls"))]
fn with_tls(_: ConnectOptions, config: &EtcdConfig) -> Result<ConnectOptions> {
    Err(Error::Config(format!(
        "{} asks for TLS, but this program was built without procactor's `tls` feature",
        config.url()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_prefix_is_the_first_key_after_it() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }
}
