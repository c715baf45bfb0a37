//! Running example and fixture programs as real process trees, and proving
//! that nothing of them is left afterwards.
//!
//! Every tree gets a unique `ACTOR_TEST_TAG` in its environment, which every
//! actor inherits; a process of ours is one whose environment carries the tag.
//! This test process becomes a subreaper, so descendants orphaned by a killed
//! root are re-parented here and can be checked and reaped, instead of
//! lingering as zombies under init.

#![allow(dead_code, unreachable_pub)]

pub mod netns;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// Pids this test process spawned itself (reaped through `Child`, not by the
/// orphan reaper). Held while spawning so the reaper never steals one.
static OWN: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        nix::sys::prctl::set_child_subreaper(true).expect("cannot become a subreaper");
        std::thread::spawn(|| {
            loop {
                reap_orphans();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    });
}

/// Reaps zombie children of this process that it did not spawn itself.
fn reap_orphans() {
    let own = OWN.lock().unwrap_or_else(|p| p.into_inner());
    let me = std::process::id();
    for (pid, state, ppid) in processes() {
        if ppid == me && state == 'Z' && !own.as_ref().is_some_and(|s| s.contains(&pid)) {
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(pid as i32),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        }
    }
}

/// Runs `cmd` to completion, capturing its output, as a child this process
/// reaps itself: the orphan reaper would otherwise take its exit status
/// (`wait` then fails with ECHILD).
pub fn output_of(cmd: &mut Command) -> std::io::Result<std::process::Output> {
    let child = {
        let mut own = OWN.lock().unwrap_or_else(|p| p.into_inner());
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        own.get_or_insert_with(HashSet::new).insert(child.id());
        child
    };
    let pid = child.id();
    let out = child.wait_with_output();
    OWN.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(HashSet::new).remove(&pid);
    out
}

/// (pid, state, ppid) of every process.
fn processes() -> Vec<(u32, char, u32)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let mut f = rest.split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        out.push((pid, state, ppid));
    }
    out
}

/// Processes (pid, state) whose environment carries `tag`. Zombies have no
/// readable environment, so zombie children of ours are listed separately.
pub fn tagged(tag: &str) -> Vec<(u32, char)> {
    let needle = format!("ACTOR_TEST_TAG={tag}");
    processes()
        .into_iter()
        .filter(|(pid, _, _)| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
                .unwrap_or(false)
        })
        .map(|(pid, state, _)| (pid, state))
        .collect()
}

fn profile_dir() -> PathBuf {
    // tests run from target/<profile>/deps/<test-binary>
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().and_then(|p| p.parent()).expect("target dir").to_path_buf()
}

/// The path of a compiled example (fixtures are examples too).
pub fn example(name: &str) -> PathBuf {
    let path = profile_dir().join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test` (it builds examples)",
        path.display()
    );
    path
}

/// The path of a compiled binary of the workspace, such as `arbiter`.
pub fn binary(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(path.exists(), "{} is not built: run the tests with `cargo test --workspace`", path.display());
    path
}

/// A running process tree, started from an example program.
pub struct Tree {
    pub tag: String,
    child: Child,
    stdout: mpsc::Receiver<String>,
    stdout_seen: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// What a finished tree printed and how its root ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The log lines at WARN or ERROR level the tree printed (the runtime
    /// logs to stderr, uncoloured under the harness's `NO_COLOR=1`).
    pub fn warnings(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| is_warning(l)).collect()
    }

    /// Fails the test if the tree logged anything at WARN or ERROR level: for
    /// runs meant to be clean, where any such line is a false alarm to a user.
    pub fn assert_no_warnings(&self) {
        let lines = self.warnings();
        assert!(lines.is_empty(), "a clean run logged {} warning(s):\n{}", lines.len(), lines.join("\n"));
    }
}

/// Whether `line` is a `tracing` line at WARN or ERROR level, e.g.
/// `2026-01-01T00:00:00.000000Z  WARN actor::conn: ...`.
fn is_warning(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let stamp = words.next().unwrap_or_default();
    let looks_like_time = stamp.len() > 20 && stamp.ends_with('Z') && stamp.contains('T');
    looks_like_time && matches!(words.next(), Some("WARN" | "ERROR"))
}

impl Tree {
    /// Starts example `name` with `args` and extra environment.
    pub fn start(name: &str, args: &[&str], env: &[(&str, &str)]) -> Tree {
        Tree::start_program(&example(name), args, env)
    }

    /// Starts the program at `path` with `args` and extra environment.
    pub fn start_program(path: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Tree {
        become_subreaper();
        static N: AtomicU64 = AtomicU64::new(0);
        let tag = format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let mut cmd = Command::new(path);
        cmd.args(args)
            .env("ACTOR_TEST_TAG", &tag)
            .env_remove("RUST_BACKTRACE")
            .env("NO_COLOR", "1")
            // Never the shared default arbiter: each tree hosts its own.
            .env("ACTOR_ARBITER", "private")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = {
            let mut own = OWN.lock().unwrap_or_else(|p| p.into_inner());
            let child = cmd.spawn().expect("spawn example");
            own.get_or_insert_with(HashSet::new).insert(child.id());
            child
        };
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Tree { tag, child, stdout: rx, stdout_seen: Vec::new(), stderr: Some(stderr) }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (at most `within`) for a stdout line containing `needle` that no
    /// earlier call returned; returns it.
    pub fn wait_for_line(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.stdout_seen.iter().position(|l| l.contains(needle)) {
                return self.stdout_seen.remove(i);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => self.stdout_seen.push(line),
                Err(_) => {
                    self.kill_all();
                    // Whatever the program said on its way out says why.
                    let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
                    panic!(
                        "no line containing {needle:?} within {within:?}; saw {:?}; stderr: {stderr}",
                        self.stdout_seen
                    );
                }
            }
        }
    }

    /// Waits (at most `within`) for `n` stdout lines containing `needle`.
    pub fn wait_for_lines(&mut self, needle: &str, n: usize, within: Duration) -> Vec<String> {
        (0..n).map(|_| self.wait_for_line(needle, within)).collect()
    }

    /// Sends `sig` to the root process.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig).expect("signal root");
    }

    /// Waits (at most `within`) for the root to exit and for every process of
    /// the tree to be gone, then returns what it printed. Fails the test, after
    /// killing what is left, on a timeout or a leftover process.
    pub fn finish(mut self, within: Duration) -> Finished {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                break st;
            }
            if Instant::now() > deadline {
                self.kill_all();
                panic!("the root did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        OWN.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(HashSet::new).remove(&self.pid());
        let tag = self.tag.clone();
        assert_gone(&tag, Duration::from_secs(3));
        let mut stdout_lines = std::mem::take(&mut self.stdout_seen);
        while let Ok(l) = self.stdout.recv_timeout(Duration::from_secs(2)) {
            stdout_lines.push(l);
        }
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        Finished { status, stdout: stdout_lines.join("\n"), stderr }
    }

    fn kill_all(&mut self) {
        for (pid, _) in tagged(&self.tag) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Tree {
    /// A test that panics before `finish` still takes its tree down with it.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill_all();
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let left = tagged(&self.tag);
            if left.is_empty() || Instant::now() > deadline {
                break;
            }
            for (pid, _) in left {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Orphans of the killed tree were re-parented here: reap them now, or
        // they outlive this test process as zombies under init.
        reap_orphans();
    }
}

/// Fails unless every process carrying `tag` is gone within `within` (and no
/// zombie of it is left: orphans re-parented here are reaped by this process,
/// so a zombie that stays means a parent in the tree failed to reap).
pub fn assert_gone(tag: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let left = tagged(tag);
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            for (pid, _) in &left {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            panic!("processes of tree {tag} left behind after {within:?}: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
