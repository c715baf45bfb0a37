//! What the parent and its fork server say to each other over their
//! `SOCK_SEQPACKET` pair: one datagram per request and per reply.
//!
//! A request is the word `fork` and then every environment variable
//! (`NAME=VALUE`) of the child to fork, each ended by a NUL byte, with the
//! working directory attached as an `O_PATH` descriptor (`SCM_RIGHTS`), so
//! the child starts in the very directory, renamed or deleted. A reply is
//! a native-endian `i32`: the child's pid, with its pidfd attached, or a
//! negated errno (nothing was forked). Before any request the server says
//! [`READY`], or [`REFUSED`] if it cannot fork safely.

use std::ffi::CString;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// The largest request, in bytes: an environment larger than this is
/// started the usual way. Below the default socket send buffer (208 KiB),
/// which bounds a datagram; a smaller buffer declines (`EMSGSIZE`).
pub(crate) const MAX_REQUEST: usize = 128 * 1024;

/// What every request starts with.
const TAG: &[u8] = b"fork\0";

/// The server's first word when it can serve.
pub(crate) const READY: &[u8] = b"ready";

/// The server's first (and last) word when this process was not single-
/// threaded at `actor::run`, so a fork could copy a lock held by a thread
/// that is not copied.
pub(crate) const REFUSED: &[u8] = b"threads";

/// Encodes a request for a child with the environment `env`; `None` if it
/// is larger than [`MAX_REQUEST`].
pub(crate) fn encode(env: &[CString]) -> Option<Vec<u8>> {
    let len = TAG.len() + env.iter().map(|v| v.as_bytes_with_nul().len()).sum::<usize>();
    if len > MAX_REQUEST {
        return None;
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(TAG);
    for s in env {
        out.extend_from_slice(s.as_bytes_with_nul());
    }
    Some(out)
}

/// Decodes a request into the child's environment; `None` unless it is
/// the tag and variables that each end with a NUL and have a name.
pub(crate) fn decode(bytes: &[u8]) -> Option<Vec<CString>> {
    let body = bytes.strip_prefix(TAG)?;
    if body.is_empty() {
        return Some(Vec::new());
    }
    body.strip_suffix(&[0])?
        .split(|&b| b == 0)
        .map(|pair| match pair.first() {
            // Never empty: a name comes before its `=`.
            Some(_) if pair.contains(&b'=') => CString::new(pair).ok(),
            _ => None,
        })
        .collect()
}

/// Sends one datagram with `fd` attached, if any.
pub(crate) fn send(sock: BorrowedFd<'_>, bytes: &[u8], fd: Option<RawFd>, flags: MsgFlags) -> io::Result<()> {
    let fds = fd.map(|f| [f]);
    let cmsgs: Vec<ControlMessage<'_>> =
        fds.as_ref().map(|f| ControlMessage::ScmRights(f)).into_iter().collect();
    let sent = sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(bytes)],
        &cmsgs,
        flags | MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    if sent != bytes.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "a datagram went out cut short"));
    }
    Ok(())
}

/// One datagram received: its length, whether it was longer than the
/// buffer, the descriptor it carried, and whether one was lost (this
/// process could not take it: the limit on open files).
pub(crate) struct Received {
    pub(crate) len: usize,
    pub(crate) truncated: bool,
    pub(crate) fd: Option<OwnedFd>,
    pub(crate) fd_lost: bool,
}

/// Receives one datagram into `buf`, taking a descriptor it carries
/// (close-on-exec). A datagram of length 0 is the other end closing.
pub(crate) fn recv(sock: BorrowedFd<'_>, buf: &mut [u8], flags: MsgFlags) -> io::Result<Received> {
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg =
        recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), flags | MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fd = None;
    // A control message cut short (`MSG_CTRUNC`) lost its descriptor.
    let cmsgs = msg.cmsgs();
    let fd_lost = cmsgs.is_err();
    for cmsg in cmsgs.into_iter().flatten() {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for raw in fds {
                // SAFETY: the kernel just installed it in our table for us.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                // One is expected; any more are closed here.
                fd.get_or_insert(owned);
            }
        }
    }
    Ok(Received { len: msg.bytes, truncated: msg.flags.contains(MsgFlags::MSG_TRUNC), fd, fd_lost })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> CString {
        CString::new(s).expect("no NUL")
    }

    #[test]
    fn a_request_round_trips_with_odd_names_and_values() {
        let env = vec![c("A=1"), c("=weird=name=x"), c("EMPTY="), c("PATH=/bin:/usr/bin")];
        assert_eq!(decode(&encode(&env).expect("small")), Some(env));
        assert_eq!(decode(&encode(&[]).expect("small")), Some(Vec::new()));
    }

    #[test]
    fn malformed_and_oversized_requests_are_refused() {
        for bad in [&b""[..], b"fork", b"spoon\0A=1\0", b"fork\0A=1", b"fork\0\0", b"fork\0NOEQUALS\0"] {
            assert!(decode(bad).is_none(), "{bad:?}");
        }
        let big = c(&format!("X={}", "v".repeat(MAX_REQUEST)));
        assert!(encode(&[big]).is_none());
        let fits = c(&format!("X={}", "v".repeat(MAX_REQUEST - TAG.len() - 3)));
        assert!(encode(&[fits]).is_some_and(|b| b.len() == MAX_REQUEST));
    }
}
