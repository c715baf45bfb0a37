//! Mutual TLS over real loopback sockets: certificates are made at test time
//! with rcgen (and, when it is installed, with the `openssl` commands documented
//! in `src/tls.rs`). Every wait is bounded.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actor_transport::handshake::{accept, connect, connect_on};
use actor_transport::{
    Addr, Auth, CallId, Channel, ChannelConfig, HandshakeConfig, HandshakeError, Listener, Msg, Secret,
    Stream, TlsConfig, TlsError, Uid, connect_tls,
};
use bytes::Bytes;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// Upper bound for every wait in these tests.
const LIMIT: Duration = Duration::from_secs(10);
/// The handshake timeout of both sides.
const HANDSHAKE: Duration = Duration::from_secs(3);

async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(LIMIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {LIMIT:?}: {what}"),
    }
}

fn hs(name: &str) -> HandshakeConfig {
    HandshakeConfig { uid: Uid::new(name), timeout: HANDSHAKE, channel: ChannelConfig::default() }
}

// ---------------------------------------------------------------------------
// Certificates.

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign the CA");
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf for both server and client use, valid for 127.0.0.1 and localhost.
    fn leaf(&self, name: &str) -> Leaf {
        self.leaf_with(name, |_| {})
    }

    fn leaf_with(&self, name: &str, tweak: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("leaf params");
        params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        tweak(&mut params);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("sign the leaf");
        Leaf { cert: cert.pem(), key: key.serialize_pem() }
    }

    fn config(&self, leaf: &Leaf) -> TlsConfig {
        TlsConfig::from_pem(self.pem().as_bytes(), leaf.cert.as_bytes(), leaf.key.as_bytes())
            .expect("a valid TLS configuration")
    }
}

struct Leaf {
    cert: String,
    key: String,
}

/// A rustls client that trusts `trust` and presents `present` (or nothing),
/// bypassing [`TlsConfig`]'s own checks, to play a misconfigured or hostile peer.
fn raw_client(trust: &Ca, present: Option<&Leaf>) -> Arc<ClientConfig> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(trust.cert.der().clone()).expect("add root");
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match present {
        Some(leaf) => {
            let chain = CertificateDer::pem_slice_iter(leaf.cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("leaf PEM");
            let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).expect("key PEM");
            builder.with_client_auth_cert(chain, key).expect("client cert")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Connects to `addr` with a raw rustls client and runs the actor handshake.
async fn raw_tls_connect(addr: &Addr, client: Arc<ClientConfig>) -> Result<(Channel, Uid), HandshakeError> {
    let Addr::Tcp { host, port } = addr else { panic!("not tcp") };
    let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await.expect("tcp connect");
    let name = ServerName::try_from(host.clone()).expect("server name");
    let tls = match tokio_rustls::TlsConnector::from(client).connect(name, tcp).await {
        Ok(tls) => tls,
        // The handshake itself may already fail; report it like a channel error.
        Err(e) => return Err(HandshakeError::Connect { addr: addr.clone(), source: e }),
    };
    let channel = Channel::from_stream(Stream::Tls(Box::new(tls.into())), &ChannelConfig::default());
    connect_on(channel, &hs("raw-client"), None).await
}

// ---------------------------------------------------------------------------
// Servers.

async fn bind() -> (Listener, Addr) {
    let listener = Listener::bind(&Addr::loopback(0)).await.expect("bind loopback port 0");
    let addr = listener.local_addr().clone();
    (listener, addr)
}

/// Where a server's attempt ended.
enum ServerEnd {
    /// TLS refused the peer, with this message.
    TlsRefused(std::io::Error),
    /// The actor handshake failed.
    Handshake(HandshakeError),
    /// Admitted this peer; the channel is returned.
    Admitted(#[allow(dead_code)] Channel, Uid),
}

/// Accepts one connection; upgrades it with `tls` if given, then runs the actor
/// handshake requiring `secret` if given.
async fn serve_one(listener: Listener, tls: Option<TlsConfig>, secret: Option<Secret>) -> ServerEnd {
    let (stream, _peer) = listener.accept().await.expect("accept");
    let stream = match tls {
        Some(tls) => match tls.accept(stream, HANDSHAKE).await {
            Ok(s) => {
                assert!(s.is_tls());
                s
            }
            Err(e) => return ServerEnd::TlsRefused(e),
        },
        None => stream,
    };
    let policy = move |_: &Uid| match secret {
        Some(s) => Auth::Require(s),
        None => Auth::Open,
    };
    match accept(stream, &hs("server"), policy).await {
        Ok((channel, peer)) => ServerEnd::Admitted(channel, peer),
        Err(e) => ServerEnd::Handshake(e),
    }
}

impl std::fmt::Debug for ServerEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerEnd::TlsRefused(e) => write!(f, "TlsRefused({e})"),
            ServerEnd::Handshake(e) => write!(f, "Handshake({e})"),
            ServerEnd::Admitted(_, peer) => write!(f, "Admitted({peer})"),
        }
    }
}

/// The error of a connect that must fail.
fn refused(res: Result<(Channel, Uid), HandshakeError>, what: &str) -> HandshakeError {
    match res {
        Ok((_, peer)) => panic!("{what}: admitted by {peer}"),
        Err(e) => e,
    }
}

fn yield_msg(cid: CallId, text: &str) -> Msg {
    Msg::Yield { cid, value: Bytes::copy_from_slice(text.as_bytes()) }
}

// ---------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn mutual_tls_carries_messages_both_ways_by_ip_and_by_name() {
    let ca = Ca::new("test CA");
    let server_tls = ca.config(&ca.leaf("server"));
    let client_tls = ca.config(&ca.leaf("client"));
    let secret = Secret::random();

    let (listener, ip_addr) = bind().await;
    let Addr::Tcp { port, .. } = ip_addr else { panic!("not tcp") };
    let name_addr = Addr::Tcp { host: "localhost".into(), port };
    let server_secret = secret.clone();
    let server = tokio::spawn(async move {
        let mut peers = Vec::new();
        for _ in 0..2 {
            let (stream, _) = listener.accept().await.expect("accept");
            let stream = server_tls.accept(stream, HANDSHAKE).await.expect("TLS accept");
            let secret = server_secret.clone();
            let (mut ch, peer) = accept(stream, &hs("server"), move |_| Auth::Require(secret))
                .await
                .expect("actor handshake over TLS");
            let got = ch.recv().await.expect("recv").expect("a message");
            assert!(matches!(&got, Msg::Yield { cid: 1, value } if &value[..] == b"ping"), "{got:?}");
            ch.send(&yield_msg(2, "pong")).await.expect("send pong");
            // Stay until the client hangs up (a TLS close_notify, then EOF).
            assert!(ch.recv().await.expect("clean end").is_none());
            peers.push(peer);
        }
        peers
    });

    for addr in [&ip_addr, &name_addr] {
        let (mut ch, server_uid) =
            within("connect_tls", connect_tls(addr, &hs("client"), Some(&secret), &client_tls))
                .await
                .unwrap_or_else(|e| panic!("connect_tls to {addr}: {e}"));
        assert_eq!(server_uid.name, "server");
        ch.send(&yield_msg(1, "ping")).await.expect("send ping");
        let got = within("pong", ch.recv()).await.expect("recv").expect("a message");
        assert!(matches!(&got, Msg::Yield { cid: 2, value } if &value[..] == b"pong"), "{got:?}");
        within("close", ch.sender().close()).await;
    }
    let peers = within("server", server).await.expect("server task");
    assert_eq!(peers.len(), 2);
    assert!(peers.iter().all(|p| p.name == "client"), "{peers:?}");
}

/// Large payloads go to TLS without being copied into the write buffer
/// (vectored writes, see tests/shared_payloads.rs): interleaved with small
/// messages, all arrive whole and in order.
#[tokio::test]
async fn large_and_small_messages_interleave_over_tls() {
    let ca = Ca::new("test CA");
    let (server_tls, client_tls) = (ca.config(&ca.leaf("server")), ca.config(&ca.leaf("client")));
    let (listener, addr) = bind().await;
    let message = |i: usize| {
        let len = [10, 1024, 4096, 70_000][i % 4];
        Msg::Yield { cid: i as u64, value: Bytes::from(vec![i as u8; len]) }
    };
    let count = 200;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let stream = server_tls.accept(stream, HANDSHAKE).await.expect("TLS accept");
        let (ch, _) = accept(stream, &hs("server"), |_| Auth::Open).await.expect("actor handshake");
        for i in 0..count {
            ch.sender().send(&message(i)).await.expect("queued");
        }
        ch.sender().close().await;
    });
    let (mut ch, _) = within("connect_tls", connect_tls(&addr, &hs("client"), None, &client_tls))
        .await
        .expect("connect over TLS");
    for i in 0..count {
        let got = within("a message", ch.recv()).await.expect("recv");
        assert_eq!(got.as_ref(), Some(&message(i)), "message {i}");
    }
    assert!(within("the end", ch.recv()).await.expect("clean end").is_none());
    within("server", server).await.expect("server task");
}

#[tokio::test]
async fn a_client_certificate_from_an_untrusted_ca_is_refused_in_the_tls_handshake() {
    let ca = Ca::new("test CA");
    let rogue = Ca::new("rogue CA");
    let (listener, addr) = bind().await;
    let server = tokio::spawn(serve_one(listener, Some(ca.config(&ca.leaf("server"))), None));
    // Trusts the real CA (so it accepts the server) but presents a rogue leaf.
    let client = raw_client(&ca, Some(&rogue.leaf("intruder")));
    let res = within("rogue client", raw_tls_connect(&addr, client)).await;
    let err = refused(res, "a rogue client");
    eprintln!("rogue client sees: {err}");
    match within("server", server).await.expect("server task") {
        ServerEnd::TlsRefused(e) => {
            let text = e.to_string();
            eprintln!("server says: {text}");
            assert!(text.contains("not signed by a CA this node trusts"), "{text}");
        }
        other => panic!("expected a TLS refusal before the actor handshake, got {other:?}"),
    }
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_in_the_tls_handshake() {
    let ca = Ca::new("test CA");
    let (listener, addr) = bind().await;
    let server = tokio::spawn(serve_one(listener, Some(ca.config(&ca.leaf("server"))), None));
    let res = within("anonymous client", raw_tls_connect(&addr, raw_client(&ca, None))).await;
    let err = refused(res, "a client without a certificate");
    eprintln!("anonymous client sees: {err}");
    match within("server", server).await.expect("server task") {
        ServerEnd::TlsRefused(e) => {
            let text = e.to_string();
            eprintln!("server says: {text}");
            assert!(text.contains("presented no certificate"), "{text}");
        }
        other => panic!("expected a TLS refusal before the actor handshake, got {other:?}"),
    }
}

#[tokio::test]
async fn our_client_reports_a_refused_certificate_clearly() {
    // A node whose CA file trusts both CAs can build a valid config with a rogue
    // leaf; the server, trusting only the real CA, refuses it.
    let ca = Ca::new("test CA");
    let rogue = Ca::new("rogue CA");
    let both = format!("{}{}", ca.pem(), rogue.pem());
    let leaf = rogue.leaf("intruder");
    let client_tls = TlsConfig::from_pem(both.as_bytes(), leaf.cert.as_bytes(), leaf.key.as_bytes())
        .expect("config trusting both CAs");
    let (listener, addr) = bind().await;
    let server = tokio::spawn(serve_one(listener, Some(ca.config(&ca.leaf("server"))), None));
    let err = refused(
        within("rogue connect_tls", connect_tls(&addr, &hs("intruder"), None, &client_tls)).await,
        "a rogue client was admitted",
    );
    let text = err.to_string();
    eprintln!("rogue connect_tls sees: {text}");
    assert!(
        matches!(err, HandshakeError::Connect { .. }) && text.contains("refused our TLS certificate"),
        "{text}"
    );
    assert!(matches!(within("server", server).await.expect("server task"), ServerEnd::TlsRefused(_)));
}

#[tokio::test]
async fn a_server_certificate_from_an_untrusted_ca_or_for_another_host_is_refused() {
    let ca = Ca::new("test CA");
    let rogue = Ca::new("rogue CA");
    let client_tls = ca.config(&ca.leaf("client"));
    let other_host = ca.leaf_with("elsewhere", |p| {
        p.subject_alt_names = vec![SanType::DnsName("elsewhere.example".try_into().expect("dns name"))];
    });
    for (label, server_tls, expect) in [
        ("rogue server", rogue.config(&rogue.leaf("server")), "is not signed by a CA this node trusts"),
        ("wrong host", ca.config(&other_host), "does not name the host that was dialled"),
    ] {
        let (listener, addr) = bind().await;
        let server = tokio::spawn(serve_one(listener, Some(server_tls), None));
        let err = refused(
            within(label, connect_tls(&addr, &hs("client"), None, &client_tls)).await,
            "an untrusted server was accepted",
        );
        let text = err.to_string();
        eprintln!("{label}: {text}");
        assert!(matches!(err, HandshakeError::Connect { .. }) && text.contains(expect), "{label}: {text}");
        assert!(text.contains("the server's certificate"), "{label}: {text}");
        let end = within("server", server).await.expect("server task");
        assert!(matches!(end, ServerEnd::TlsRefused(_)), "{label}: {end:?}");
    }
}

#[tokio::test]
async fn a_plaintext_client_against_a_tls_listener_is_refused_on_both_sides() {
    let ca = Ca::new("test CA");
    let (listener, addr) = bind().await;
    let server = tokio::spawn(serve_one(listener, Some(ca.config(&ca.leaf("server"))), None));
    let err = refused(
        within("plaintext client", connect(&addr, &hs("plain"), None)).await,
        "a plaintext client was admitted by a TLS listener",
    );
    eprintln!("plaintext client sees: {err}");
    // The TLS alert read as a frame is recognised; a server that hangs up
    // before its alert arrives leaves only EOF. Either way: no hang.
    assert!(matches!(err, HandshakeError::PeerSpeaksTls | HandshakeError::Closed), "{err}");
    match within("server", server).await.expect("server task") {
        ServerEnd::TlsRefused(e) => {
            let text = e.to_string();
            eprintln!("server says: {text}");
            assert!(text.contains("does not speak TLS"), "{text}");
        }
        other => panic!("expected a TLS refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_silent_client_against_a_tls_listener_times_out() {
    let ca = Ca::new("test CA");
    let tls = ca.config(&ca.leaf("server"));
    let (listener, addr) = bind().await;
    let Addr::Tcp { host, port } = &addr else { panic!("not tcp") };
    let _silent = within("tcp connect", tokio::net::TcpStream::connect((host.as_str(), *port)))
        .await
        .expect("tcp connect");
    let (stream, _) = within("accept", listener.accept()).await.expect("accept");
    let err = within("TLS accept", tls.accept(stream, Duration::from_millis(200)))
        .await
        .expect_err("a silent peer passed the TLS handshake");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
}

#[tokio::test]
async fn a_tls_client_against_a_plaintext_listener_fails_cleanly() {
    let ca = Ca::new("test CA");
    let client_tls = ca.config(&ca.leaf("client"));
    let (listener, addr) = bind().await;
    let server = tokio::spawn(serve_one(listener, None, None));
    let err = refused(
        within("TLS client", connect_tls(&addr, &hs("client"), None, &client_tls)).await,
        "a TLS client passed a plaintext listener",
    );
    eprintln!("TLS client against plaintext sees: {err}");
    assert!(matches!(err, HandshakeError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("TLS handshake failed"), "{err}");
    let end = within("server", server).await.expect("server task");
    assert!(matches!(end, ServerEnd::Handshake(_)), "{end:?}");
}

#[tokio::test]
async fn a_wrong_token_over_tls_is_still_refused_by_the_actor_handshake() {
    let ca = Ca::new("test CA");
    let client_tls = ca.config(&ca.leaf("client"));
    let (listener, addr) = bind().await;
    let server =
        tokio::spawn(serve_one(listener, Some(ca.config(&ca.leaf("server"))), Some(Secret::random())));
    let err = refused(
        within("wrong token", connect_tls(&addr, &hs("client"), Some(&Secret::random()), &client_tls)).await,
        "a wrong token was admitted",
    );
    assert!(matches!(&err, HandshakeError::Refused { reason } if reason.contains("authentication")), "{err}");
    let end = within("server", server).await.expect("server task");
    assert!(matches!(end, ServerEnd::Handshake(HandshakeError::AuthFailed { .. })), "{end:?}");
}

#[tokio::test]
async fn tls_is_refused_for_unix_sockets() {
    let ca = Ca::new("test CA");
    let tls = ca.config(&ca.leaf("node"));
    let addr: Addr = "unix:///tmp/actor-tls-never-bound.sock".parse().expect("addr");
    let err = within("unix", Stream::connect_tls(&addr, HANDSHAKE, &tls)).await.expect_err("TLS over unix");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
}

#[test]
fn bad_configurations_are_reported_when_loading() {
    let ca = Ca::new("test CA");
    let rogue = Ca::new("rogue CA");
    let leaf = ca.leaf("node");
    let rogue_leaf = rogue.leaf("node");
    let ca_pem = ca.pem();

    let e = TlsConfig::from_pem(ca_pem.as_bytes(), rogue_leaf.cert.as_bytes(), rogue_leaf.key.as_bytes())
        .expect_err("a leaf of another CA");
    assert!(matches!(e, TlsError::Untrusted { .. }) && e.to_string().contains("UnknownIssuer"), "{e}");

    let e = TlsConfig::from_pem(ca_pem.as_bytes(), leaf.cert.as_bytes(), rogue_leaf.key.as_bytes())
        .expect_err("someone else's key");
    assert!(matches!(e, TlsError::InvalidKey { .. }), "{e}");

    let e = TlsConfig::from_pem(ca_pem.as_bytes(), leaf.key.as_bytes(), leaf.key.as_bytes())
        .expect_err("a key where the certificate belongs");
    assert!(matches!(e, TlsError::NoCertificate { what: "certificate", .. }), "{e}");

    let e = TlsConfig::from_pem(ca_pem.as_bytes(), leaf.cert.as_bytes(), leaf.cert.as_bytes())
        .expect_err("a certificate where the key belongs");
    assert!(matches!(e, TlsError::NoPrivateKey { .. }), "{e}");

    let expired = ca.leaf_with("old", |p| {
        p.not_before = rcgen::date_time_ymd(2000, 1, 1);
        p.not_after = rcgen::date_time_ymd(2001, 1, 1);
    });
    let e = TlsConfig::from_pem(ca_pem.as_bytes(), expired.cert.as_bytes(), expired.key.as_bytes())
        .expect_err("an expired certificate");
    assert!(matches!(e, TlsError::Untrusted { .. }) && e.to_string().contains("xpired"), "{e}");

    let server_only = ca.leaf_with("server-only", |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    });
    let e = TlsConfig::from_pem(ca_pem.as_bytes(), server_only.cert.as_bytes(), server_only.key.as_bytes())
        .expect_err("a certificate without clientAuth");
    assert!(matches!(e, TlsError::Untrusted { .. }), "{e}");

    let dir = TempDir::new("files");
    let (ca_path, cert_path, key_path) = (dir.file("ca.pem"), dir.file("node.pem"), dir.file("node.key"));
    std::fs::write(&ca_path, &ca_pem).expect("write");
    std::fs::write(&cert_path, &leaf.cert).expect("write");
    std::fs::write(&key_path, &leaf.key).expect("write");
    let ok = TlsConfig::from_pem_files(&ca_path, &cert_path, &key_path).expect("load from files");
    assert_eq!(ok.paths(), Some((ca_path.as_path(), cert_path.as_path(), key_path.as_path())));
    assert_eq!(ca.config(&leaf).paths(), None);
    let missing = dir.file("missing.pem");
    let e = TlsConfig::from_pem_files(&ca_path, &missing, &key_path).expect_err("a missing file");
    assert!(matches!(e, TlsError::Read { what: "certificate", .. }), "{e}");
    assert!(e.to_string().contains("missing.pem"), "{e}");
}

/// Runs the `openssl` commands of the doc comment at the top of `src/tls.rs`,
/// verbatim, and uses the result for a mutual-TLS connection.
#[tokio::test]
async fn the_documented_openssl_commands_make_a_working_ca() {
    if std::process::Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIPPED: `openssl` is not on PATH, so the documented commands cannot be checked");
        return;
    }
    let script = documented_script();
    assert!(script.contains("openssl req -x509"), "the doc comment lost its commands:\n{script}");
    let dir = TempDir::new("openssl");
    let out = std::process::Command::new("sh")
        .arg("-ec")
        .arg(&script)
        .current_dir(&dir.0)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "the documented commands failed:\n{script}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tls = TlsConfig::from_pem_files(&dir.file("ca.pem"), &dir.file("node1.pem"), &dir.file("node1.key"))
        .expect("the documented files load");

    // The one node certificate serves both ends, by IP and by name.
    let (listener, addr) = bind().await;
    let Addr::Tcp { port, .. } = addr else { panic!("not tcp") };
    let server_tls = tls.clone();
    let server = tokio::spawn(async move {
        for _ in 0..2 {
            let (stream, _) = listener.accept().await.expect("accept");
            let stream = server_tls.accept(stream, HANDSHAKE).await.expect("TLS accept");
            let (mut ch, _) = accept(stream, &hs("node1"), |_| Auth::Open).await.expect("handshake");
            let got = ch.recv().await.expect("recv").expect("msg");
            ch.send(&got).await.expect("echo");
            assert!(ch.recv().await.expect("end").is_none());
        }
    });
    for host in ["127.0.0.1", "localhost"] {
        let addr = Addr::Tcp { host: host.into(), port };
        let (mut ch, _) = within("connect_tls", connect_tls(&addr, &hs("node1"), None, &tls))
            .await
            .unwrap_or_else(|e| panic!("{addr}: {e}"));
        ch.send(&yield_msg(7, host)).await.expect("send");
        let got = within("echo", ch.recv()).await.expect("recv").expect("msg");
        assert!(matches!(&got, Msg::Yield { cid: 7, value } if &value[..] == host.as_bytes()), "{got:?}");
        within("close", ch.sender().close()).await;
    }
    within("server", server).await.expect("server task");
}

/// The `sh` block of the module documentation of `src/tls.rs`.
fn documented_script() -> String {
    let source = include_str!("../src/tls.rs");
    let mut script = String::new();
    let mut inside = false;
    for line in source.lines().take_while(|l| l.starts_with("//!")) {
        let text = line.strip_prefix("//!").unwrap_or(line);
        let text = text.strip_prefix(' ').unwrap_or(text);
        match (inside, text.trim()) {
            (false, "```sh") => inside = true,
            (true, "```") => break,
            (true, _) => {
                script.push_str(text);
                script.push('\n');
            }
            _ => {}
        }
    }
    script
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!("actor-tls-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create a temp dir");
        TempDir(path)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// This workspace builds aws-lc without its CPU-jitter entropy source
/// (`.cargo/config.toml`): with it, every process's first TLS connection
/// spends about 30 ms seeding aws-lc's generator, and every actor spawned
/// in a TLS tree pays that before it connects back.
#[test]
fn aws_lc_is_built_without_jitter_entropy() {
    assert_eq!(
        option_env!("AWS_LC_SYS_NO_JITTER_ENTROPY"),
        Some("1"),
        "AWS_LC_SYS_NO_JITTER_ENTROPY=1 is missing from the build environment (.cargo/config.toml [env])"
    );
}
