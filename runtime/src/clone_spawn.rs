//! Starting an actor's process without copying this process's descriptors.
//!
//! A child started by `posix_spawn` (what the standard library uses) begins
//! with a copy of its parent's descriptor table, and `exec` then closes
//! every copied descriptor marked close-on-exec: work in proportion to what
//! the parent holds, about three descriptors per live child in a root of
//! many actors, done while the spawning thread waits. Here the child shares
//! the table (`CLONE_FILES`) and, before `exec`, takes a new one that holds
//! only stdin, stdout and stderr (`close_range` with `CLOSE_RANGE_UNSHARE`):
//! the same cost whatever the parent holds.
//!
//! The child runs in our memory (`CLONE_VM`, as a vfork) until it executes,
//! while we are suspended (`CLONE_VFORK`), so it only makes system calls on
//! data prepared beforehand, and every signal stays blocked until its own
//! mask is reset right before `exec`.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::libc;

/// A program to start, with everything its child needs laid out in advance.
pub(crate) struct Program {
    path: CString,
    args: Vec<CString>,
    env: Vec<CString>,
    /// One more descriptor the child keeps open, at the same number.
    keep: Option<RawFd>,
}

fn c_string(s: &OsStr, what: &str) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} {s:?} contains a NUL byte")))
}

impl Program {
    /// `path`, run with `args` (the first is the name it is run by) in
    /// exactly the environment `env`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] for a NUL byte anywhere, or an
    /// empty variable name.
    pub(crate) fn new(
        path: &OsStr,
        args: impl IntoIterator<Item = OsString>,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> io::Result<Program> {
        let args = args.into_iter().map(|a| c_string(&a, "the argument")).collect::<io::Result<_>>()?;
        let env = env
            .into_iter()
            .map(|(name, value)| {
                // An inherited name may hold `=` (after its first byte), as
                // the standard library's spawn passes it on.
                if name.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "an environment variable has no name",
                    ));
                }
                let mut pair = name;
                pair.push("=");
                pair.push(value);
                c_string(&pair, "the environment variable")
            })
            .collect::<io::Result<_>>()?;
        Ok(Program { path: c_string(path, "the program path")?, args, env, keep: None })
    }

    /// The same program, keeping `fd` open in the child at its number (not
    /// close-on-exec there), for a process that talks to us over it.
    pub(crate) fn keeping(mut self, fd: RawFd) -> Program {
        self.keep = Some(fd);
        self
    }

    /// The same program and arguments in the environment `env`.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), for the variables.
    pub(crate) fn with_env(
        &self,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> io::Result<Program> {
        let path = OsStr::from_bytes(self.path.as_bytes());
        let args = self.args.iter().map(|a| OsStr::from_bytes(a.as_bytes()).to_owned());
        Program::new(path, args, env)
    }

    /// Whether `other` runs the same file with the same arguments.
    pub(crate) fn same_command(&self, other: &Program) -> bool {
        self.path == other.path && self.args == other.args
    }

    /// The environment, each variable as `NAME=VALUE`.
    pub(crate) fn env(&self) -> &[CString] {
        &self.env
    }

    /// The same program as a tokio `Command` (its own process group, stdin
    /// from `/dev/null`), for where [`start`] is
    /// [unsupported](io::ErrorKind::Unsupported).
    pub(crate) fn command(&self) -> tokio::process::Command {
        let os = |c: &CString| OsStr::from_bytes(c.as_bytes()).to_owned();
        let mut cmd = tokio::process::Command::new(os(&self.path));
        if let Some((arg0, rest)) = self.args.split_first() {
            cmd.arg0(os(arg0)).args(rest.iter().map(os));
        }
        cmd.env_clear();
        for pair in &self.env {
            let bytes = pair.as_bytes();
            // The name's first byte may itself be `=`.
            let at = bytes.iter().skip(1).position(|&b| b == b'=').map_or(bytes.len(), |i| i + 1);
            let value = bytes.get(at + 1..).unwrap_or_default();
            cmd.env(OsStr::from_bytes(&bytes[..at]), OsStr::from_bytes(value));
        }
        cmd.stdin(std::process::Stdio::null()).process_group(0);
        cmd
    }
}

/// A started child: its pid, and a pidfd that turns readable when it exits.
pub(crate) struct Started {
    pub(crate) pid: i32,
    pub(crate) pidfd: OwnedFd,
}

/// What the child reads: pointers into a [`Program`] and into [`start`]'s
/// frame, which stay valid while the parent is suspended.
struct ChildArgs {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    /// The errno of the step that failed; 0 while none has.
    failed: *const AtomicI32,
    /// Set when the child could not get a descriptor table of its own.
    no_table: *const AtomicBool,
    /// The descriptor to keep, or -1.
    keep: libc::c_int,
}

/// The child's stack: it only makes a few system calls before `exec`.
const STACK: usize = 64 * 1024;

/// Starts `program` in a process group of its own, with stdin from
/// `/dev/null`, stdout and stderr shared with this process and no other
/// descriptor, default signal dispositions for what this process ignores
/// (SIGPIPE), and an empty signal mask.
///
/// # Errors
///
/// The error of `clone`, or of the child's set-up or `exec` (say,
/// [`io::ErrorKind::NotFound`] for a path that does not exist);
/// [`io::ErrorKind::Unsupported`] where this kernel (before 5.2), or a
/// seccomp filter, gives no pidfd or no descriptor table of its own, for
/// the caller to start the program the standard library's way. The child
/// is reaped before any error returns.
pub(crate) fn start(program: &Program) -> io::Result<Started> {
    let null_terminated = |v: &[CString]| {
        v.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect::<Vec<_>>()
    };
    let (argv, envp) = (null_terminated(&program.args), null_terminated(&program.env));
    let failed = AtomicI32::new(0);
    let no_table = AtomicBool::new(false);
    let args = ChildArgs {
        path: program.path.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        failed: &failed,
        no_table: &no_table,
        keep: program.keep.unwrap_or(-1),
    };
    let mut stack = vec![0u8; STACK];
    // The stack grows down from its end, which the ABI wants 16-byte aligned.
    let top = stack.as_mut_ptr().wrapping_add(STACK);
    let top = top.wrapping_sub(top as usize % 16).cast::<libc::c_void>();
    let mut pidfd: libc::c_int = -1;
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_FILES | libc::CLONE_PIDFD | libc::SIGCHLD;
    // SAFETY: `child` only makes async-signal-safe calls on `args`, which
    // outlives it: CLONE_VFORK suspends this thread until the child has
    // executed or exited. Every signal is blocked around the clone, so no
    // handler of ours runs on the child's stack in our memory.
    let (pid, clone_error) = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            child,
            top,
            flags,
            std::ptr::from_ref(&args).cast_mut().cast::<libc::c_void>(),
            &mut pidfd as *mut libc::c_int,
        );
        let clone_error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        (pid, clone_error)
    };
    drop(stack);
    if pid < 0 {
        return Err(clone_error);
    }
    let reap = || {
        let mut status = 0;
        // SAFETY: waitpid on our own child, which has exited or was killed.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    };
    let errno = failed.load(Ordering::Acquire);
    if errno != 0 {
        reap();
        let error = io::Error::from_raw_os_error(errno);
        if no_table.load(Ordering::Acquire) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("no descriptor table of its own: {error}"),
            ));
        }
        return Err(error);
    }
    if pidfd < 0 {
        // A kernel before 5.2 ignores CLONE_PIDFD: the child runs, unwatched.
        // SAFETY: kill(2) on the group our child leads.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        reap();
        return Err(io::Error::new(io::ErrorKind::Unsupported, "this kernel gives no pidfd for a child"));
    }
    // SAFETY: with CLONE_PIDFD the kernel stored a new descriptor, ours alone.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Started { pid, pidfd })
}

/// `close_range(2)`; whether it succeeded.
///
/// # Safety
///
/// Closes descriptors others may own: only for the child before `exec`.
unsafe fn close_range(first: libc::c_uint, last: libc::c_uint, flags: libc::c_uint) -> bool {
    // SAFETY: a plain system call on integers.
    unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) == 0 }
}

/// The child, from `clone` to `exec`.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is `start`'s `ChildArgs`, alive until we exec or exit.
    let args = unsafe { &*arg.cast::<ChildArgs>() };
    let fail = || -> ! {
        // SAFETY: errno is this thread's; `failed` outlives us; _exit is
        // async-signal-safe and runs no destructor or atexit handler.
        unsafe {
            (*args.failed).store(*libc::__errno_location(), Ordering::Release);
            libc::_exit(127)
        }
    };
    // SAFETY: plain system calls on descriptors and C strings we own.
    unsafe {
        // A table of our own with only 0, 1 and 2 (and the one to keep);
        // the parent's is untouched.
        let keep = args.keep;
        let (first, rest) = match keep {
            3 => (4, None),
            k if k > 3 => (3, Some(k)),
            _ => (3, None),
        };
        let unshared = match rest {
            Some(k) => {
                close_range(3, k as libc::c_uint - 1, libc::CLOSE_RANGE_UNSHARE)
                    && close_range(k as libc::c_uint + 1, libc::c_uint::MAX, 0)
            }
            None => close_range(first, libc::c_uint::MAX, libc::CLOSE_RANGE_UNSHARE),
        };
        if !unshared {
            // Before Linux 5.9: a whole copy, whose descriptors are all
            // close-on-exec (the standard library opens them so).
            if libc::unshare(libc::CLONE_FILES) != 0 {
                (*args.no_table).store(true, Ordering::Release);
                fail();
            }
        }
        // The table is ours now: clearing close-on-exec leaves the parent's alone.
        if keep >= 0 && libc::fcntl(keep, libc::F_SETFD, 0) != 0 {
            fail();
        }
        if libc::setpgid(0, 0) != 0 {
            fail();
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        if null < 0 {
            fail();
        }
        if null != 0 {
            if libc::dup2(null, 0) < 0 {
                fail();
            }
            libc::close(null);
        }
        // Our handlers must not run here, in our memory, once the mask is
        // lifted: every caught signal goes back to its default action (exec
        // would do it, but a signal pending from before could arrive first).
        // An ignored one stays ignored across exec, except SIGPIPE, which
        // the Rust runtime ignores for itself.
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        for signal in 1..=libc::SIGRTMAX() {
            let mut current: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut current) == 0
                && current.sa_sigaction != libc::SIG_DFL
                && (current.sa_sigaction != libc::SIG_IGN || signal == libc::SIGPIPE)
            {
                libc::sigaction(signal, &default, std::ptr::null_mut());
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execve(args.path, args.argv, args.envp);
    }
    fail()
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    fn run(program: &Program) -> io::Result<i32> {
        let started = start(program)?;
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        let rc = unsafe { libc::waitpid(started.pid, &mut status, 0) };
        assert_eq!(rc, started.pid);
        assert!(libc::WIFEXITED(status), "status {status:#x}");
        Ok(libc::WEXITSTATUS(status))
    }

    fn sh(script: &str, env: Vec<(OsString, OsString)>) -> Program {
        let args = ["sh", "-c", script].map(OsString::from);
        Program::new(OsStr::new("/bin/sh"), args, env).expect("valid")
    }

    #[test]
    fn a_child_gets_stdio_a_null_stdin_its_own_group_and_no_mask() {
        let dir = std::env::temp_dir().join(format!("actor-clone-spawn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        // Not close-on-exec: only the fresh table keeps it from the child.
        let inheritable = nix::unistd::dup(std::io::stderr()).expect("dup");
        // The shell's own masks are read with builtins, before it forks
        // anything (it blocks signals around a fork).
        let script = r#"
            while read -r k v; do case $k in SigBlk:|SigIgn:) echo "$k $v";; esac; done < /proc/$$/status > "$OUT/signals"
            ls /proc/self/fd > "$OUT/fds"
            readlink /proc/self/fd/0 > "$OUT/stdin"
            echo "$$ $(cut -d' ' -f5 /proc/$$/stat)" > "$OUT/group"
            echo "$GREETING" > "$OUT/env"
            exit 3
        "#;
        let env = vec![
            ("OUT".into(), dir.clone().into_os_string()),
            ("GREETING".into(), "hello there".into()),
            ("PATH".into(), "/usr/bin:/bin".into()),
        ];
        assert_eq!(run(&sh(script, env)).expect("started"), 3);
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("written");
        // ls's own listing: 0, 1, 2 and the directory it reads (3).
        let fds: Vec<String> = read("fds").split_whitespace().map(str::to_owned).collect();
        assert_eq!(fds, ["0", "1", "2", "3"], "inherited: {fds:?} (dup'ed {})", inheritable.as_raw_fd());
        assert_eq!(read("stdin").trim(), "/dev/null");
        let group: Vec<String> = read("group").split_whitespace().map(str::to_owned).collect();
        assert_eq!(group[0], group[1], "the child leads its own group");
        assert_eq!(read("env").trim(), "hello there");
        for line in read("signals").lines() {
            let mask = u64::from_str_radix(line.split_whitespace().nth(1).expect("a mask"), 16).expect("hex");
            assert_eq!(mask & (1 << (libc::SIGPIPE - 1)), 0, "{line}");
            if line.starts_with("SigBlk") {
                assert_eq!(mask, 0, "{line}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    static PARENT: AtomicI32 = AtomicI32::new(0);
    static RAN_IN_CHILD: AtomicI32 = AtomicI32::new(0);

    extern "C" fn on_usr1(_: libc::c_int) {
        // SAFETY: a raw getpid, async-signal-safe.
        let me = unsafe { libc::syscall(libc::SYS_getpid) } as i32;
        if me != PARENT.load(Ordering::Relaxed) {
            RAN_IN_CHILD.store(me, Ordering::Relaxed);
        }
    }

    /// A handler of ours must never run in the child, which shares our
    /// memory until it executes, however signals rain on our group. Runs
    /// in a process of its own (this test binary, re-executed), alone in
    /// its group. Written by the review of this module.
    #[test]
    fn our_signal_handlers_never_run_in_the_child() {
        const ROLE: &str = "CLONE_SPAWN_HANDLER_PROBE";
        if std::env::var_os(ROLE).is_none() {
            use std::os::unix::process::CommandExt;
            let mut probe = std::process::Command::new(std::env::current_exe().expect("exe"))
                .args(["--exact", "clone_spawn::tests::our_signal_handlers_never_run_in_the_child"])
                .args(["--nocapture", "--test-threads=1"])
                .env(ROLE, "1")
                .process_group(0)
                .spawn()
                .expect("probe");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            let status = loop {
                if let Some(s) = probe.try_wait().expect("wait") {
                    break s;
                }
                if std::time::Instant::now() > deadline {
                    let _ = probe.kill();
                    let _ = probe.wait();
                    panic!("the probe hung");
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            };
            assert!(status.success(), "the probe failed: {status}");
            return;
        }
        PARENT.store(std::process::id() as i32, Ordering::Relaxed);
        // SAFETY: a plain handler that only makes system calls.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_usr1 as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()), 0);
        }
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let pelter = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                // SAFETY: signals our own process group, which holds only us.
                let group = unsafe { libc::getpgrp() };
                while !stop.load(Ordering::Relaxed) {
                    unsafe { libc::kill(-group, libc::SIGUSR1) };
                }
            })
        };
        let truth = Program::new(OsStr::new("/bin/true"), [OsString::from("true")], []).expect("valid");
        for _ in 0..2000 {
            let started = start(&truth).expect("started");
            let mut status = 0;
            // SAFETY: waitpid on our own child; EINTR retried.
            while unsafe { libc::waitpid(started.pid, &mut status, 0) } < 0 {}
            if RAN_IN_CHILD.load(Ordering::Relaxed) != 0 {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        pelter.join().expect("pelter");
        let ran = RAN_IN_CHILD.load(Ordering::Relaxed);
        assert_eq!(ran, 0, "our SIGUSR1 handler ran in child {ran}, in our memory");
    }

    /// The fallback for systems that refuse the clone: the same name,
    /// arguments and exact environment, names holding `=` included.
    #[test]
    fn the_fallback_command_runs_the_same_program() {
        let dir = std::env::temp_dir().join(format!("actor-clone-fallback-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let out = dir.join("out");
        let args = ["named-so", "-c", r#"echo "$0|$V|$(head -c 8 /proc/$$/cmdline)" > "$OUT""#, "first"]
            .map(OsString::from);
        let env = [("V", "a=b".into()), ("=odd", "x".into()), ("OUT", out.clone().into_os_string())]
            .map(|(k, v): (&str, OsString)| (OsString::from(k), v));
        let program = Program::new(OsStr::new("/bin/sh"), args, env).expect("valid");
        let mut cmd = program.command();
        let envs: Vec<_> =
            cmd.as_std().get_envs().map(|(k, v)| (k.to_owned(), v.map(OsStr::to_owned))).collect();
        assert_eq!(
            envs,
            [("=odd", "x"), ("OUT", out.to_str().expect("utf-8")), ("V", "a=b")]
                .map(|(k, v)| (OsString::from(k), Some(OsString::from(v))))
        );
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let status = runtime.block_on(async { cmd.spawn().expect("spawned").wait().await.expect("waited") });
        assert!(status.success(), "{status}");
        assert_eq!(std::fs::read_to_string(&out).expect("written"), "first|a=b|named-so\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_program_that_cannot_run_is_an_error() {
        let missing =
            Program::new(OsStr::new("/nonexistent/program"), [OsString::from("x")], []).expect("valid");
        let err = start(&missing).err().expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }

    #[test]
    fn nul_bytes_and_empty_names_are_refused() {
        let bad_arg = Program::new(OsStr::new("/bin/sh"), [OsString::from("a\0b")], []);
        let bad_value =
            Program::new(OsStr::new("/bin/sh"), [], [(OsString::from("A"), OsString::from("c\0"))]);
        let empty_name = Program::new(OsStr::new("/bin/sh"), [], [(OsString::new(), OsString::from("c"))]);
        for p in [bad_arg, bad_value, empty_name] {
            assert_eq!(p.err().map(|e| e.kind()), Some(io::ErrorKind::InvalidInput));
        }
    }
}
