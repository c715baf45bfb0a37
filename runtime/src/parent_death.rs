//! What a child actor does when its parent process dies: it takes its whole
//! process group down, itself and every helper it started, at once.
//!
//! A child arms `PR_SET_PDEATHSIG` first thing, so the kernel signals it when
//! the parent dies, even by SIGKILL. With SIGKILL as that signal the child
//! died but the helpers it had started (`std::process::Command`, in its
//! process group) were re-parented and lived on. So the signal is a real-time
//! signal reserved for this, whose handler kills the child's own group with
//! SIGKILL. The handler is a raw `sigaction` handler, not a tokio signal
//! stream: it must work while the actor's only runtime thread is blocked in
//! user code, and `kill(2)` is async-signal-safe.
//!
//! Grandchildren lead groups of their own; they get the same signal when
//! their parent (this child) dies, so a SIGKILL anywhere takes down the whole
//! subtree below it, helpers included.
//!
//! The price of a catchable signal: a child stopped with SIGSTOP when its
//! parent dies runs the handler only once it is continued (SIGKILL would
//! have killed it at once). Nothing stops children on its own (a terminal's
//! Ctrl-Z reaches only the root's group), and the kernel continues a stopped
//! group that is orphaned, so this takes a deliberate SIGSTOP.

use std::io;

use nix::libc;

/// The signal the kernel sends a child actor when its parent dies. Reserved
/// in child actors: user code must not install a handler for it.
pub(crate) fn signal() -> libc::c_int {
    libc::SIGRTMAX() - 1
}

/// Asks the kernel to send [`signal`] to this process when its parent thread
/// exits. Called by the child itself, after [`install_handler`]; a parent
/// that died before this leaves the child re-parented, which the caller
/// checks next (the parent pid is no longer the one it was spawned by).
///
/// # Errors
///
/// The `prctl(2)` error.
pub(crate) fn arm() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal() as libc::c_ulong, 0, 0, 0) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Installs the handler that kills this process's group when [`signal`]
/// arrives. Called first thing in a spawned child, before it runs anything
/// that could start a helper.
///
/// # Errors
///
/// The `sigaction(2)` error; the child should not run without it.
pub(crate) fn install_handler() -> io::Result<()> {
    extern "C" fn on_parent_death(_: libc::c_int) {
        // SAFETY: kill(2) is async-signal-safe. Pid 0 is our own process
        // group: this process (a group leader) and the helpers it started.
        unsafe {
            libc::kill(0, libc::SIGKILL);
        }
    }
    // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the handler
    // is a plain extern "C" fn that only calls kill(2).
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_parent_death as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal(), &action, std::ptr::null_mut())
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}
