//! What the parent and its fork server say to each other over their
//! `SOCK_SEQPACKET` pair: one datagram per request and per reply.
//!
//! A request is the working directory and then every environment variable
//! (`NAME=VALUE`) of the child to fork, each ended by a NUL byte. A reply is
//! a native-endian `i32`: the child's pid, with its pidfd attached
//! (`SCM_RIGHTS`), or a negated errno. Before any request the server says
//! [`READY`], or [`REFUSED`] if it cannot fork safely.

use std::ffi::CString;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// The largest request, in bytes: an environment larger than this is
/// started the usual way.
pub(crate) const MAX_REQUEST: usize = 256 * 1024;

/// The server's first word when it can serve.
pub(crate) const READY: &[u8] = b"ready";

/// The server's first (and last) word when this process was not single-
/// threaded at `actor::run`, so a fork could copy a lock held by a thread
/// that is not copied.
pub(crate) const REFUSED: &[u8] = b"threads";

/// A request: where the child starts, and its whole environment.
pub(crate) struct Request {
    pub(crate) cwd: CString,
    pub(crate) env: Vec<CString>,
}

/// Encodes a request; `None` if it is larger than [`MAX_REQUEST`].
pub(crate) fn encode(cwd: &CString, env: &[CString]) -> Option<Vec<u8>> {
    let len = cwd.as_bytes_with_nul().len() + env.iter().map(|v| v.as_bytes_with_nul().len()).sum::<usize>();
    if len > MAX_REQUEST {
        return None;
    }
    let mut out = Vec::with_capacity(len);
    for s in std::iter::once(cwd).chain(env) {
        out.extend_from_slice(s.as_bytes_with_nul());
    }
    Some(out)
}

/// Decodes a request; `None` unless it is a working directory and
/// variables that each end with a NUL and have a name.
pub(crate) fn decode(bytes: &[u8]) -> Option<Request> {
    let body = bytes.strip_suffix(&[0])?;
    let mut parts = body.split(|&b| b == 0);
    let cwd = CString::new(parts.next()?).ok()?;
    let env = parts
        .map(|pair| match pair.first() {
            // Never empty: a name comes before its `=`.
            Some(_) if pair.contains(&b'=') => CString::new(pair).ok(),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Request { cwd, env })
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
/// buffer, and the descriptor it carried.
pub(crate) struct Received {
    pub(crate) len: usize,
    pub(crate) truncated: bool,
    pub(crate) fd: Option<OwnedFd>,
}

/// Receives one datagram into `buf`, taking a descriptor it carries
/// (close-on-exec). A datagram of length 0 is the other end closing.
pub(crate) fn recv(sock: BorrowedFd<'_>, buf: &mut [u8], flags: MsgFlags) -> io::Result<Received> {
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg =
        recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), flags | MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fd = None;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for raw in fds {
                // SAFETY: the kernel just installed it in our table for us.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                // One is expected; any more are closed here.
                fd.get_or_insert(owned);
            }
        }
    }
    Ok(Received { len: msg.bytes, truncated: msg.flags.contains(MsgFlags::MSG_TRUNC), fd })
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
        let bytes = encode(&c("/tmp"), &env).expect("small");
        let req = decode(&bytes).expect("valid");
        assert_eq!(req.cwd, c("/tmp"));
        assert_eq!(req.env, env);
        let none = decode(&encode(&c(""), &[]).expect("small")).expect("valid");
        assert!(none.cwd.as_bytes().is_empty() && none.env.is_empty());
    }

    #[test]
    fn malformed_and_oversized_requests_are_refused() {
        for bad in [&b""[..], b"/tmp", b"/tmp\0A=1", b"/tmp\0\0", b"/tmp\0NOEQUALS\0"] {
            assert!(decode(bad).is_none(), "{bad:?}");
        }
        let big = c(&format!("X={}", "v".repeat(MAX_REQUEST)));
        assert!(encode(&c("/"), &[big]).is_none());
        let fits = c(&format!("X={}", "v".repeat(MAX_REQUEST - 5)));
        assert!(encode(&c("/"), &[fits]).is_some_and(|b| b.len() == MAX_REQUEST));
    }
}
