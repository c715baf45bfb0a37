//! The wire messages: one enum for the whole protocol.
//!
//! Every frame carries one [`Msg`]. Messages that belong to a call carry its
//! [`CallId`]; call ids are unique per channel because the side that connected
//! allocates odd ids and the side that accepted allocates even ids, so both
//! sides may start calls on one channel.
//!
//! Values (arguments, results, stream items) travel as nested msgpack documents
//! in byte fields, so the transport can route a frame without knowing the
//! application's types and the runtime can report a type mismatch precisely.
//!
//! The protocol is versioned by [`PROTOCOL_VERSION`], checked in the handshake.
//! `PROTOCOL.md` at the repository root specifies the encoding for other
//! languages.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::escape::Escaped;
use crate::trace::TraceContext;

/// The protocol version this crate speaks. Peers with another version are refused
/// in the handshake.
pub const PROTOCOL_VERSION: u32 = 2;

/// Identifies a call (or stream, or context) within one channel.
pub type CallId = u64;

/// A unique actor identity: a human-chosen name plus a random instance id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Uid {
    /// The actor's name, as given by whoever spawned or started it.
    pub name: String,
    /// A random id distinguishing instances with the same name.
    pub id: String,
}

impl Uid {
    /// A uid with the given name and a fresh random 64-bit id (hex).
    ///
    /// # Panics
    ///
    /// Panics if the operating system's random source fails, which leaves no
    /// safe way to create identities or secrets.
    pub fn new(name: impl Into<String>) -> Self {
        let mut raw = [0u8; 8];
        getrandom::fill(&mut raw).expect("the OS random source failed");
        Uid { name: name.into(), id: format!("{:016x}", u64::from_le_bytes(raw)) }
    }
}

/// `name#abcdef` (the first six characters of the id). A uid is chosen by the
/// peer, so control characters are escaped: a uid cannot forge log lines.
impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.id.char_indices().nth(6).map_or(self.id.as_str(), |(i, _)| &self.id[..i]);
        write!(f, "{}#{}", Escaped(&self.name), Escaped(id))
    }
}

/// How the caller wants a started call to be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallKind {
    /// One result ([`Msg::Return`]) or one error.
    Single,
    /// A sequence of [`Msg::Yield`] items, ended by [`Msg::Stop`] or [`Msg::Error`].
    Stream,
    /// A long-lived task: [`Msg::Started`] first, then items both ways, then
    /// [`Msg::Return`].
    Context,
}

/// What kind of failure a [`RemoteError`] reports. Callers match on this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The remote function returned an error.
    Application,
    /// The remote function panicked.
    Panic,
    /// No function of that name is registered in the remote binary.
    UnknownFunction,
    /// The function exists but the actor does not expose it.
    NotExposed,
    /// The arguments did not decode into the function's parameter types.
    BadArguments,
    /// The call was cancelled; `canceller` names who asked.
    Cancelled,
    /// A child actor process exited abnormally.
    Crashed,
    /// The remote side saw a protocol violation or a transport failure.
    Protocol,
    /// Several errors, carried in `nested` (a nursery's group error).
    Group,
    /// An error that arose in another actor and is relayed; the original is the
    /// single entry of `nested`.
    Relayed,
}

/// A structured error sent from the actor where it arose to its caller.
///
/// It is boxed on the wire ([`Msg::Error`]) and keeps its origin when relayed:
/// each relaying actor appends itself to `relay_path`, and errors from deeper
/// levels are kept whole in `nested`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteError {
    /// The actor where this error was raised.
    pub src: Uid,
    /// The category of failure.
    pub kind: ErrorKind,
    /// The Rust type name of the original error (or `panic`).
    pub type_name: String,
    /// The error's display message.
    pub message: String,
    /// The error's `source()` chain, outermost first, as messages.
    pub causes: Vec<String>,
    /// Every actor that relayed this error toward the caller, nearest the source
    /// first.
    pub relay_path: Vec<Uid>,
    /// Errors from other actors that this one carries (relayed or grouped).
    pub nested: Vec<RemoteError>,
    /// For [`ErrorKind::Cancelled`]: who requested the cancellation.
    pub canceller: Option<Uid>,
}

/// One protocol message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Msg {
    /// Handshake, both directions: protocol version, identity and a fresh random
    /// nonce that the peer's proof must cover.
    Hello {
        /// The sender's [`PROTOCOL_VERSION`].
        version: u32,
        /// The sender's identity.
        uid: Uid,
        /// 32 random bytes.
        nonce: Bytes,
    },
    /// Handshake, connecting side: an HMAC-SHA256 over both nonces and its uid,
    /// keyed by the shared secret; `None` when it holds no secret.
    Auth {
        /// The proof, or `None`.
        proof: Option<Bytes>,
    },
    /// Handshake, accepting side: the peer is admitted.
    Welcome,
    /// Handshake, accepting side: the peer is refused, and why.
    Refused {
        /// A human-readable reason.
        reason: String,
    },
    /// Start a call of `func` with msgpack-encoded `args`.
    ///
    /// Encoded by hand (see [`start_fields`]) so that the optional trailing
    /// fields stay positional: each is omitted only when it and every field
    /// after it are absent.
    #[serde(serialize_with = "start_fields")]
    Start {
        /// The new call's id.
        cid: CallId,
        /// The registered name of the remote function.
        func: String,
        /// Single result, stream or context.
        kind: CallKind,
        /// The arguments, a msgpack document.
        args: Bytes,
        /// How many items the callee may send before waiting for [`Msg::Credit`].
        window: u32,
        /// The time the caller still gives the call, in milliseconds: the
        /// callee cancels the call when it has passed, and calls it makes
        /// meanwhile inherit what is left. Optional and last: omitted when
        /// `None`, so a `Start` without it is encoded exactly as before.
        #[serde(default)]
        timeout_ms: Option<u64>,
        /// The idempotency key of the durable job this call is an attempt
        /// of, which the callee's function can read to deduplicate its side
        /// effects. Optional and last, like `timeout_ms`.
        #[serde(default)]
        key: Option<String>,
        /// The caller's W3C trace context: the callee's span joins this
        /// trace as a child of the caller's span. Optional and last, like
        /// `key`; a malformed one decodes as `None` (see [`crate::trace`]).
        #[serde(default, deserialize_with = "crate::trace::lenient")]
        trace: Option<TraceContext>,
    },
    /// The callee found the function and started it.
    StartAck {
        /// The call.
        cid: CallId,
    },
    /// A context's first value, sent by the callee.
    Started {
        /// The call.
        cid: CallId,
        /// A msgpack document.
        value: Bytes,
    },
    /// One stream item (either direction for a context).
    Yield {
        /// The call.
        cid: CallId,
        /// A msgpack document.
        value: Bytes,
    },
    /// Several stream items of one call in one frame, in order: what a
    /// sender whose peer is behind packs together (see [`crate::batch`]).
    /// Each item costs credit as if it came in its own [`Msg::Yield`].
    YieldBatch {
        /// The call.
        cid: CallId,
        /// The items, back to back, each a msgpack `bin` holding one msgpack
        /// document; at least one.
        items: Bytes,
    },
    /// The sender will yield no more items on this call.
    Stop {
        /// The call.
        cid: CallId,
    },
    /// The call's final result.
    Return {
        /// The call.
        cid: CallId,
        /// A msgpack document.
        value: Bytes,
    },
    /// The call failed.
    Error {
        /// The call.
        cid: CallId,
        /// What went wrong, where.
        error: Box<RemoteError>,
    },
    /// Cancel a call the sender started.
    Cancel {
        /// The call.
        cid: CallId,
        /// Who asks.
        canceller: Uid,
    },
    /// The callee's task for this call has ended after a [`Msg::Cancel`].
    CancelAck {
        /// The call.
        cid: CallId,
    },
    /// The receiver of a stream has consumed items: the sender may send `credit`
    /// more on this call.
    Credit {
        /// The call.
        cid: CallId,
        /// How many more items may be sent.
        credit: u32,
    },
    /// Configuration handed from a parent to a freshly spawned child; opaque to
    /// the transport (a msgpack document owned by the runtime).
    Init {
        /// A msgpack document.
        config: Bytes,
    },
    /// Cancel the receiving actor as a whole: all its calls and children.
    CancelActor {
        /// Who asks.
        canceller: Uid,
        /// Why.
        reason: String,
    },
    /// The actor has finished cancelling and is about to exit.
    CancelActorAck,
    /// Are you there? The peer answers [`Msg::Pong`] with the same nonce. Sent
    /// by a side that heard nothing for a while, so a peer that stopped (or
    /// a link that broke silently) is found within a bound.
    Ping {
        /// Echoed in the answer.
        nonce: u64,
    },
    /// The answer to [`Msg::Ping`].
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
}

/// Writes the fields of a [`Msg::Start`] as the array PROTOCOL.md
/// specifies: five fields, then `timeout_ms`, `key` and `trace` only as far
/// as the last one present (an absent one before a present one is nil).
#[allow(clippy::too_many_arguments)]
fn start_fields<S: serde::Serializer>(
    cid: &CallId,
    func: &String,
    kind: &CallKind,
    args: &Bytes,
    window: &u32,
    timeout_ms: &Option<u64>,
    key: &Option<String>,
    trace: &Option<TraceContext>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeTuple;
    let len = match (timeout_ms, key, trace) {
        (_, _, Some(_)) => 8,
        (_, Some(_), None) => 7,
        (Some(_), None, None) => 6,
        (None, None, None) => 5,
    };
    let mut t = s.serialize_tuple(len)?;
    t.serialize_element(cid)?;
    t.serialize_element(func)?;
    t.serialize_element(kind)?;
    t.serialize_element(args)?;
    t.serialize_element(window)?;
    if len > 5 {
        t.serialize_element(timeout_ms)?;
    }
    if len > 6 {
        t.serialize_element(key)?;
    }
    if let Some(trace) = trace {
        t.serialize_element(trace)?;
    }
    t.end()
}

/// A [`Msg::Yield`] whose item is a msgpack `bin` holding `data`, kept
/// apart from its header so that a [`Sender`](crate::Sender) writes `data`
/// from where it is instead of copying it into a document first. On the wire
/// it is the `Yield` of that document, byte for byte.
///
/// Sent with [`Sender::send_bytes_item`](crate::Sender::send_bytes_item).
#[derive(Clone, Debug, PartialEq)]
pub struct BytesItem {
    cid: CallId,
    data: Bytes,
}

impl BytesItem {
    /// The item `data` on call `cid`. Prefer
    /// [`Session::send_bytes_item`](crate::Session::send_bytes_item), which
    /// checks that the call may carry it.
    pub fn new(cid: CallId, data: Bytes) -> Self {
        BytesItem { cid, data }
    }

    /// The length of the msgpack document an item of `data_len` bytes is on
    /// the wire (its `bin` header and the bytes): what it costs in flow
    /// control, as the receiver counts it.
    pub fn doc_len(data_len: usize) -> usize {
        let head = match data_len {
            0..=0xff => 2,
            0x100..=0xffff => 3,
            _ => 5,
        };
        head + data_len
    }

    /// The call it belongs to.
    pub fn cid(&self) -> CallId {
        self.cid
    }

    /// The item's bytes.
    pub fn data(&self) -> &Bytes {
        &self.data
    }
}

impl Msg {
    /// The call this message belongs to, if it belongs to one.
    pub fn cid(&self) -> Option<CallId> {
        match self {
            Msg::Start { cid, .. }
            | Msg::StartAck { cid }
            | Msg::Started { cid, .. }
            | Msg::Yield { cid, .. }
            | Msg::YieldBatch { cid, .. }
            | Msg::Stop { cid }
            | Msg::Return { cid, .. }
            | Msg::Error { cid, .. }
            | Msg::Cancel { cid, .. }
            | Msg::CancelAck { cid }
            | Msg::Credit { cid, .. } => Some(*cid),
            _ => None,
        }
    }

    /// The message's variant name, for error messages and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Msg::Hello { .. } => "Hello",
            Msg::Auth { .. } => "Auth",
            Msg::Welcome => "Welcome",
            Msg::Refused { .. } => "Refused",
            Msg::Start { .. } => "Start",
            Msg::StartAck { .. } => "StartAck",
            Msg::Started { .. } => "Started",
            Msg::Yield { .. } => "Yield",
            Msg::YieldBatch { .. } => "YieldBatch",
            Msg::Stop { .. } => "Stop",
            Msg::Return { .. } => "Return",
            Msg::Error { .. } => "Error",
            Msg::Cancel { .. } => "Cancel",
            Msg::CancelAck { .. } => "CancelAck",
            Msg::Credit { .. } => "Credit",
            Msg::Init { .. } => "Init",
            Msg::CancelActor { .. } => "CancelActor",
            Msg::CancelActorAck => "CancelActorAck",
            Msg::Ping { .. } => "Ping",
            Msg::Pong { .. } => "Pong",
        }
    }
}

impl RemoteError {
    /// A new error raised in `src`, with no causes, relays or nested errors.
    pub fn new(src: Uid, kind: ErrorKind, type_name: impl Into<String>, message: impl Into<String>) -> Self {
        RemoteError {
            src,
            kind,
            type_name: type_name.into(),
            message: message.into(),
            causes: Vec::new(),
            relay_path: Vec::new(),
            nested: Vec::new(),
            canceller: None,
        }
    }

    /// The error where this one started: follows `Relayed` wrappers down to the
    /// first actor that raised something other than a relay.
    pub fn origin(&self) -> &RemoteError {
        match (self.kind, self.nested.as_slice()) {
            (ErrorKind::Relayed, [inner]) => inner.origin(),
            _ => self,
        }
    }

    fn fmt_indented(&self, f: &mut fmt::Formatter<'_>, depth: usize) -> fmt::Result {
        let pad = "  ".repeat(depth);
        match self.kind {
            ErrorKind::Relayed | ErrorKind::Group => write!(f, "actor `{}`: {}", self.src, self.message)?,
            ErrorKind::Cancelled => {
                write!(f, "actor `{}` was cancelled", self.src)?;
                if let Some(c) = &self.canceller {
                    write!(f, " by `{c}`")?;
                }
                if !self.message.is_empty() {
                    write!(f, ": {}", self.message)?;
                }
            }
            _ => write!(f, "actor `{}` failed: {} [{}]", self.src, self.message, self.type_name)?,
        }
        for cause in &self.causes {
            write!(f, "\n{pad}  caused by: {cause}")?;
        }
        if !self.relay_path.is_empty() {
            let path: Vec<String> = self.relay_path.iter().map(|u| format!("`{u}`")).collect();
            write!(f, "\n{pad}  relayed via: {}", path.join(" -> "))?;
        }
        for (i, inner) in self.nested.iter().enumerate() {
            if self.kind == ErrorKind::Group {
                write!(f, "\n{pad}  {}) ", i + 1)?;
            } else {
                write!(f, "\n{pad}  because ")?;
            }
            inner.fmt_indented(f, depth + 1)?;
        }
        Ok(())
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_indented(f, 0)
    }
}

impl std::error::Error for RemoteError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden encodings: PROTOCOL.md documents these bytes; a change here is a
    /// protocol change and needs a new PROTOCOL_VERSION.
    #[test]
    fn encodings_match_the_published_spec() {
        let enc = |m: &Msg| rmp_serde::to_vec(m).expect("encode");
        assert_eq!(enc(&Msg::Welcome), b"\xa7Welcome");
        assert_eq!(enc(&Msg::Auth { proof: None }), b"\x81\xa4Auth\x91\xc0");
        assert_eq!(
            enc(&Msg::Auth { proof: Some(Bytes::from_static(b"\x01\x02")) }),
            b"\x81\xa4Auth\x91\xc4\x02\x01\x02"
        );
        assert_eq!(
            enc(&Msg::Hello {
                version: PROTOCOL_VERSION,
                uid: Uid { name: "a".into(), id: "0f".into() },
                nonce: Bytes::from_static(b"\x07"),
            }),
            b"\x81\xa5Hello\x93\x02\x92\xa1a\xa20f\xc4\x01\x07"
        );
        assert_eq!(enc(&Msg::Credit { cid: 3, credit: 10 }), b"\x81\xa6Credit\x92\x03\x0a");
        assert_eq!(enc(&Msg::Stop { cid: 1 }), b"\x81\xa4Stop\x91\x01");
        assert_eq!(
            enc(&Msg::Yield { cid: 2, value: Bytes::from_static(b"\x2a") }),
            b"\x81\xa5Yield\x92\x02\xc4\x01\x2a"
        );
        assert_eq!(
            enc(&Msg::YieldBatch { cid: 2, items: Bytes::from_static(b"\xc4\x01\x2a\xc4\x01\x2b") }),
            b"\x81\xaaYieldBatch\x92\x02\xc4\x06\xc4\x01\x2a\xc4\x01\x2b"
        );
        assert_eq!(
            enc(&Msg::Start {
                cid: 1,
                func: "m::f".into(),
                kind: CallKind::Single,
                args: Bytes::from_static(b"\x90"),
                window: 1024,
                timeout_ms: None,
                key: None,
                trace: None,
            }),
            b"\x81\xa5Start\x95\x01\xa4m::f\xa6Single\xc4\x01\x90\xcd\x04\x00"
        );
        assert_eq!(
            enc(&Msg::Start {
                cid: 1,
                func: "m::f".into(),
                kind: CallKind::Single,
                args: Bytes::from_static(b"\x90"),
                window: 1024,
                timeout_ms: Some(250),
                key: None,
                trace: None,
            }),
            b"\x81\xa5Start\x96\x01\xa4m::f\xa6Single\xc4\x01\x90\xcd\x04\x00\xcc\xfa"
        );
        assert_eq!(
            enc(&Msg::Start {
                cid: 1,
                func: "m::f".into(),
                kind: CallKind::Single,
                args: Bytes::from_static(b"\x90"),
                window: 1024,
                timeout_ms: None,
                key: Some("k1".into()),
                trace: None,
            }),
            b"\x81\xa5Start\x97\x01\xa4m::f\xa6Single\xc4\x01\x90\xcd\x04\x00\xc0\xa2k1"
        );
    }

    /// A `Start` from a peer that never sends a timeout decodes as one
    /// without; one with a timeout keeps it.
    #[test]
    fn start_timeout_is_optional_on_the_wire() {
        let old = b"\x81\xa5Start\x95\x01\xa4m::f\xa6Single\xc4\x01\x90\xcd\x04\x00";
        match rmp_serde::from_slice::<Msg>(old) {
            Ok(Msg::Start { timeout_ms, window, .. }) => assert_eq!((timeout_ms, window), (None, 1024)),
            other => panic!("{other:?}"),
        }
        let new = b"\x81\xa5Start\x96\x01\xa4m::f\xa6Single\xc4\x01\x90\xcd\x04\x00\xcc\xfa";
        match rmp_serde::from_slice::<Msg>(new) {
            Ok(Msg::Start { timeout_ms, .. }) => assert_eq!(timeout_ms, Some(250)),
            other => panic!("{other:?}"),
        }
    }

    /// A job key travels as a seventh element, after `timeout_ms` (nil
    /// when there is none); older encodings still decode without one.
    #[test]
    fn start_key_is_optional_on_the_wire() {
        let keyed = b"\x81\xa5Start\x97\x01\xa4m::f\xa6Single\xc4\x01\x90\xcd\x04\x00\xc0\xa2k1";
        match rmp_serde::from_slice::<Msg>(keyed) {
            Ok(Msg::Start { timeout_ms, key, .. }) => {
                assert_eq!((timeout_ms, key), (None, Some("k1".into())))
            }
            other => panic!("{other:?}"),
        }
        let both = Msg::Start {
            cid: 3,
            func: "m::g".into(),
            kind: CallKind::Single,
            args: Bytes::from_static(b"\x90"),
            window: 1024,
            timeout_ms: Some(9),
            key: Some("wf/7".into()),
            trace: None,
        };
        let bytes = rmp_serde::to_vec(&both).expect("encode");
        assert_eq!(rmp_serde::from_slice::<Msg>(&bytes).ok(), Some(both));
        let old = b"\x81\xa5Start\x96\x01\xa4m::f\xa6Single\xc4\x01\x90\xcd\x04\x00\xcc\xfa";
        match rmp_serde::from_slice::<Msg>(old) {
            Ok(Msg::Start { key, .. }) => assert_eq!(key, None),
            other => panic!("{other:?}"),
        }
    }

    fn traced() -> TraceContext {
        let t = crate::trace::TraceId::from_bytes(
            *b"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10",
        );
        let s = crate::trace::SpanId::from_bytes(*b"\xa1\xa2\xa3\xa4\xa5\xa6\xa7\xa8");
        TraceContext::new(t.expect("nonzero"), s.expect("nonzero"), 1)
    }

    const TRACED: &[u8] = b"\x81\xa5Start\x98\x01\xa4m::f\xa6Single\xc4\x01\x90\xcd\x04\x00\xc0\xc0\
        \x93\xc4\x10\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\
        \xc4\x08\xa1\xa2\xa3\xa4\xa5\xa6\xa7\xa8\x01";

    /// A trace context is the eighth element, `[trace_id, span_id, flags]`,
    /// after a nil deadline and a nil key: the bytes PROTOCOL.md shows.
    #[test]
    fn start_trace_is_the_eighth_element() {
        let start = Msg::Start {
            cid: 1,
            func: "m::f".into(),
            kind: CallKind::Single,
            args: Bytes::from_static(b"\x90"),
            window: 1024,
            timeout_ms: None,
            key: None,
            trace: Some(traced()),
        };
        assert_eq!(rmp_serde::to_vec(&start).expect("encode"), TRACED);
        assert_eq!(rmp_serde::from_slice::<Msg>(TRACED).ok(), Some(start));
    }

    /// Whatever a peer puts where the trace context goes, the `Start`
    /// still decodes: a context of the wrong shape, or with a zero id, is
    /// none.
    #[test]
    fn a_malformed_trace_context_is_ignored() {
        let head = b"\x81\xa5Start\x98\x01\xa4m::f\xa6Single\xc4\x01\x90\xcd\x04\x00\xcc\xfa\xc0";
        let zero_trace =
            [b"\x93\xc4\x10".as_slice(), &[0; 16], b"\xc4\x08\xa1\xa2\xa3\xa4\xa5\xa6\xa7\xa8\x01"].concat();
        let zero_span = [&TRACED[TRACED.len() - 30..TRACED.len() - 9], &[0; 8], b"\x01"].concat();
        let bads: Vec<Vec<u8>> = vec![
            zero_trace,
            zero_span,
            b"\xc0".to_vec(),
            b"\xa3abc".to_vec(),
            b"\x2a".to_vec(),
            b"\x90".to_vec(),
            b"\x92\xc4\x01\x01\xc4\x01\x01".to_vec(),
            b"\x93\xc4\x02\x01\x02\xc4\x02\x01\x02\x01".to_vec(),
            b"\x94\xc4\x01\x01\xc4\x01\x01\x01\x01".to_vec(),
            b"\x81\xa1a\x93\x01\x02\x03".to_vec(),
            b"\x93\x93\x01\x02\x03\xc0\xcd\x01\x00".to_vec(),
            [&TRACED[TRACED.len() - 30..TRACED.len() - 1], b"\xcd\x01\x00"].concat(),
        ];
        for bad in bads {
            let frame = [head.as_slice(), &bad].concat();
            match rmp_serde::from_slice::<Msg>(&frame) {
                Ok(Msg::Start { trace, timeout_ms, .. }) => {
                    assert_eq!((trace, timeout_ms), (None, Some(250)), "{bad:02x?}")
                }
                other => panic!("{bad:02x?}: {other:?}"),
            }
        }
    }
}
