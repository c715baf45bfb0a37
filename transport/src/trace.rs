//! W3C trace context carried by a call's `Start`, so the spans of one
//! request in many actors join one trace.
//!
//! A [`TraceContext`] is what a caller hands its callee: the trace id, the
//! caller's span id (the parent of the callee's span) and the trace flags,
//! as in the W3C `traceparent` header. On the wire it is the array
//! `[trace_id: bin 16, span_id: bin 8, flags: u8]`. A peer may send
//! anything there, so decoding is lenient: a context of the wrong shape or
//! with an all-zero id decodes as none, and the call is served without it.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The flag bit saying the caller records this trace (W3C `sampled`).
pub const FLAG_SAMPLED: u8 = 0x01;

/// A 16-byte trace id, never all zero. Displays as 32 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

/// An 8-byte span id, never all zero. Displays as 16 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

impl TraceId {
    /// The id with these bytes, or `None` if they are all zero (invalid in
    /// W3C trace context).
    pub fn from_bytes(bytes: [u8; 16]) -> Option<TraceId> {
        (bytes != [0; 16]).then_some(TraceId(bytes))
    }

    /// A fresh random id (from a per-thread generator seeded by the OS).
    pub fn random() -> TraceId {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&nonzero_random().to_be_bytes());
        b[8..].copy_from_slice(&next_random().to_be_bytes());
        TraceId(b)
    }

    /// The id's bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

impl SpanId {
    /// The id with these bytes, or `None` if they are all zero.
    pub fn from_bytes(bytes: [u8; 8]) -> Option<SpanId> {
        (bytes != [0; 8]).then_some(SpanId(bytes))
    }

    /// A fresh random id (from a per-thread generator seeded by the OS).
    pub fn random() -> SpanId {
        SpanId(nonzero_random().to_be_bytes())
    }

    /// The id's bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

/// The trace context of a call: which trace it belongs to and which span
/// is its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: TraceId,
    span_id: SpanId,
    flags: u8,
}

/// Why a `traceparent` string was refused by [`TraceContext::parse`].
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TraceParseError {
    /// Not `version-traceid-spanid-flags` with 2, 32, 16 and 2 hex digits.
    #[error("a traceparent is `00-<32 hex>-<16 hex>-<2 hex>`, not {0:?}")]
    Malformed(String),
    /// Version `ff`, which W3C forbids.
    #[error("traceparent version ff is invalid")]
    BadVersion,
    /// An all-zero trace or span id.
    #[error("a traceparent's trace id and span id must not be all zero")]
    ZeroId,
}

impl TraceContext {
    /// A context in trace `trace_id` whose current span is `span_id`.
    pub fn new(trace_id: TraceId, span_id: SpanId, flags: u8) -> TraceContext {
        TraceContext { trace_id, span_id, flags }
    }

    /// A context starting a new trace: fresh random ids, sampled.
    pub fn new_root() -> TraceContext {
        TraceContext { trace_id: TraceId::random(), span_id: SpanId::random(), flags: FLAG_SAMPLED }
    }

    /// The context of a new span under this one: same trace and flags, a
    /// fresh span id.
    pub fn child(&self) -> TraceContext {
        TraceContext { span_id: SpanId::random(), ..*self }
    }

    /// The trace this context belongs to.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The span this context names (the parent of a span started from it).
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// The W3C trace flags ([`FLAG_SAMPLED`] is the only one defined).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// The W3C `traceparent` header value, `00-<trace id>-<span id>-<flags>`.
    pub fn traceparent(&self) -> String {
        self.to_string()
    }

    /// Parses a W3C `traceparent` header value (version 00, or a later
    /// version's first four fields).
    ///
    /// # Errors
    ///
    /// [`TraceParseError`] when it is malformed, has version `ff`, or an
    /// all-zero id.
    pub fn parse(s: &str) -> Result<TraceContext, TraceParseError> {
        let malformed = || TraceParseError::Malformed(s.chars().take(80).collect());
        let mut parts = s.trim().split('-');
        let (Some(v), Some(t), Some(p), Some(f)) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let version = hex_array::<1>(v).ok_or_else(malformed)?[0];
        if version == 0xff {
            return Err(TraceParseError::BadVersion);
        }
        // Version 00 has exactly four fields; later ones may add more.
        if version == 0 && parts.next().is_some() {
            return Err(malformed());
        }
        let trace = hex_array::<16>(t).ok_or_else(malformed)?;
        let span = hex_array::<8>(p).ok_or_else(malformed)?;
        let flags = hex_array::<1>(f).ok_or_else(malformed)?[0];
        match (TraceId::from_bytes(trace), SpanId::from_bytes(span)) {
            (Some(trace_id), Some(span_id)) => Ok(TraceContext { trace_id, span_id, flags }),
            _ => Err(TraceParseError::ZeroId),
        }
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{:02x}", self.trace_id, self.span_id, self.flags)
    }
}

/// Exactly `2 * N` hex digits (either case) as bytes.
fn hex_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    let digits = s.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        // Two hex digits: at most 255.
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

impl Serialize for TraceContext {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(3)?;
        t.serialize_element(serde_bytes::Bytes::new(&self.trace_id.0))?;
        t.serialize_element(serde_bytes::Bytes::new(&self.span_id.0))?;
        t.serialize_element(&self.flags)?;
        t.end()
    }
}

/// Decodes the trace field of a `Start`: whatever the peer sent there, a
/// context of the wrong shape or with a zero id is `None`, never an error,
/// so a bad context costs the call its trace and nothing else.
pub(crate) fn lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TraceContext>, D::Error> {
    d.deserialize_any(ContextVisitor)
}

struct ContextVisitor;

impl<'de> Visitor<'de> for ContextVisitor {
    type Value = Option<TraceContext>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a trace context or anything else")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut fields = [Scalar::Other, Scalar::Other, Scalar::Other];
        for field in &mut fields {
            match seq.next_element::<Scalar>()? {
                Some(value) => *field = value,
                None => return Ok(None),
            }
        }
        let mut extra = false;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            extra = true;
        }
        if extra {
            return Ok(None);
        }
        Ok(match fields {
            [Scalar::Bytes(t, 16), Scalar::Bytes(s, 8), Scalar::Uint(flags)] => {
                let trace_id = TraceId::from_bytes(t);
                let span_id = <[u8; 8]>::try_from(&s[..8]).ok().and_then(SpanId::from_bytes);
                match (trace_id, span_id, u8::try_from(flags)) {
                    (Some(trace_id), Some(span_id), Ok(flags)) => {
                        Some(TraceContext { trace_id, span_id, flags })
                    }
                    _ => None,
                }
            }
            _ => None,
        })
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        IgnoredAny::deserialize(d).map(|_| None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// One element of a trace context as the peer sent it. Bytes are kept in
/// place (at most 16, with their length): decoding a context allocates
/// nothing, as it is on every call's path.
enum Scalar {
    Bytes([u8; 16], usize),
    Uint(u64),
    Other,
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any msgpack value")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Scalar, E> {
        // Only ids are kept; a longer string is not one, whatever it holds.
        let mut kept = [0u8; 16];
        match kept.get_mut(..v.len()) {
            Some(dst) => {
                dst.copy_from_slice(v);
                Ok(Scalar::Bytes(kept, v.len()))
            }
            None => Ok(Scalar::Other),
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Uint(v))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }

    fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Scalar::Other)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Scalar::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

thread_local! {
    // Ids need to be unique, not secret: a per-thread SplitMix64 seeded
    // once from the OS costs a few nanoseconds per id.
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut raw = [0u8; 8];
    match getrandom::fill(&mut raw) {
        Ok(()) => u64::from_le_bytes(raw),
        // No OS randomness: the clock and the thread's stack address still
        // make collisions between processes unlikely, which is all ids need.
        Err(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let local = 0u8;
            now ^ (std::ptr::addr_of!(local) as u64) ^ u64::from(std::process::id()).rotate_left(32)
        }
    }
}

fn next_random() -> u64 {
    RNG.with(|state| {
        let s = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

fn nonzero_random() -> u64 {
    loop {
        let v = next_random();
        if v != 0 {
            return v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips() {
        let s = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = TraceContext::parse(s).expect("valid");
        assert_eq!(c.traceparent(), s);
        assert_eq!(c.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.span_id().to_string(), "00f067aa0ba902b7");
        assert_eq!(c.flags(), FLAG_SAMPLED);
        let upper = TraceContext::parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01");
        assert_eq!(upper, Ok(c));
    }

    #[test]
    fn bad_traceparents_are_typed_errors() {
        let zero = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        assert_eq!(TraceContext::parse(zero), Err(TraceParseError::ZeroId));
        let zero_span = "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
        assert_eq!(TraceContext::parse(zero_span), Err(TraceParseError::ZeroId));
        let ff = "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(TraceContext::parse(ff), Err(TraceParseError::BadVersion));
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01",
        ] {
            assert!(matches!(TraceContext::parse(bad), Err(TraceParseError::Malformed(_))), "{bad:?}");
        }
    }

    #[test]
    fn random_ids_differ_and_are_never_zero() {
        let a = TraceContext::new_root();
        let b = a.child();
        assert_eq!(a.trace_id(), b.trace_id());
        assert_ne!(a.span_id(), b.span_id());
        assert_ne!(TraceId::random(), TraceId::random());
        assert_eq!(TraceId::from_bytes([0; 16]), None);
        assert_eq!(SpanId::from_bytes([0; 8]), None);
    }
}
