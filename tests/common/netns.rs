//! Three hosts made of network namespaces joined by veth pairs, for tests
//! that cross hosts: host 1 routes between host 2 (10.N.1.0/24) and host 3
//! (10.N.2.0/24), so 2 and 3 reach each other only through 1, and taking one
//! of host 1's links down partitions a host from the rest. With a private
//! CA, so programs on each host speak mutual TLS. Needs root; `create` says
//! why it cannot, and callers skip.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};

use super::Tree;

/// Runs `ip ARGS`.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = super::output_of(Command::new("ip").args(args)).map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The three namespaces; deleted on drop, even when the test fails.
pub struct Hosts {
    /// The namespaces of hosts 1, 2 and 3.
    pub names: [String; 3],
    /// Host 1's ends of its links to hosts 2 and 3.
    pub links: [String; 2],
    /// The second octet of every address.
    net: u8,
}

impl Hosts {
    /// Creates three hosts named `{prefix}{1,2,3}-{unique}` on 10.`net`.x.x.
    ///
    /// # Errors
    ///
    /// Why not: not root, or the kernel refuses namespaces here.
    pub fn create(prefix: &str, net: u8) -> Result<Hosts, String> {
        if !nix::unistd::Uid::effective().is_root() {
            return Err("creating network namespaces needs root".into());
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!("{}{}", std::process::id() % 100_000, N.fetch_add(1, Ordering::Relaxed));
        let names = [1, 2, 3].map(|i| format!("{prefix}{i}-{id}"));
        let links = [format!("l2-{id}"), format!("l3-{id}")];
        let hosts = Hosts { names: names.clone(), links: links.clone(), net };
        let [a, b, c] = &names;
        for n in &names {
            ip(&["netns", "add", n])?;
        }
        let (b_end, c_end) = (format!("r2-{id}"), format!("r3-{id}"));
        ip(&["link", "add", &links[0], "netns", a, "type", "veth", "peer", "name", &b_end, "netns", b])?;
        ip(&["link", "add", &links[1], "netns", a, "type", "veth", "peer", "name", &c_end, "netns", c])?;
        for (ns, dev, addr) in [
            (a, &links[0], hosts.cidr(1, 1)),
            (b, &b_end, hosts.cidr(1, 2)),
            (a, &links[1], hosts.cidr(2, 1)),
            (c, &c_end, hosts.cidr(2, 2)),
        ] {
            ip(&["-n", ns, "addr", "add", &addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        for n in &names {
            ip(&["-n", n, "link", "set", "lo", "up"])?;
        }
        ip(&["-n", b, "route", "add", "default", "via", &hosts.addr(1, 1).to_string()])?;
        ip(&["-n", c, "route", "add", "default", "via", &hosts.addr(2, 1).to_string()])?;
        ip(&["netns", "exec", a, "sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        Ok(hosts)
    }

    fn addr(&self, subnet: u8, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net, subnet, host)
    }

    fn cidr(&self, subnet: u8, host: u8) -> String {
        format!("{}/24", self.addr(subnet, host))
    }

    /// The addresses of host `n` (1, 2 or 3).
    pub fn ips(&self, n: usize) -> Vec<Ipv4Addr> {
        match n {
            1 => vec![self.addr(1, 1), self.addr(2, 1)],
            2 => vec![self.addr(1, 2)],
            _ => vec![self.addr(2, 2)],
        }
    }

    /// Host `n`'s first address.
    pub fn ip_of(&self, n: usize) -> Ipv4Addr {
        self.ips(n)[0]
    }

    /// Host `n`'s namespace.
    pub fn ns(&self, n: usize) -> &str {
        &self.names[n - 1]
    }

    /// Takes host 1's link to host `n` (2 or 3) down: `n` is cut off.
    pub fn cut(&self, n: usize) -> Result<(), String> {
        ip(&["-n", &self.names[0], "link", "set", &self.links[n - 2], "down"])
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = ip(&["netns", "del", n]);
        }
    }
}

/// A private CA, writing certificates for hosts into `dir`.
pub struct Pki {
    dir: PathBuf,
    ca: rcgen::Certificate,
    key: KeyPair,
}

impl Pki {
    pub fn new(dir: PathBuf) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, "test cluster CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let ca = params.self_signed(&key).expect("CA");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write CA");
        Pki { dir, ca, key }
    }

    /// Writes a certificate and key for a host with these IPs; returns the
    /// environment that points a program at them.
    pub fn host(&self, name: &str, ips: &[Ipv4Addr]) -> Vec<(String, String)> {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names = ips.iter().map(|ip| SanType::IpAddress(IpAddr::V4(*ip))).collect();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.ca, &self.key).expect("sign");
        let (c, k) = (self.dir.join(format!("{name}.pem")), self.dir.join(format!("{name}.key")));
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        let s = |p: &Path| p.to_string_lossy().into_owned();
        vec![
            ("ACTOR_TLS_CA".into(), s(&self.dir.join("ca.pem"))),
            ("ACTOR_TLS_CERT".into(), s(&c)),
            ("ACTOR_TLS_KEY".into(), s(&k)),
        ]
    }
}

/// Starts `program` with `args` and `env` inside namespace `ns`.
pub fn on_host(ns: &str, program: &Path, args: &[&str], env: &[(String, String)]) -> Tree {
    let mut full = vec!["netns", "exec", ns];
    let program = program.to_string_lossy().into_owned();
    full.push(&program);
    full.extend_from_slice(args);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Tree::start_program(Path::new("ip"), &full, &env)
}
