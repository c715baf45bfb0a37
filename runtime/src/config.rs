//! Runtime configuration, from code or the environment.

use std::time::Duration;

use actor_transport::{Addr, AdmissionConfig, ENV_TLS_CA, ENV_TLS_CERT, ENV_TLS_KEY, Secret, TlsConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Environment variable holding the log filter for the whole actor tree
/// (`tracing` `EnvFilter` syntax, e.g. `info` or `actor=debug`).
pub const ENV_LOG: &str = "ACTOR_LOG";
/// Environment variable holding the cluster token as hex: peers that are not
/// this actor's own children must prove they hold it. Without it (and without
/// TLS) the tree uses the per-user secret of [`default_token`](crate::default_token).
pub const ENV_TOKEN: &str = "ACTOR_TOKEN";
/// Environment variable naming the root actor (default `root`).
pub const ENV_NAME: &str = "ACTOR_NAME";
/// Environment variable holding the arbiter's address (default
/// `tcp://127.0.0.1:1616`), [`ARBITER_PRIVATE`], or, with the `etcd`
/// feature, `etcd://host:port[,host:port...]` (`etcds://` for TLS) to keep
/// the registry in etcd.
pub const ENV_ARBITER: &str = actor_arbiter::ENV_ADDR;
/// The value of [`ENV_ARBITER`] that gives a tree an arbiter of its own
/// ([`Config::private_arbiter`]).
pub const ARBITER_PRIVATE: &str = "private";
/// Environment variable holding the address the root actor listens on
/// (default `tcp://127.0.0.1:0`).
pub const ENV_BIND: &str = "ACTOR_BIND";
/// Environment variable setting how many threads the root actor's runtime
/// uses (default 1).
pub const ENV_THREADS: &str = "ACTOR_THREADS";
/// The shortest [`Config::peer_timeout`] accepted: a third of it is the
/// heartbeat's period.
pub const MIN_PEER_TIMEOUT: Duration = Duration::from_millis(100);

/// Environment variable setting [`Config::peer_timeout`] in seconds
/// (default 30).
pub const ENV_PEER_TIMEOUT: &str = "ACTOR_PEER_TIMEOUT";
/// Environment variable naming the host an actor reports it runs on (in
/// [`Introspection::host`](crate::Introspection)); default: the kernel's
/// host name. A host agent sets it, to its host's name, for the actors it
/// starts.
pub const ENV_HOST: &str = "ACTOR_HOST";
/// Environment variable that, set to `1`, allows listening on a non-loopback
/// address without TLS.
pub const ENV_INSECURE: &str = "ACTOR_INSECURE";
/// Environment variable that, set to `1` in the root's environment (which
/// the whole tree inherits), makes every actor execute its children anew
/// instead of forking them from its fork server (see the README's
/// "Spawning"): slower by about the cost of an `exec`, for debugging, or
/// where siblings must not share the start-up state (stack-protector
/// canary included) that forking from one image gives them.
pub const ENV_NO_FORK_SERVER: &str = "ACTOR_NO_FORK_SERVER";

/// How the root actor runs, and what it hands down to every actor it spawns.
///
/// `Config::default()` listens on an ephemeral loopback port, logs warnings and
/// errors, and uses the grace periods documented on each field.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The root actor's name.
    pub name: String,
    /// Log filter for every actor in the tree; `None` means `warn`.
    pub log: Option<String>,
    /// Where the root listens for its children and peers.
    pub bind: Addr,
    /// The cluster token: required of peers that are not our children, and
    /// required of every server we connect to (the arbiter, other actors),
    /// which must prove it holds it too. At least 16 bytes. `None` at the
    /// root means the per-user secret ([`crate::default_token`]), unless
    /// `tls` is set: certificates then prove membership instead.
    pub token: Option<Secret>,
    /// Where the arbiter is (default `tcp://127.0.0.1:1616`).
    pub arbiter: Addr,
    /// Host an arbiter at `arbiter` when nothing listens there (default
    /// true), and take the address over if the program hosting it exits.
    pub embed_arbiter: bool,
    /// Host an arbiter of this tree's own on a free loopback port instead of
    /// sharing the one at `arbiter` (default false; [`Config::private_arbiter`],
    /// or `ACTOR_ARBITER=private`). Other programs find this tree's actors
    /// only through [`crate::arbiter_addr`].
    pub private_arbiter: bool,
    /// Keep the registry in etcd rather than an arbiter (default `None`;
    /// [`Config::etcd`], or `ACTOR_ARBITER=etcd://...`). `arbiter`,
    /// `embed_arbiter` and `private_arbiter` then do not apply.
    #[cfg(feature = "etcd")]
    pub etcd: Option<crate::EtcdConfig>,
    /// Mutual TLS for every connection of the tree (from `ACTOR_TLS_CA`,
    /// `ACTOR_TLS_CERT`, `ACTOR_TLS_KEY`); `None` means plaintext.
    pub tls: Option<TlsConfig>,
    /// Allow listening on a non-loopback address without TLS.
    pub insecure_non_loopback: bool,
    /// Threads of the root actor's runtime (default 1: everything of the root
    /// runs on one thread, as in every child; blocking work belongs in
    /// `tokio::task::spawn_blocking` or a plain `#[actor::remote] fn`).
    pub threads: usize,
    /// The low-latency mode: how long each actor's thread, out of work,
    /// polls its channels for a message before it sleeps (default `None`:
    /// off; [`Config::low_latency`], or `ACTOR_LOW_LATENCY_US` in
    /// microseconds). It saves the tens of microseconds a sleeping vCPU takes
    /// to wake, for up to this much CPU time per wake-up; at most
    /// [`MAX_SPIN`](crate::MAX_SPIN). Every actor of the tree inherits it.
    pub low_latency: Option<Duration>,
    /// After asking an actor to cancel, how long to wait before SIGTERM (2 s).
    pub cancel_grace: Duration,
    /// After SIGTERM, how long to wait before SIGKILL (1 s).
    pub kill_grace: Duration,
    /// How long a spawned child may take to connect back (10 s).
    pub spawn_timeout: Duration,
    /// How long a peer may take to finish the handshake (5 s).
    pub handshake_timeout: Duration,
    /// How long a connected peer may stay silent before the channel to it is
    /// closed and its calls fail (30 s; `ACTOR_PEER_TIMEOUT` in seconds).
    /// After a third of it without a message, a ping asks for an answer, so
    /// a live peer, even an idle one, is never dropped; a stopped process or
    /// a silently broken link is. At least [`MIN_PEER_TIMEOUT`]: `run_with`
    /// refuses less with [`Error::Config`].
    pub peer_timeout: Duration,
    /// Caps of this actor's listener: connections in the handshake at once
    /// (256) and open connections (4096, or `ACTOR_MAX_CONNECTIONS`). Excess
    /// connections are closed as soon as they are accepted.
    pub admission: AdmissionConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "root".into(),
            log: None,
            bind: Addr::loopback(0),
            token: None,
            arbiter: Addr::loopback(1616),
            embed_arbiter: true,
            private_arbiter: false,
            #[cfg(feature = "etcd")]
            etcd: None,
            tls: None,
            insecure_non_loopback: false,
            threads: 1,
            low_latency: None,
            cancel_grace: Duration::from_secs(2),
            kill_grace: Duration::from_secs(1),
            spawn_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(5),
            peer_timeout: Duration::from_secs(30),
            admission: AdmissionConfig::default(),
        }
    }
}

impl Config {
    /// The defaults, overridden by `ACTOR_NAME`, `ACTOR_LOG`, `ACTOR_TOKEN`,
    /// `ACTOR_ARBITER`, `ACTOR_BIND`, `ACTOR_INSECURE`, `ACTOR_THREADS`,
    /// `ACTOR_PEER_TIMEOUT`, `ACTOR_MAX_CONNECTIONS` and `ACTOR_TLS_*`.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if `ACTOR_TOKEN` is set but is not hex of at least 16
    /// bytes (32 digits), `ACTOR_ARBITER` or `ACTOR_BIND` is not an address, or
    /// `ACTOR_THREADS` is not a number;
    /// [`Error::Config`] if the TLS files cannot be loaded,
    /// `ACTOR_MAX_CONNECTIONS` is not a positive number, or `ACTOR_ARBITER`
    /// names etcd in a build without the `etcd` feature (or with a bad
    /// `ACTOR_ETCD_*` option, see [`EtcdConfig::from_env`](crate::EtcdConfig)).
    pub fn from_env() -> Result<Config> {
        let mut c = Config::default();
        if let Ok(name) = std::env::var(ENV_NAME) {
            c.name = name;
        }
        if let Ok(log) = std::env::var(ENV_LOG) {
            c.log = Some(log);
        }
        if let Ok(token) = std::env::var(ENV_TOKEN) {
            // Set but empty is refused too: an empty token would silently mean
            // "no authentication" to a reader of the environment.
            c.token = Some(
                Secret::parse_hex(token.trim())
                    .map_err(|e| Error::codec(format!("the {ENV_TOKEN} environment variable"), e))?,
            );
        }
        c.admission = AdmissionConfig::from_env().map_err(Error::Config)?;
        if let Ok(value) = std::env::var(ENV_ARBITER) {
            c = c.registry(&value)?;
        }
        if let Ok(addr) = std::env::var(ENV_BIND) {
            c.bind =
                addr.parse().map_err(|e| Error::codec(format!("the {ENV_BIND} environment variable"), e))?;
        }
        c.insecure_non_loopback = std::env::var(ENV_INSECURE).is_ok_and(|v| v == "1");
        if let Ok(n) = std::env::var(ENV_THREADS) {
            c.threads = n
                .trim()
                .parse()
                .map_err(|e| Error::codec(format!("the {ENV_THREADS} environment variable"), e))?;
        }
        c.low_latency = crate::low_latency::from_env()?;
        if let Ok(secs) = std::env::var(ENV_PEER_TIMEOUT) {
            let secs: f64 = secs
                .trim()
                .parse()
                .map_err(|e| Error::codec(format!("the {ENV_PEER_TIMEOUT} environment variable"), e))?;
            c.peer_timeout = Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|d| *d >= MIN_PEER_TIMEOUT)
                .ok_or_else(|| Error::Config(format!("{ENV_PEER_TIMEOUT} must be at least 0.1 seconds")))?;
        }
        c.tls = TlsConfig::from_env().map_err(|e| Error::Config(e.to_string()))?;
        Ok(c)
    }

    /// Sets the arbiter's address (and shares it: undoes
    /// [`Config::private_arbiter`] and [`Config::etcd`]).
    pub fn arbiter(mut self, addr: Addr) -> Self {
        self.arbiter = addr;
        self.private_arbiter = false;
        self.without_etcd()
    }

    /// Points the tree at the registry `value` names, read as
    /// [`ENV_ARBITER`] is: an arbiter's address, [`ARBITER_PRIVATE`], or
    /// `etcd://...` / `etcds://...` (with the `etcd` feature; its
    /// `ACTOR_ETCD_*` options come from the environment).
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if `value` is not an address; [`Error::Config`] for
    /// an etcd address without the `etcd` feature, or a bad etcd address or
    /// option.
    pub fn registry(self, value: &str) -> Result<Config> {
        if value.trim() == ARBITER_PRIVATE {
            return Ok(self.private_arbiter());
        }
        if is_etcd_url(value) {
            return with_etcd_url(self, value);
        }
        let addr =
            value.parse().map_err(|e| Error::codec(format!("the {ENV_ARBITER} environment variable"), e))?;
        Ok(self.arbiter(addr))
    }

    /// Keeps the registry in etcd, as `ACTOR_ARBITER=etcd://...` does: every
    /// actor of the tree registers there under a lease it keeps alive, and
    /// lookups read and watch it. No arbiter is used or hosted.
    #[cfg(feature = "etcd")]
    pub fn etcd(mut self, etcd: crate::EtcdConfig) -> Self {
        self.etcd = Some(etcd);
        self.private_arbiter = false;
        self
    }

    #[cfg(feature = "etcd")]
    fn without_etcd(mut self) -> Self {
        self.etcd = None;
        self
    }

    #[cfg(not(feature = "etcd"))]
    fn without_etcd(self) -> Self {
        self
    }

    /// Gives this tree an arbiter of its own, hosted by the root on a free
    /// loopback port, rather than the one shared by every program of the
    /// user at `ACTOR_ARBITER`: for separate trees on one machine that must
    /// not see each other's names (tests, say). `ACTOR_ARBITER=private`
    /// does the same.
    pub fn private_arbiter(mut self) -> Self {
        self.private_arbiter = true;
        self.embed_arbiter = true;
        self.without_etcd()
    }

    /// Uses mutual TLS for every connection of the tree. Children get the
    /// same files, so the configuration must come from files.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets where the root actor listens.
    pub fn bind(mut self, addr: Addr) -> Self {
        self.bind = addr;
        self
    }

    /// The configuration a root actually runs with: with neither a token nor
    /// TLS configured, the per-user secret (see [`default_token_path`]), so
    /// that a tree is never open to every local user by default. With TLS the
    /// certificates prove membership and no token is added.
    ///
    /// [`default_token_path`]: crate::default_token_path
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the secret file cannot be read or created, or is
    /// not private to this user.
    pub(crate) fn with_default_token(mut self) -> Result<Config> {
        if self.token.is_none() && self.tls.is_none() {
            self.token = Some(crate::default_token()?);
        }
        Ok(self)
    }

    /// Refuses a configuration that would listen beyond this host in
    /// plaintext, or whose peer timeout is below [`MIN_PEER_TIMEOUT`] (the
    /// heartbeat would spin and drop live peers).
    pub(crate) fn check(&self) -> Result<()> {
        if self.peer_timeout < MIN_PEER_TIMEOUT {
            return Err(Error::Config(format!(
                "the peer timeout is {:?}; it must be at least {MIN_PEER_TIMEOUT:?}",
                self.peer_timeout
            )));
        }
        self.check_listen(&self.bind)
    }

    /// Refuses to listen on `addr` (this actor's listener, or an embedded
    /// arbiter's) if that would accept plaintext beyond this host: the rule of
    /// [`actor_transport::check_exposure`], shared with the `arbiter` daemon.
    pub(crate) fn check_listen(&self, addr: &Addr) -> Result<()> {
        actor_transport::check_exposure(addr, self.tls.is_some(), self.insecure_non_loopback).map_err(|e| {
            Error::Config(format!(
                "{e}; set {ENV_TLS_CA}, {ENV_TLS_CERT} and {ENV_TLS_KEY} (or {ENV_INSECURE}=1 to accept \
                 plaintext beyond this host)"
            ))
        })
    }

    /// Sets the root actor's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Turns the low-latency mode on for the whole tree: out of work, each
    /// actor's thread polls its channels for up to `spin` before it sleeps
    /// (see [`Config::low_latency`](Config#structfield.low_latency)).
    /// [`run_with`](crate::run_with) fails with [`Error::Config`] for a
    /// `spin` above [`MAX_SPIN`](crate::MAX_SPIN).
    pub fn low_latency(mut self, spin: Duration) -> Self {
        self.low_latency = Some(spin);
        self
    }

    /// Sets the log filter for the whole tree.
    pub fn log(mut self, filter: impl Into<String>) -> Self {
        self.log = Some(filter.into());
        self
    }

    /// Sets the grace periods used when cancelling actors: after the cancel
    /// request, and after SIGTERM.
    pub fn grace(mut self, cancel_grace: Duration, kill_grace: Duration) -> Self {
        self.cancel_grace = cancel_grace;
        self.kill_grace = kill_grace;
        self
    }

    /// Sets how long a connecting peer may take to finish the handshake.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets how long a spawned child may take to connect back.
    pub fn with_spawn_timeout(mut self, timeout: Duration) -> Self {
        self.spawn_timeout = timeout;
        self
    }

    /// The longest an orderly teardown of one actor can take before SIGKILL.
    pub(crate) fn teardown_bound(&self) -> Duration {
        self.cancel_grace + self.kill_grace + Duration::from_secs(1)
    }
}

/// Whether a value of [`ENV_ARBITER`] names etcd rather than an arbiter.
fn is_etcd_url(value: &str) -> bool {
    let v = value.trim();
    v.starts_with("etcd://") || v.starts_with("etcds://")
}

#[cfg(feature = "etcd")]
fn with_etcd_url(c: Config, url: &str) -> Result<Config> {
    Ok(c.etcd(crate::EtcdConfig::from_env(url)?))
}

#[cfg(not(feature = "etcd"))]
fn with_etcd_url(_: Config, url: &str) -> Result<Config> {
    Err(Error::Config(format!(
        "{ENV_ARBITER}={} keeps the registry in etcd, but this program was built without procactor's \
         `etcd` cargo feature: build it with `features = [\"etcd\"]` on procactor (or \
         `--features procactor/etcd`), or point {ENV_ARBITER} at an arbiter",
        url.trim()
    )))
}

/// What a parent sends its new child in the `Init` message.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct ChildInit {
    pub log: Option<String>,
    pub token: Option<String>,
    pub cancel_grace_ms: u64,
    pub kill_grace_ms: u64,
    pub spawn_timeout_ms: u64,
    pub handshake_timeout_ms: u64,
    pub peer_timeout_ms: u64,
    /// The child runs one main call and exits when it returns.
    pub main: bool,
    /// When set, only these functions may be called in the child.
    pub expose: Option<Vec<String>>,
    /// The actor-local state's initial value, a msgpack document.
    pub state: Option<serde_bytes::ByteBuf>,
    /// The arbiter the tree uses, if any.
    pub arbiter: Option<Addr>,
    /// The etcd registry the tree uses instead of an arbiter, if any.
    #[cfg(feature = "etcd")]
    pub etcd: Option<crate::EtcdConfig>,
    /// Where the child listens (the parent's host, port 0).
    pub bind: Addr,
    pub insecure_non_loopback: bool,
}

impl ChildInit {
    pub(crate) fn new(
        config: &Config,
        main: bool,
        expose: Option<Vec<String>>,
        state: Option<Vec<u8>>,
        arbiter: Option<Addr>,
    ) -> Self {
        let ms = |d: Duration| d.as_millis().try_into().unwrap_or(u64::MAX);
        ChildInit {
            log: config.log.clone(),
            token: config.token.as_ref().map(Secret::to_hex),
            cancel_grace_ms: ms(config.cancel_grace),
            kill_grace_ms: ms(config.kill_grace),
            spawn_timeout_ms: ms(config.spawn_timeout),
            handshake_timeout_ms: ms(config.handshake_timeout),
            peer_timeout_ms: ms(config.peer_timeout),
            main,
            expose,
            state: state.map(serde_bytes::ByteBuf::from),
            arbiter,
            #[cfg(feature = "etcd")]
            etcd: config.etcd.clone(),
            bind: match &config.bind {
                Addr::Tcp { host, .. } => Addr::Tcp { host: host.clone(), port: 0 },
                Addr::Unix(_) => Addr::loopback(0),
            },
            insecure_non_loopback: config.insecure_non_loopback,
        }
    }

    /// The child's configuration; `tls` is what the child loaded from the
    /// environment its parent gave it.
    pub(crate) fn config(&self, name: &str, tls: Option<TlsConfig>) -> Config {
        Config {
            name: name.to_owned(),
            log: self.log.clone(),
            bind: self.bind.clone(),
            tls,
            insecure_non_loopback: self.insecure_non_loopback,
            threads: 1,
            // The child's runtime read it from the environment its parent gave it.
            low_latency: crate::low_latency::from_env().unwrap_or(None),
            token: self.token.as_deref().and_then(Secret::from_hex),
            arbiter: self.arbiter.clone().unwrap_or_else(|| Addr::loopback(1616)),
            embed_arbiter: false,
            private_arbiter: false,
            #[cfg(feature = "etcd")]
            etcd: self.etcd.clone(),
            cancel_grace: Duration::from_millis(self.cancel_grace_ms),
            kill_grace: Duration::from_millis(self.kill_grace_ms),
            spawn_timeout: Duration::from_millis(self.spawn_timeout_ms),
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            peer_timeout: Duration::from_millis(self.peer_timeout_ms),
            // Children inherit the environment; the root already refused a bad value.
            admission: AdmissionConfig::from_env().unwrap_or_default(),
        }
    }
}

/// This user's secret at [`default_token_path`](crate::default_token_path),
/// created on first use: what a tree with neither `ACTOR_TOKEN` nor TLS
/// requires of every peer that is not its own child. A client that talks to
/// such a tree from outside (over `actor_transport::connect` or an arbiter
/// client) passes it as its secret.
///
/// # Errors
///
/// [`Error::Config`] naming the file, if it cannot be created or read, or is
/// not private to this user.
pub fn default_token() -> Result<Secret> {
    let path = actor_transport::default_token_path();
    actor_transport::load_or_create_token(&path).map_err(|e| {
        Error::Config(format!(
            "no {ENV_TOKEN} is set, and the per-user secret {} cannot be used: {e}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zero (or tiny) peer timeout set in code is refused like one set in
    /// the environment: its heartbeat would spin and drop every live peer.
    #[test]
    fn a_peer_timeout_below_the_minimum_is_refused() {
        let mut c = Config::default();
        assert!(c.check().is_ok());
        for short in [Duration::ZERO, MIN_PEER_TIMEOUT - Duration::from_nanos(1)] {
            c.peer_timeout = short;
            match c.check() {
                Err(Error::Config(m)) => assert!(m.contains("peer timeout"), "{m}"),
                other => panic!("{short:?}: {other:?}"),
            }
        }
        c.peer_timeout = MIN_PEER_TIMEOUT;
        assert!(c.check().is_ok());
    }

    #[test]
    fn etcd_addresses_are_told_from_arbiter_addresses() {
        assert!(is_etcd_url(" etcd://h:2379") && is_etcd_url("etcds://h:2379"));
        assert!(!is_etcd_url("tcp://h:2379") && !is_etcd_url(ARBITER_PRIVATE));
    }

    #[cfg(not(feature = "etcd"))]
    #[test]
    fn an_etcd_address_without_the_feature_names_the_feature() {
        let err = with_etcd_url(Config::default(), "etcd://h:2379").err().map(|e| e.to_string());
        assert!(err.as_deref().is_some_and(|e| e.contains("`etcd` cargo feature")), "{err:?}");
    }

    #[cfg(feature = "etcd")]
    #[test]
    fn an_etcd_address_puts_the_registry_in_etcd() {
        let c = with_etcd_url(Config::default(), "etcd://h:2379").expect("parses");
        assert_eq!(c.etcd.map(|e| e.url()).as_deref(), Some("etcd://h:2379"));
        assert!(
            Config::default()
                .etcd(crate::EtcdConfig::parse("etcd://h:1").expect("parses"))
                .arbiter(Addr::loopback(1))
                .etcd
                .is_none()
        );
    }
}
