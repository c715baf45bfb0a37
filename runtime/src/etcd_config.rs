//! Where the registry is when it lives in etcd: the `etcd://` and `etcds://`
//! values of `ACTOR_ARBITER`, and the `ACTOR_ETCD_*` options beside them.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Environment variable setting the lease TTL of each registration in
/// whole seconds ([`EtcdConfig::lease_ttl`], default 5).
pub const ENV_ETCD_LEASE_TTL: &str = "ACTOR_ETCD_LEASE_TTL";
/// Environment variable setting the key prefix of the registry
/// ([`EtcdConfig::prefix`], default [`DEFAULT_ETCD_PREFIX`]).
pub const ENV_ETCD_PREFIX: &str = "ACTOR_ETCD_PREFIX";
/// Environment variable naming the PEM file of the CA that signed the etcd
/// members' certificates; required with `etcds://`.
pub const ENV_ETCD_CA: &str = "ACTOR_ETCD_CA";
/// Environment variable naming the PEM certificate this program presents to
/// etcd (with [`ENV_ETCD_KEY`]), for members that require client certificates.
pub const ENV_ETCD_CERT: &str = "ACTOR_ETCD_CERT";
/// Environment variable naming the PEM private key of [`ENV_ETCD_CERT`].
pub const ENV_ETCD_KEY: &str = "ACTOR_ETCD_KEY";

/// The key prefix under which actors register unless configured otherwise.
pub const DEFAULT_ETCD_PREFIX: &str = "/procactor/actors/";

/// The longest lease TTL accepted: past an hour a dead actor would linger
/// in the registry for longer than anyone would wait.
const MAX_LEASE_TTL_SECS: u64 = 3600;
/// The most endpoints one address may list.
const MAX_ENDPOINTS: usize = 64;
/// The longest prefix accepted, so that every key stays far below etcd's
/// request limits.
const MAX_PREFIX_LEN: usize = 256;

/// The registry in etcd: where its members are, how to reach them, and how
/// registrations behave. Every actor of the tree registers under
/// [`EtcdConfig::prefix`] with a lease of [`EtcdConfig::lease_ttl`] that it
/// keeps alive, so it leaves the registry at most one TTL after it dies or
/// loses etcd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EtcdConfig {
    /// The members' client endpoints, `host:port` each.
    pub endpoints: Vec<String>,
    /// Whether to speak TLS to the members (`etcds://`).
    pub tls: bool,
    /// The CA that signed the members' certificates (PEM), with TLS.
    pub ca: Option<PathBuf>,
    /// This program's certificate and key (PEM), for members that require
    /// client certificates.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The prefix of every key of the registry (default
    /// [`DEFAULT_ETCD_PREFIX`]); trees with different prefixes do not see
    /// each other.
    pub prefix: String,
    /// How long a registration outlives its actor's last keep-alive: the
    /// bound on how long a dead actor or a partitioned host stays findable
    /// (default 5 s; whole seconds, as etcd counts them).
    pub lease_ttl: Duration,
    /// The bound on each request to etcd (default 5 s).
    pub request_timeout: Duration,
}

impl EtcdConfig {
    /// Parses `etcd://host:port[,host:port...]` (or `etcds://` for TLS) with
    /// the defaults for everything else.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming what is wrong: another scheme, no endpoint,
    /// an endpoint that is not `host:port`, or a path after the endpoints.
    pub fn parse(url: &str) -> Result<EtcdConfig> {
        let url = url.trim();
        let (tls, rest) = if let Some(rest) = url.strip_prefix("etcds://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("etcd://") {
            (false, rest)
        } else {
            return Err(Error::Config(format!("`{url}` is not an etcd address (etcd://host:port,...)")));
        };
        let endpoints = rest
            .split(',')
            .map(|e| check_endpoint(e.trim()).map_err(|why| Error::Config(format!("`{url}`: {why}"))))
            .collect::<Result<Vec<_>>>()?;
        if endpoints.len() > MAX_ENDPOINTS {
            return Err(Error::Config(format!("`{url}` lists more than {MAX_ENDPOINTS} endpoints")));
        }
        Ok(EtcdConfig {
            endpoints,
            tls,
            ca: None,
            identity: None,
            prefix: DEFAULT_ETCD_PREFIX.into(),
            lease_ttl: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
        })
    }

    /// As [`EtcdConfig::parse`], then the `ACTOR_ETCD_*` options from the
    /// environment.
    ///
    /// # Errors
    ///
    /// As [`EtcdConfig::parse`], and [`Error::Config`] for a bad option: a
    /// TTL that is not a whole number of seconds from 1 to 3600, a prefix
    /// that is empty, too long or not ending in `/`, `etcds://` without
    /// [`ENV_ETCD_CA`], or only one of [`ENV_ETCD_CERT`] and [`ENV_ETCD_KEY`].
    pub fn from_env(url: &str) -> Result<EtcdConfig> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut c = EtcdConfig::parse(url)?;
        if let Some(ttl) = var(ENV_ETCD_LEASE_TTL) {
            c = c.with_lease_ttl(parse_ttl(&ttl)?)?;
        }
        if let Some(prefix) = var(ENV_ETCD_PREFIX) {
            c = c.with_prefix(prefix)?;
        }
        c.ca = var(ENV_ETCD_CA).map(PathBuf::from);
        c.identity = match (var(ENV_ETCD_CERT), var(ENV_ETCD_KEY)) {
            (Some(cert), Some(key)) => Some((cert.into(), key.into())),
            (None, None) => None,
            _ => {
                return Err(Error::Config(format!(
                    "set both {ENV_ETCD_CERT} and {ENV_ETCD_KEY}, or neither"
                )));
            }
        };
        c.check_tls()?;
        Ok(c)
    }

    /// Sets the lease TTL.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] unless it is a whole number of seconds from 1 to
    /// 3600 (etcd counts leases in seconds).
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Result<EtcdConfig> {
        if ttl.subsec_nanos() != 0 || !(1..=MAX_LEASE_TTL_SECS).contains(&ttl.as_secs()) {
            return Err(Error::Config(format!(
                "the etcd lease TTL must be a whole number of seconds from 1 to {MAX_LEASE_TTL_SECS}, not {ttl:?}"
            )));
        }
        self.lease_ttl = ttl;
        Ok(self)
    }

    /// Sets the key prefix.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if it is empty, longer than 256 bytes, or does not
    /// end in `/` (which keeps one prefix from being the start of another).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Result<EtcdConfig> {
        let prefix = prefix.into();
        if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN || !prefix.ends_with('/') {
            return Err(Error::Config(format!(
                "the etcd key prefix must end in `/` and be 1 to {MAX_PREFIX_LEN} bytes long, not `{prefix}`"
            )));
        }
        self.prefix = prefix;
        Ok(self)
    }

    /// Sets the TLS files: the CA of the members and, optionally, this
    /// program's certificate and key; turns TLS on.
    pub fn with_tls(mut self, ca: PathBuf, identity: Option<(PathBuf, PathBuf)>) -> EtcdConfig {
        self.tls = true;
        self.ca = Some(ca);
        self.identity = identity;
        self
    }

    /// Sets the bound on each request to etcd.
    pub fn with_request_timeout(mut self, timeout: Duration) -> EtcdConfig {
        self.request_timeout = timeout;
        self
    }

    /// The address as given: `etcd://` or `etcds://` and the endpoints.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "etcds" } else { "etcd" };
        format!("{scheme}://{}", self.endpoints.join(","))
    }

    /// Refuses TLS files without TLS, and TLS without a CA.
    fn check_tls(&self) -> Result<()> {
        if self.tls && self.ca.is_none() {
            return Err(Error::Config(format!(
                "{} speaks TLS: set {ENV_ETCD_CA} to the CA that signed the etcd members' certificates",
                self.url()
            )));
        }
        if !self.tls && (self.ca.is_some() || self.identity.is_some()) {
            return Err(Error::Config(format!(
                "{ENV_ETCD_CA}, {ENV_ETCD_CERT} and {ENV_ETCD_KEY} apply to etcds:// only, not to {}",
                self.url()
            )));
        }
        Ok(())
    }
}

fn parse_ttl(text: &str) -> Result<Duration> {
    text.trim().parse::<u64>().map(Duration::from_secs).map_err(|_| {
        Error::Config(format!("{ENV_ETCD_LEASE_TTL} must be a whole number of seconds, not `{text}`"))
    })
}

/// `host:port`, with an IPv6 host in brackets; returns it as given.
fn check_endpoint(endpoint: &str) -> std::result::Result<String, String> {
    let (host, port) =
        endpoint.rsplit_once(':').ok_or_else(|| format!("the endpoint `{endpoint}` is not host:port"))?;
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
    };
    if !host_ok {
        return Err(format!("the endpoint `{endpoint}` has no valid host (a path after it is not accepted)"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(endpoint.to_owned()),
        _ => Err(format!("the endpoint `{endpoint}` has no valid port")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_the_scheme_are_parsed() {
        let c = EtcdConfig::parse("etcd://127.0.0.1:2379, etcd-2:2379,[::1]:2380").expect("parses");
        assert_eq!(c.endpoints, ["127.0.0.1:2379", "etcd-2:2379", "[::1]:2380"]);
        assert!(!c.tls);
        assert_eq!(c.url(), "etcd://127.0.0.1:2379,etcd-2:2379,[::1]:2380");
        assert!(EtcdConfig::parse("etcds://h:1").expect("parses").tls);
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        for (bad, why) in [
            ("etcd://", "not host:port"),
            ("etcd://h", "not host:port"),
            ("etcd://h:0", "no valid port"),
            ("etcd://h:99999", "no valid port"),
            ("etcd://h:1/prefix", "no valid port"),
            ("etcd://a/b:1", "no valid host"),
            ("etcd://:1", "no valid host"),
            ("tcp://h:1", "not an etcd address"),
        ] {
            let err = EtcdConfig::parse(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn options_are_checked() {
        let c = EtcdConfig::parse("etcd://h:1").expect("parses");
        assert!(c.clone().with_lease_ttl(Duration::from_secs(0)).is_err());
        assert!(c.clone().with_lease_ttl(Duration::from_millis(1500)).is_err());
        assert_eq!(
            c.clone().with_lease_ttl(Duration::from_secs(2)).map(|c| c.lease_ttl).ok(),
            Some(Duration::from_secs(2))
        );
        assert!(c.clone().with_prefix("no-slash").is_err());
        assert!(c.clone().with_prefix("").is_err());
        assert!(c.clone().with_prefix("/t/".repeat(100)).is_err());
        assert!(parse_ttl("2.5").is_err());
        assert!(c.check_tls().is_ok());
        assert!(EtcdConfig::parse("etcds://h:1").expect("parses").check_tls().is_err());
        let with_ca = c.with_tls("ca.pem".into(), None);
        assert!(with_ca.tls && with_ca.check_tls().is_ok());
    }
}
