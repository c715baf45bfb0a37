//! Three hosts, made of network namespaces joined by veth pairs: the arbiter
//! daemon on host A, a standalone actor on host B, a caller on host C, all
//! over mutual TLS (B and C reach each other only through A, which routes).
//! Needs root (to create namespaces); without it the test says so and skips.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Tree;
use nix::sys::signal::Signal;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};

const BOUND: Duration = Duration::from_secs(60);

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The three namespaces; deleted on drop, even when the test fails.
struct Hosts {
    names: [String; 3],
}

impl Hosts {
    fn create() -> Result<Hosts, String> {
        let id = std::process::id() % 100_000;
        let names = [format!("actA{id}"), format!("actB{id}"), format!("actC{id}")];
        let hosts = Hosts { names: names.clone() };
        let [a, b, c] = &names;
        for n in &names {
            ip(&["netns", "add", n])?;
        }
        let (ab, ba, ac, ca) = (format!("ab{id}"), format!("ba{id}"), format!("ac{id}"), format!("ca{id}"));
        ip(&["link", "add", &ab, "netns", a, "type", "veth", "peer", "name", &ba, "netns", b])?;
        ip(&["link", "add", &ac, "netns", a, "type", "veth", "peer", "name", &ca, "netns", c])?;
        for (ns, dev, addr) in [
            (a, &ab, "10.201.1.1/24"),
            (b, &ba, "10.201.1.2/24"),
            (a, &ac, "10.201.2.1/24"),
            (c, &ca, "10.201.2.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        for n in &names {
            ip(&["-n", n, "link", "set", "lo", "up"])?;
        }
        ip(&["-n", b, "route", "add", "default", "via", "10.201.1.1"])?;
        ip(&["-n", c, "route", "add", "default", "via", "10.201.2.1"])?;
        let fwd = Command::new("ip")
            .args(["netns", "exec", a, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
            .status()
            .map_err(|e| e.to_string())?;
        if !fwd.success() {
            return Err("cannot enable forwarding on host A".into());
        }
        Ok(hosts)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = ip(&["netns", "del", n]);
        }
    }
}

struct Pki {
    dir: PathBuf,
    ca: rcgen::Certificate,
    key: KeyPair,
}

impl Pki {
    fn new(dir: PathBuf) -> Pki {
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
    fn host(&self, name: &str, ips: &[Ipv4Addr]) -> Vec<(String, String)> {
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

fn on_host(ns: &str, program: &Path, args: &[&str], env: &[(String, String)]) -> Tree {
    let mut full = vec!["netns", "exec", ns];
    let program = program.to_string_lossy().into_owned();
    full.push(&program);
    full.extend_from_slice(args);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Tree::start_program(Path::new("ip"), &full, &env)
}

fn registry(ns: &str, env: &[(String, String)]) -> String {
    let out = on_host(ns, &common::example("standalone_actor"), &["list"], env).finish(BOUND);
    assert!(out.status.success(), "list: {out:?}");
    out.stdout
}

#[test]
fn an_actor_on_one_host_is_found_and_called_from_another_over_mutual_tls() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: creating network namespaces needs root");
        return;
    }
    let hosts = match Hosts::create() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("SKIPPED: this machine does not allow network namespaces here: {e}");
            return;
        }
    };
    let [a, b, c] = hosts.names.clone();
    let dir = std::env::temp_dir().join(format!("actor-multihost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pki = Pki::new(dir.clone());
    let arbiter_addr = "tcp://10.201.1.1:7616".to_string();
    let mut env_a = pki.host("host-a", &[Ipv4Addr::new(10, 201, 1, 1), Ipv4Addr::new(10, 201, 2, 1)]);
    let mut env_b = pki.host("host-b", &[Ipv4Addr::new(10, 201, 1, 2)]);
    let mut env_c = pki.host("host-c", &[Ipv4Addr::new(10, 201, 2, 2)]);
    env_a.push(("ACTOR_LOG".into(), "warn".into()));
    for (env, bind) in [(&mut env_b, "tcp://10.201.1.2:0"), (&mut env_c, "tcp://10.201.2.2:0")] {
        env.push(("ACTOR_ARBITER".into(), arbiter_addr.clone()));
        env.push(("ACTOR_BIND".into(), bind.into()));
    }

    let mut arbiter = on_host(&a, &common::binary("arbiter"), &["--bind", &arbiter_addr], &env_a);
    arbiter.wait_for_line("arbiter listening on", BOUND);

    let mut server = on_host(&b, &common::example("standalone_actor"), &["serve"], &env_b);
    server.wait_for_line("calculator serving", BOUND);

    let call = on_host(&c, &common::example("standalone_actor"), &["call", "6", "7"], &env_c).finish(BOUND);
    assert!(call.status.success(), "{call:?}");
    assert!(call.stdout.contains("6 * 7 = 42 (computed by `calculator#"), "{call:?}");
    let listed = registry(&c, &env_c);
    assert!(listed.contains("registered: calculator#") && listed.contains("tcp://10.201.1.2:"), "{listed}");

    // A caller without a certificate from the cluster's CA gets nowhere.
    let mut plain = env_c.iter().filter(|(k, _)| !k.starts_with("ACTOR_TLS")).cloned().collect::<Vec<_>>();
    plain.push(("ACTOR_INSECURE".into(), "1".into()));
    let refused =
        on_host(&c, &common::example("standalone_actor"), &["call", "1", "2"], &plain).finish(BOUND);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");

    server.signal(Signal::SIGKILL);
    server.finish(BOUND);
    let deadline = Instant::now() + Duration::from_secs(10);
    while registry(&c, &env_c).contains("calculator#") {
        assert!(Instant::now() < deadline, "the killed actor is still registered");
        std::thread::sleep(Duration::from_millis(100));
    }
    arbiter.signal(Signal::SIGTERM);
    let out = arbiter.finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    drop(hosts);
    let _ = std::fs::remove_dir_all(dir);
}
