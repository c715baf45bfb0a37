//! Trust: helpers an actor starts die with the tree, zero-argument calls
//! accept the protocol's `[]`, and a tree with no configured token still
//! refuses strangers. Real process trees built by tests/fixtures/trust.rs.

mod common;

use std::time::{Duration, Instant};

use common::Tree;
use nix::sys::signal::Signal;

const BOUND: Duration = Duration::from_secs(60);

/// Whether `pid` is a live process (a zombie is dead: it only awaits reaping).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// Fails unless every pid in `pids` is dead within `within`.
fn assert_dead(pids: &[u32], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            for p in &left {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p as i32), Signal::SIGKILL);
            }
            panic!("helpers {left:?} outlived their actors by {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn helper_pid(line: &str) -> u32 {
    line.rsplit(' ').next().and_then(|p| p.parse().ok()).expect("a pid after HELPER")
}

#[test]
fn a_helper_dies_when_its_actor_returns() {
    let mut tree = Tree::start("trust_scenarios", &["helper_then", "return"], &[]);
    let pid = helper_pid(&tree.wait_for_line("HELPER", BOUND));
    assert_dead(&[pid], Duration::from_secs(10));
    let out = tree.finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("CHILD ENDED true"), "{out:?}");
}

#[test]
fn a_helper_dies_when_its_actor_crashes() {
    let mut tree = Tree::start("trust_scenarios", &["helper_then", "exit3"], &[]);
    let pid = helper_pid(&tree.wait_for_line("HELPER", BOUND));
    assert_dead(&[pid], Duration::from_secs(10));
    let out = tree.finish(BOUND);
    assert!(out.stdout.contains("CHILD ENDED false"), "{out:?}");
}

#[test]
fn helpers_die_when_their_actors_are_cancelled() {
    let mut tree = Tree::start("trust_scenarios", &["helpers_held", "cancel"], &[]);
    let pids: Vec<u32> = tree.wait_for_lines("HELPER", 2, BOUND).iter().map(|l| helper_pid(l)).collect();
    tree.wait_for_line("CANCELLED", BOUND);
    assert_dead(&pids, Duration::from_secs(10));
    let out = tree.finish(BOUND);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn helpers_die_when_the_root_is_sigkilled() {
    let mut tree = Tree::start("trust_scenarios", &["helpers_held", "hold"], &[]);
    // Two children's helpers and a grandchild's.
    let pids: Vec<u32> = tree.wait_for_lines("HELPER", 3, BOUND).iter().map(|l| helper_pid(l)).collect();
    tree.wait_for_line("HELD", BOUND);
    tree.signal(Signal::SIGKILL);
    assert_dead(&pids, Duration::from_secs(10));
    let out = tree.finish(BOUND);
    assert_eq!(out.status.code(), None, "killed by a signal: {out:?}");
}

/// A helper the root itself started dies when the root ends as `how` says
/// (`return`, or SIGKILL while it holds); one started without the tree's
/// tag (`env_remove(actor::ENV_TREE)`) lives on, as its user asked.
fn root_helper(how: &str) {
    let mut tree = Tree::start("trust_scenarios", &["root_helper", how], &[]);
    let helper = helper_pid(&tree.wait_for_line("HELPER", BOUND));
    let free = tree.wait_for_line("FREE", BOUND).rsplit(' ').next().and_then(|p| p.parse::<u32>().ok());
    let free = free.expect("a pid after FREE");
    if how == "hold" {
        tree.wait_for_line("HELD", BOUND);
        tree.signal(Signal::SIGKILL);
    }
    let out = tree.finish(BOUND);
    let survived = alive(free);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(free as i32), Signal::SIGKILL);
    assert_dead(&[helper], Duration::from_secs(10));
    assert!(survived, "the opted-out helper was killed too");
    match how {
        "hold" => assert_eq!(out.status.code(), None, "killed by a signal: {out:?}"),
        _ => assert!(out.status.success(), "{out:?}"),
    }
}

#[test]
fn a_helper_of_the_root_dies_when_the_root_returns() {
    root_helper("return");
}

#[test]
fn a_helper_of_the_root_dies_when_the_root_is_sigkilled() {
    root_helper("hold");
}

#[test]
fn a_zero_argument_function_accepts_an_empty_array() {
    let out = Tree::start("trust_scenarios", &["empty_args"], &[]).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("EMPTY ARRAY 42 UNIT 42"), "{out:?}");
}

/// A scratch token file path of its own for one test, in a fresh private
/// directory, standing for "this user's secret".
fn token_file(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("actor-trust-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("token")
}

/// The root's, its arbiter's and its child's addresses from a SERVING line.
fn serving(line: &str) -> [actor::Addr; 3] {
    let addrs: Vec<actor::Addr> = line.split(' ').skip(1).map(|a| a.parse().expect("an address")).collect();
    addrs.try_into().expect("three addresses")
}

fn handshake(name: &str) -> actor::transport::HandshakeConfig {
    actor::transport::HandshakeConfig {
        uid: actor::Uid::new(name),
        timeout: Duration::from_secs(10),
        channel: Default::default(),
    }
}

#[test]
fn a_root_without_a_configured_token_refuses_peers_without_the_users_secret() {
    let file = token_file("refuse");
    let file_env = file.to_str().expect("utf-8 path");
    let mut tree = Tree::start("trust_scenarios", &["serve"], &[("ACTOR_TOKEN_FILE", file_env)]);
    let addrs = serving(&tree.wait_for_line("SERVING", BOUND));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        for (what, addr) in ["root", "arbiter", "child"].iter().zip(&addrs) {
            match actor::transport::connect(addr, &handshake("stranger"), None).await {
                Err(actor::transport::HandshakeError::Refused { reason }) => {
                    assert!(reason.contains("authentication failed"), "{what}: {reason}")
                }
                Err(e) => panic!("the {what} failed the stranger otherwise: {e}"),
                Ok(_) => panic!("the {what} welcomed a peer without the secret"),
            }
            let wrong = actor::Secret::random();
            assert!(
                actor::transport::connect(addr, &handshake("guesser"), Some(&wrong)).await.is_err(),
                "the {what} welcomed a peer with a wrong secret"
            );
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("the secret file exists").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the secret file is the user's alone");
        let secret = actor::load_or_create_token(&file).expect("read the secret");
        for (what, addr) in ["root", "arbiter", "child"].iter().zip(&addrs) {
            actor::transport::connect(addr, &handshake("friend"), Some(&secret))
                .await
                .unwrap_or_else(|e| panic!("the {what} refused the user's secret: {e}"));
        }
    });
    tree.signal(Signal::SIGTERM);
    let out = tree.finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    let _ = std::fs::remove_dir_all(file.parent().expect("dir"));
}

#[test]
fn a_program_of_the_same_user_joins_and_one_with_another_secret_is_refused() {
    let file = token_file("join");
    let file_env = file.to_str().expect("utf-8 path");
    let mut tree = Tree::start("trust_scenarios", &["serve"], &[("ACTOR_TOKEN_FILE", file_env)]);
    let [_, arbiter, _] = serving(&tree.wait_for_line("SERVING", BOUND));
    let arbiter = arbiter.to_string();

    let friend = Tree::start(
        "trust_scenarios",
        &["find"],
        &[("ACTOR_TOKEN_FILE", file_env), ("ACTOR_ARBITER", &arbiter), ("ACTOR_NAME", "friend")],
    )
    .finish(BOUND);
    assert!(friend.status.success(), "{friend:?}");
    assert!(friend.stdout.contains("FOUND 42"), "{friend:?}");

    // Another user has another secret (and cannot read ours).
    let other = token_file("join-other");
    let stranger = Tree::start(
        "trust_scenarios",
        &["find"],
        &[
            ("ACTOR_TOKEN_FILE", other.to_str().expect("utf-8 path")),
            ("ACTOR_ARBITER", &arbiter),
            ("ACTOR_NAME", "stranger"),
        ],
    )
    .finish(BOUND);
    assert!(!stranger.status.success(), "{stranger:?}");
    assert!(!stranger.stdout.contains("FOUND"), "{stranger:?}");
    assert!(stranger.stderr.contains("authentication failed"), "{stranger:?}");

    tree.signal(Signal::SIGTERM);
    let out = tree.finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    for f in [&file, &other] {
        let _ = std::fs::remove_dir_all(f.parent().expect("dir"));
    }
}

/// A spawn spec whose arranged handshake (the parent's uid and nonce) is
/// malformed ends the process at once with a message naming the variable:
/// it cannot serve as a child, and must not start as a root either.
#[test]
fn a_malformed_arranged_handshake_in_the_spawn_spec_is_refused_clearly() {
    let spec = [
        ("ACTOR_SPAWN_PARENT", "tcp://127.0.0.1:9"),
        ("ACTOR_SPAWN_NAME", "child"),
        ("ACTOR_SPAWN_ID", "00000000000000c1"),
        ("ACTOR_SPAWN_TOKEN", "11111111111111111111111111111111"),
        ("ACTOR_SPAWN_PPID", "1"),
    ];
    for bad in ["", "zz:00000000000000a1:root", &format!("{}:only-an-id", "ab".repeat(32))] {
        let mut cmd = std::process::Command::new(common::example("trust_scenarios"));
        cmd.envs(spec).env("ACTOR_SPAWN_ARRANGED", bad);
        let out = common::output_of(&mut cmd).expect("run the fixture");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
        assert!(stderr.contains("ACTOR_SPAWN_ARRANGED is malformed"), "{bad:?}: {stderr}");
    }
    // Not UTF-8: malformed, not taken for absent (the classic handshake).
    use std::os::unix::ffi::OsStrExt;
    let bad = [b"ab".repeat(32), b":00000000000000a1:r\xffot".to_vec()].concat();
    let mut cmd = std::process::Command::new(common::example("trust_scenarios"));
    cmd.envs(spec).env("ACTOR_SPAWN_ARRANGED", std::ffi::OsStr::from_bytes(&bad));
    let out = common::output_of(&mut cmd).expect("run the fixture");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr.contains("ACTOR_SPAWN_ARRANGED is malformed"), "{stderr}");
}

/// The `KEY=VALUE` lines of a file written by the fixture's abandoned child.
fn spawn_env(path: &std::path::Path) -> std::collections::HashMap<String, String> {
    let text = std::fs::read_to_string(path).expect("the child's spawn environment");
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// A spawn its caller gives up on (drops, as a timeout around it does)
/// forgets the child it expected: the one-time token and handshake nonce
/// handed to that process admit nobody once the spawn is gone.
#[test]
fn an_abandoned_spawn_forgets_the_token_and_nonce_it_handed_out() {
    let file = token_file("abandon");
    std::fs::create_dir_all(file.parent().expect("dir")).expect("a scratch dir");
    let dump = file.with_file_name("spawn-env");
    let mut tree = Tree::start(
        "trust_scenarios",
        &["abandon_spawn", dump.to_str().expect("utf-8 path")],
        &[("ACTOR_TOKEN_FILE", file.to_str().expect("utf-8 path"))],
    );
    let line = tree.wait_for_line("ABANDONED", BOUND);
    let root: actor::Addr = line.split(' ').nth(1).expect("an address").parse().expect("the root's address");
    let env = spawn_env(&dump);
    let get = |k: &str| env.get(k).unwrap_or_else(|| panic!("no {k} in {env:?}")).clone();
    let child = actor::Uid { name: get("ACTOR_SPAWN_NAME"), id: get("ACTOR_SPAWN_ID") };
    let token = actor::Secret::from_hex(&get("ACTOR_SPAWN_TOKEN")).expect("a hex token");
    let arranged = get("ACTOR_SPAWN_ARRANGED");
    let mut parts = arranged.splitn(3, ':');
    let nonce = actor::transport::Nonce::from_hex(parts.next().expect("a nonce")).expect("a hex nonce");
    let parent = actor::Uid {
        id: parts.next().expect("the parent's id").to_owned(),
        name: parts.next().expect("the parent's name").to_owned(),
    };
    let config = actor::transport::HandshakeConfig {
        uid: child,
        timeout: Duration::from_secs(10),
        channel: Default::default(),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let arranged = actor::transport::Arranged { secret: token.clone(), acceptor: parent, nonce };
        // The root answers with a fresh nonce, as to anyone else.
        match actor::transport::connect_arranged(&root, &config, &arranged, None).await {
            Err(actor::transport::HandshakeError::ServerUnauthenticated { .. }) => {}
            Err(e) => panic!("the arranged handshake failed otherwise: {e}"),
            Ok(_) => panic!("the abandoned child's arranged handshake was still accepted"),
        }
        // And wants the user's secret, not the child's token.
        match actor::transport::connect(&root, &config, Some(&token)).await {
            Err(actor::transport::HandshakeError::Refused { reason }) => {
                assert!(reason.contains("authentication failed"), "{reason}")
            }
            Err(e) => panic!("the classic handshake failed otherwise: {e}"),
            Ok(_) => panic!("the abandoned child's token was still accepted"),
        }
    });
    tree.signal(Signal::SIGTERM);
    let out = tree.finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    // Only the two refusals this test asked for.
    let warnings = out.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(warnings.iter().all(|w| w.contains("failed authentication")), "{warnings:#?}");
    let _ = std::fs::remove_dir_all(file.parent().expect("dir"));
}

/// A root's name is not checked as a spawned actor's is; one that cannot
/// pass through the environment (a NUL byte) must not keep it from
/// spawning a child here, nor must colons, which separate the fields of the
/// arranged handshake's variable.
#[test]
fn a_root_with_an_odd_name_spawns_and_calls_a_child() {
    let out = Tree::start("trust_scenarios", &["odd_root_name", "with:colons"], &[]).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("ANSWER 42"), "{out:?}");
    out.assert_no_warnings();
}

/// Spawn variables handed to an actor builder do not override the parent's
/// spawn spec: the child still connects back and answers.
#[test]
fn spawn_variables_given_to_a_builder_do_not_break_the_spawn() {
    let out = Tree::start("trust_scenarios", &["spawn_env_in_builder"], &[]).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("ANSWER 42"), "{out:?}");
    out.assert_no_warnings();
}

/// A tree over mutual TLS spawns its children here with the arranged
/// handshake inside the TLS session, and calls them.
#[test]
fn a_tree_over_mutual_tls_spawns_and_calls_its_children_here() {
    let dir = token_file("tls");
    let dir = dir.parent().expect("dir").to_path_buf();
    std::fs::create_dir_all(&dir).expect("a scratch dir");
    let pki = common::netns::Pki::new(dir.clone());
    let env = pki.host("here", &[std::net::Ipv4Addr::LOCALHOST]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = Tree::start("trust_scenarios", &["empty_args"], &env).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("EMPTY ARRAY 42 UNIT 42"), "{out:?}");
    out.assert_no_warnings();
    let _ = std::fs::remove_dir_all(dir);
}
