//! Three hosts, made of network namespaces joined by veth pairs: the arbiter
//! daemon on host A, a standalone actor on host B, a caller on host C, all
//! over mutual TLS (B and C reach each other only through A, which routes).
//! Needs root (to create namespaces); without it the test says so and skips.

mod common;

use std::time::{Duration, Instant};

use common::netns::{Hosts, Pki, on_host};
use nix::sys::signal::Signal;

const BOUND: Duration = Duration::from_secs(60);

fn registry(ns: &str, env: &[(String, String)]) -> String {
    let out = on_host(ns, &common::example("standalone_actor"), &["list"], env).finish(BOUND);
    assert!(out.status.success(), "list: {out:?}");
    out.stdout
}

#[test]
fn an_actor_on_one_host_is_found_and_called_from_another_over_mutual_tls() {
    let hosts = match Hosts::create("act", 201) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            return;
        }
    };
    let [a, b, c] = hosts.names.clone();
    let dir = std::env::temp_dir().join(format!("actor-multihost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pki = Pki::new(dir.clone());
    let arbiter_addr = "tcp://10.201.1.1:7616".to_string();
    let mut env_a = pki.host("host-a", &hosts.ips(1));
    let mut env_b = pki.host("host-b", &hosts.ips(2));
    let mut env_c = pki.host("host-c", &hosts.ips(3));
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
