//! The one error type users see: [`Error`].

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use actor_transport::{ChannelError, ErrorKind, HandshakeError, RemoteError, Uid};

mod leaves;

pub use leaves::{Leaf, Leaves};

/// `Result<T, actor::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the runtime, as variants a caller can match.
///
/// `Display` (and `Debug`, so `fn main() -> actor::Result<()>` prints it well)
/// tells a person which actor failed, where and why.
#[derive(Clone)]
#[non_exhaustive]
pub enum Error {
    /// A remote actor's call failed. The boxed [`RemoteError`] carries the source
    /// actor, the error's type and message, its cause chain, the actors that
    /// relayed it, and nested errors from deeper levels. Its `kind` says whether
    /// the function failed, panicked, was unknown, not exposed, got bad arguments,
    /// was cancelled, or its actor crashed.
    Remote(Box<RemoteError>),
    /// Several actors of one nursery failed; each error is kept.
    Group(Vec<Error>),
    /// This operation was cancelled: by a nursery tearing down, a cancelled
    /// actor, or a signal.
    Cancelled {
        /// Who asked for the cancellation, when known.
        canceller: Option<Uid>,
        /// Why.
        reason: String,
    },
    /// A child actor's process ended abnormally (non-zero exit, signal) or
    /// without delivering its result.
    ActorCrashed {
        /// The child.
        actor: Uid,
        /// The host it ran on, for a child spawned on another host through
        /// its agent ([`ActorBuilder::on_host`](crate::ActorBuilder::on_host));
        /// `None` for a child on this host.
        host: Option<String>,
        /// How it ended, e.g. `exit status 3` or `signal 9 (SIGKILL)`.
        status: String,
    },
    /// A child actor on another host can no longer be supervised: the
    /// channel to the agent that started it broke (the host is partitioned
    /// or down, or the agent stopped), so how it ends is unknown here. The
    /// agent kills a child whose parent it loses, so it does not outlive
    /// this (see [`ActorBuilder::on_host`](crate::ActorBuilder::on_host)).
    ActorLost {
        /// The child.
        actor: Uid,
        /// The host it ran on, as its agent names it.
        host: String,
        /// What was lost, and why.
        reason: String,
    },
    /// A supervised actor needed more restarts than its nursery's intensity
    /// allows (see [`Supervision::intensity`](crate::Supervision::intensity)):
    /// the nursery stopped restarting, cancelled its actors and failed with
    /// this.
    RestartIntensity {
        /// The name of the actor whose restart broke the limit.
        actor: String,
        /// The cause of every restart within the period, oldest first; the
        /// last is the failure that was not restarted.
        causes: Vec<Error>,
    },
    /// Every attempt of a retried call failed (see
    /// [`Portal::run_with_retry`](crate::Portal::run_with_retry)).
    Retries {
        /// The function's registered name.
        function: String,
        /// The name of the actor it was called in.
        actor: String,
        /// Each attempt's error, in order.
        attempts: Vec<Error>,
    },
    /// A child actor could not be started.
    Spawn {
        /// The name asked for.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// An actor name was refused at spawn: empty, too long, or holding `#`,
    /// whitespace or control characters.
    InvalidName {
        /// The name asked for.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The channel to a peer broke while a call was in flight.
    Disconnected {
        /// The peer.
        peer: Uid,
        /// Why the channel ended.
        reason: String,
    },
    /// A channel error (bad frame, closed channel).
    Channel(ChannelError),
    /// A handshake with a peer failed.
    Handshake(Arc<HandshakeError>),
    /// A value could not be encoded or decoded as the expected type.
    Codec {
        /// What was being encoded or decoded, e.g. `result of app::add`.
        what: String,
        /// The serializer's explanation.
        reason: String,
    },
    /// An operation did not finish in time.
    Timeout {
        /// What was being waited for.
        what: String,
        /// The limit.
        after: Duration,
    },
    /// A runtime function was used outside `actor::run`, or after shutdown.
    NotRunning,
    /// Actor-local state was asked for but none was given at spawn, or it does
    /// not decode as the requested type.
    State(String),
    /// The arbiter could not be reached, hosted, or asked.
    Arbiter(String),
    /// The configuration is invalid or unsafe (e.g. plaintext beyond this host).
    Config(String),
    /// A local I/O failure (binding a listener, spawning a process).
    Io(Arc<std::io::Error>),
    /// An application error raised locally: see [`Error::app`] and [`Error::msg`].
    App(AppError),
    /// A durable job or workflow failed, or its journal did (see
    /// [`jobs`](crate::jobs)): match on the [`JobError`](crate::jobs::JobError).
    Job(Box<crate::jobs::JobError>),
}

/// An application error captured with its type name and cause chain, so it can
/// be sent to a remote caller intact.
#[derive(Clone)]
pub struct AppError {
    type_name: String,
    message: String,
    causes: Vec<String>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl AppError {
    fn new(type_name: &str, e: Arc<dyn std::error::Error + Send + Sync>) -> AppError {
        AppError {
            type_name: type_name.to_owned(),
            message: e.to_string(),
            causes: cause_chain(e.as_ref()),
            source: Some(e),
        }
    }

    /// The Rust type name of the original error.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }
    /// Its message.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The messages of its `source()` chain, outermost first.
    pub fn causes(&self) -> &[String] {
        &self.causes
    }
    /// The original error, when it was created by [`Error::app`].
    pub fn source_error(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

fn cause_chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut causes = Vec::new();
    let mut next = e.source();
    while let Some(c) = next {
        causes.push(c.to_string());
        next = c.source();
    }
    causes
}

impl Error {
    /// Wraps any application error, keeping its type name and cause chain. An
    /// [`Error`] passed in is returned unchanged.
    ///
    /// Inside a `#[actor::remote]` function declared `-> actor::Result<T>`,
    /// `?` does this for you.
    pub fn app<E: std::error::Error + Send + Sync + 'static>(e: E) -> Error {
        let any: Box<dyn Any> = Box::new(e);
        match any.downcast::<Error>() {
            Ok(err) => *err,
            Err(any) => {
                // The downcast above failed, so `any` still holds an `E`.
                let e = *any.downcast::<E>().unwrap_or_else(|_| unreachable!("holds an E"));
                Error::App(AppError::new(std::any::type_name::<E>(), Arc::new(e)))
            }
        }
    }

    /// Wraps a boxed error (also what `anyhow::Error` and `eyre::Report`
    /// convert into), naming it `type_name`. A boxed [`Error`] is unboxed.
    pub(crate) fn from_boxed(e: Box<dyn std::error::Error + Send + Sync>, type_name: &str) -> Error {
        match e.downcast::<Error>() {
            Ok(err) => *err,
            Err(e) => Error::App(AppError::new(type_name, Arc::from(e))),
        }
    }

    /// An application error from a message alone.
    pub fn msg(message: impl fmt::Display) -> Error {
        Error::App(AppError {
            type_name: "actor::Error".to_owned(),
            message: message.to_string(),
            causes: Vec::new(),
            source: None,
        })
    }

    /// The remote error, if this is [`Error::Remote`].
    pub fn as_remote(&self) -> Option<&RemoteError> {
        match self {
            Error::Remote(r) => Some(r),
            _ => None,
        }
    }

    /// The original failures this error is made of: walks groups (local
    /// [`Error::Group`] and remote ones from deeper nurseries) and relay
    /// wrappers down to the errors actors actually raised, so the first
    /// item of a nursery error three levels deep is the leaf actor's own
    /// error, with its source and relay path. An error that is neither a group
    /// nor remote yields itself. Cancellations are leaves too: skip them with
    /// [`Leaf::is_cancelled`].
    ///
    /// ```
    /// # fn report(e: &actor::Error) {
    /// for leaf in e.leaves().filter(|l| !l.is_cancelled()) {
    ///     let actor = leaf.actor().map(|a| a.to_string()).unwrap_or_else(|| "here".into());
    ///     eprintln!("{actor}: {}", leaf.message());
    /// }
    /// # }
    /// ```
    pub fn leaves(&self) -> Leaves<'_> {
        Leaves::new(self)
    }

    /// Whether this is a cancellation (locally, or reported by a remote actor).
    pub fn is_cancelled(&self) -> bool {
        match self {
            Error::Cancelled { .. } => true,
            Error::Remote(r) => r.kind == ErrorKind::Cancelled,
            _ => false,
        }
    }

    /// Who cancelled, for a cancellation (local, or reported by a remote
    /// actor) that names its canceller; `None` otherwise.
    pub fn canceller(&self) -> Option<&Uid> {
        match self {
            Error::Cancelled { canceller, .. } => canceller.as_ref(),
            Error::Remote(r) if r.kind == ErrorKind::Cancelled => r.canceller.as_ref(),
            _ => None,
        }
    }

    pub(crate) fn codec(what: impl Into<String>, reason: impl fmt::Display) -> Error {
        Error::Codec { what: what.into(), reason: reason.to_string() }
    }

    /// Converts this error into the wire form sent by actor `me` to its caller.
    /// Remote errors are wrapped as relayed (both sources stay visible) and get
    /// `me` appended to their relay path. Nesting is capped so that an error
    /// relayed through a very deep tree still fits the decoder's depth limit.
    pub(crate) fn to_remote(&self, me: &Uid) -> RemoteError {
        let mut e = self.to_remote_unbounded(me);
        cap_nesting(&mut e, MAX_NESTING);
        e
    }

    fn to_remote_unbounded(&self, me: &Uid) -> RemoteError {
        // `me` relays the whole tree of `r`, not only its outermost error: a
        // leaf's error lists every actor it passed through on its way up.
        let relay = |r: &RemoteError| {
            let mut r = r.clone();
            push_relay(&mut r, me);
            r
        };
        match self {
            Error::Remote(r) => {
                let mut e = RemoteError::new(
                    me.clone(),
                    ErrorKind::Relayed,
                    "actor::Error::Remote",
                    format!("error from actor `{}`", r.origin().src),
                );
                e.nested.push(relay(r));
                e
            }
            Error::Group(errors) => {
                let mut e = RemoteError::new(
                    me.clone(),
                    ErrorKind::Group,
                    "actor::Error::Group",
                    format!("{} actors failed", errors.len()),
                );
                e.nested = errors.iter().map(|x| x.to_remote_unbounded(me)).collect();
                e
            }
            Error::RestartIntensity { actor, causes } => {
                let mut e = RemoteError::new(
                    me.clone(),
                    ErrorKind::Group,
                    "actor::Error::RestartIntensity",
                    format!(
                        "actor `{actor}` failed more often than its nursery restarts ({} causes)",
                        causes.len()
                    ),
                );
                e.nested = causes.iter().map(|x| x.to_remote_unbounded(me)).collect();
                e
            }
            Error::Cancelled { canceller, reason } => {
                let mut e =
                    RemoteError::new(me.clone(), ErrorKind::Cancelled, "actor::Error::Cancelled", reason);
                e.canceller = canceller.clone();
                e
            }
            Error::ActorCrashed { actor, host, status } => {
                let message = match host {
                    Some(host) => format!("process on host `{host}` ended: {status}"),
                    None => format!("process ended: {status}"),
                };
                let mut e = RemoteError::new(
                    actor.clone(),
                    ErrorKind::Crashed,
                    "actor::Error::ActorCrashed",
                    message,
                );
                e.relay_path.push(me.clone());
                e
            }
            Error::ActorLost { actor, host, reason } => {
                let mut e = RemoteError::new(
                    actor.clone(),
                    ErrorKind::Crashed,
                    "actor::Error::ActorLost",
                    format!("lost on host `{host}`: {reason}"),
                );
                e.relay_path.push(me.clone());
                e
            }
            Error::App(a) => {
                let mut e = RemoteError::new(me.clone(), ErrorKind::Application, &a.type_name, &a.message);
                e.causes = a.causes.clone();
                e
            }
            other => {
                let kind = match other {
                    Error::Channel(_) | Error::Handshake(_) | Error::Disconnected { .. } => {
                        ErrorKind::Protocol
                    }
                    _ => ErrorKind::Application,
                };
                let mut e = RemoteError::new(me.clone(), kind, other.variant_name(), other.to_string());
                e.causes = cause_chain(other);
                e
            }
        }
    }

    fn variant_name(&self) -> &'static str {
        match self {
            Error::Remote(_) => "actor::Error::Remote",
            Error::Group(_) => "actor::Error::Group",
            Error::Cancelled { .. } => "actor::Error::Cancelled",
            Error::ActorCrashed { .. } => "actor::Error::ActorCrashed",
            Error::ActorLost { .. } => "actor::Error::ActorLost",
            Error::RestartIntensity { .. } => "actor::Error::RestartIntensity",
            Error::Retries { .. } => "actor::Error::Retries",
            Error::Spawn { .. } => "actor::Error::Spawn",
            Error::InvalidName { .. } => "actor::Error::InvalidName",
            Error::Disconnected { .. } => "actor::Error::Disconnected",
            Error::Channel(_) => "actor::Error::Channel",
            Error::Handshake(_) => "actor::Error::Handshake",
            Error::Codec { .. } => "actor::Error::Codec",
            Error::Timeout { .. } => "actor::Error::Timeout",
            Error::NotRunning => "actor::Error::NotRunning",
            Error::State(_) => "actor::Error::State",
            Error::Io(_) => "actor::Error::Io",
            Error::Arbiter(_) => "actor::Error::Arbiter",
            Error::Config(_) => "actor::Error::Config",
            Error::App(_) => "actor::Error::App",
            Error::Job(_) => "actor::Error::Job",
        }
    }
}

/// Appends `me` to the relay path of `e` and of every error nested in it.
fn push_relay(e: &mut RemoteError, me: &Uid) {
    e.relay_path.push(me.clone());
    for inner in &mut e.nested {
        push_relay(inner, me);
    }
}

/// How many levels of nested remote errors travel; deeper ones are summarised.
/// Each level costs a few msgpack nesting levels, and decoders refuse
/// documents nested deeper than 64.
const MAX_NESTING: usize = 12;

/// Replaces what lies deeper than `budget` levels by a one-line summary in the
/// deepest kept error's causes.
fn cap_nesting(e: &mut RemoteError, budget: usize) {
    if budget == 0 {
        if !e.nested.is_empty() {
            let origin = e.origin().src.clone();
            let n = e.nested.len();
            e.nested.clear();
            e.causes.push(format!("{n} deeper error(s) omitted; the first arose in `{origin}`"));
        }
        return;
    }
    for inner in &mut e.nested {
        cap_nesting(inner, budget - 1);
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Remote(r) => write!(f, "remote error: {r}"),
            Error::Group(errors) => {
                write!(f, "{} actors failed:", errors.len())?;
                for (i, e) in errors.iter().enumerate() {
                    // Each member with its whole chain: a group has no single
                    // `source()` to carry them.
                    let text = format!("{e:?}").replace('\n', "\n   ");
                    write!(f, "\n{}) {text}", i + 1)?;
                }
                Ok(())
            }
            Error::RestartIntensity { actor, causes } => {
                write!(
                    f,
                    "actor `{actor}` failed more often than its nursery restarts; every cause in order:"
                )?;
                for (i, e) in causes.iter().enumerate() {
                    let text = e.to_string().replace('\n', "\n   ");
                    write!(f, "\n{}) {text}", i + 1)?;
                }
                Ok(())
            }
            Error::Retries { function, actor, attempts } => {
                write!(f, "`{function}` on actor `{actor}` failed {} attempt(s):", attempts.len())?;
                for (i, e) in attempts.iter().enumerate() {
                    let text = e.to_string().replace('\n', "\n   ");
                    write!(f, "\n{}) {text}", i + 1)?;
                }
                Ok(())
            }
            Error::Cancelled { canceller: Some(c), reason } => write!(f, "cancelled by `{c}`: {reason}"),
            Error::Cancelled { canceller: None, reason } => write!(f, "cancelled: {reason}"),
            Error::ActorCrashed { actor, host: None, status } => {
                write!(f, "actor `{actor}` crashed: {status}")
            }
            Error::ActorCrashed { actor, host: Some(host), status } => {
                write!(f, "actor `{actor}` on host `{host}` crashed: {status}")
            }
            Error::ActorLost { actor, host, reason } => {
                write!(f, "lost actor `{actor}` on host `{host}`: {reason}")
            }
            Error::Spawn { name, reason } => write!(f, "cannot spawn actor `{name}`: {reason}"),
            Error::InvalidName { name, reason } => write!(f, "invalid actor name {name:?}: {reason}"),
            Error::Disconnected { peer, reason } => write!(f, "lost the channel to actor `{peer}`: {reason}"),
            Error::Channel(e) => write!(f, "channel error: {e}"),
            Error::Handshake(e) => write!(f, "handshake failed: {e}"),
            Error::Codec { what, reason } => write!(f, "cannot encode or decode {what}: {reason}"),
            Error::Timeout { what, after } => write!(f, "timed out after {after:?} waiting for {what}"),
            Error::NotRunning => {
                f.write_str("the actor runtime is not running here (call this inside actor::run)")
            }
            Error::State(reason) => write!(f, "actor-local state: {reason}"),
            Error::Io(e) => write!(f, "i/o error: {e}"),
            Error::Arbiter(reason) => write!(f, "arbiter: {reason}"),
            Error::Config(reason) => write!(f, "configuration: {reason}"),
            Error::App(a) => fmt::Display::fmt(a, f),
            Error::Job(e) => fmt::Display::fmt(e, f),
        }
    }
}

/// `Display`, then each cause of the `source()` chain on its own line: what
/// `fn main() -> actor::Result<()>` prints.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)?;
        let mut next = std::error::Error::source(self);
        while let Some(cause) = next {
            write!(f, "\n  caused by: {cause}")?;
            next = cause.source();
        }
        Ok(())
    }
}

/// Each piece of text is either in `Display` or in the `source()` chain, never
/// both, so reporters that print the chain (anyhow's `{:#}` and `{:?}`, eyre)
/// print every line once. A remote error's report is a tree (relays, groups),
/// not a chain, so `Display` holds all of it and `source()` is `None`; wrapped
/// local errors are shown in `Display` and their own causes follow as `source()`.
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Channel(e) => e.source(),
            Error::Handshake(e) => e.source(),
            Error::Io(e) => e.source(),
            Error::App(a) => a.source(),
            _ => None,
        }
    }
}

/// The original error's message; its causes are its `source()` chain.
impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppError")
            .field("type_name", &self.type_name)
            .field("message", &self.message)
            .field("causes", &self.causes)
            .finish()
    }
}

/// Stands in for the original error: the same message and the same causes.
impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().and_then(|s| s.source())
    }
}

/// Lets `?` take a boxed error, for instance from a library that returns one.
impl From<Box<dyn std::error::Error + Send + Sync>> for Error {
    fn from(e: Box<dyn std::error::Error + Send + Sync>) -> Self {
        Error::from_boxed(e, "Box<dyn std::error::Error>")
    }
}

impl From<ChannelError> for Error {
    fn from(e: ChannelError) -> Self {
        Error::Channel(e)
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Error::Handshake(Arc::new(e))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl From<RemoteError> for Error {
    fn from(e: RemoteError) -> Self {
        Error::Remote(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn app_errors_keep_type_and_causes() {
        let e = Error::app(Outer(std::io::Error::other("inner")));
        let Error::App(a) = &e else { panic!("expected App, got {e}") };
        assert!(a.type_name().ends_with("Outer"));
        assert_eq!(a.causes(), ["inner"]);
        let me = Uid::new("me");
        let r = e.to_remote(&me);
        assert_eq!(r.kind, ErrorKind::Application);
        assert_eq!(r.causes, ["inner"]);
    }

    #[test]
    fn app_of_an_actor_error_is_identity() {
        let e = Error::app(Error::NotRunning);
        assert!(matches!(e, Error::NotRunning));
    }

    #[test]
    fn very_deep_relays_are_capped_and_still_decode() {
        let mut e = Error::from(RemoteError::new(Uid::new("leaf"), ErrorKind::Application, "T", "deep"));
        for i in 0..100 {
            e = Error::Remote(Box::new(e.to_remote(&Uid::new(format!("relay{i}")))));
        }
        let wire = e.to_remote(&Uid::new("root"));
        let bytes = rmp_serde::to_vec(&wire).unwrap();
        let back: RemoteError = actor_transport::codec::decode_value(&bytes).unwrap();
        assert_eq!(back, wire);
        assert!(e.to_string().contains("omitted"), "{e}");
    }

    #[test]
    fn relays_mark_every_nested_error_with_the_relaying_actor() {
        let (leaf, mid, top) = (Uid::new("leaf"), Uid::new("mid"), Uid::new("top"));
        let original = RemoteError::new(leaf.clone(), ErrorKind::Application, "T", "boom");
        let at_top = Error::from(Error::from(original).to_remote(&mid)).to_remote(&top);
        let at_root = Error::from(at_top);
        let leaves: Vec<_> = at_root.leaves().collect();
        assert_eq!(leaves.len(), 1);
        assert_eq!(leaves[0].actor(), Some(&leaf));
        assert_eq!(leaves[0].relay_path(), [mid.clone(), top.clone()]);
        assert_eq!(leaves[0].message(), "boom");
        // The middle wrapper was relayed by `top` only.
        let outer = at_root.as_remote().map(|r| &r.nested[0]);
        assert_eq!(outer.map(|r| r.relay_path.clone()), Some(vec![top]));
    }

    #[test]
    fn leaves_walk_local_and_remote_groups_in_order() {
        let uid = |n: &str| Uid::new(n);
        let app = |src: &str, m: &str| RemoteError::new(uid(src), ErrorKind::Application, "T", m);
        // A remote group from a deeper nursery: two failures and a cancellation.
        let mut deep = RemoteError::new(uid("mid"), ErrorKind::Group, "actor::Error::Group", "3 failed");
        deep.nested = vec![
            app("a", "first"),
            app("b", "second"),
            RemoteError::new(uid("c"), ErrorKind::Cancelled, "actor::Error::Cancelled", "stop"),
        ];
        let crashed = Error::ActorCrashed { actor: uid("d"), host: None, status: "exit status 3".into() };
        let relay = uid("relay");
        let e = Error::Group(vec![
            Error::from(Error::from(deep).to_remote(&relay)),
            crashed,
            Error::msg("local trouble"),
        ]);
        let leaves: Vec<_> = e.leaves().collect();
        let names: Vec<_> = leaves.iter().map(|l| l.actor().map(|u| u.name.as_str())).collect();
        assert_eq!(names, [Some("a"), Some("b"), Some("c"), Some("d"), None]);
        let cancelled: Vec<_> = leaves.iter().map(Leaf::is_cancelled).collect();
        assert_eq!(cancelled, [false, false, true, false, false]);
        assert_eq!(leaves[0].relay_path(), [relay]);
        assert_eq!(leaves[4].message(), "local trouble");
        // A plain error is its own only leaf.
        assert_eq!(Error::NotRunning.leaves().count(), 1);
    }

    #[test]
    fn a_capped_relay_is_a_leaf() {
        let mut e = Error::from(RemoteError::new(Uid::new("leaf"), ErrorKind::Application, "T", "deep"));
        for i in 0..30 {
            e = Error::Remote(Box::new(e.to_remote(&Uid::new(format!("relay{i}")))));
        }
        let leaves: Vec<_> = e.leaves().collect();
        assert_eq!(leaves.len(), 1);
        assert!(leaves[0].to_string().contains("omitted"), "{}", leaves[0]);
    }

    #[test]
    fn relayed_errors_keep_both_sources() {
        let leaf = Uid::new("leaf");
        let mid = Uid::new("mid");
        let original = RemoteError::new(leaf.clone(), ErrorKind::Application, "T", "boom");
        let relayed = Error::from(original).to_remote(&mid);
        assert_eq!(relayed.kind, ErrorKind::Relayed);
        assert_eq!(relayed.src, mid);
        assert_eq!(relayed.origin().src, leaf);
        assert_eq!(relayed.nested[0].relay_path, vec![mid.clone()]);
        let text = Error::from(relayed).to_string();
        assert!(text.contains("leaf") && text.contains("mid") && text.contains("boom"), "{text}");
    }

    /// Every restart's cause is shown, numbered in order, and each is a leaf.
    #[test]
    fn restart_intensity_shows_and_yields_every_cause() {
        let crash = |n: u32| Error::ActorCrashed {
            actor: Uid { name: "w".into(), id: format!("{n:016x}") },
            host: None,
            status: "killed by signal 9 (SIGKILL)".into(),
        };
        let e = Error::RestartIntensity { actor: "w".into(), causes: vec![crash(1), crash(2)] };
        let text = e.to_string();
        assert!(text.contains("1) actor `w#") && text.contains("2) actor `w#"), "{text}");
        assert_eq!(e.leaves().count(), 2);
        let r = Error::Retries { function: "m::f".into(), actor: "w".into(), attempts: vec![crash(3)] };
        assert!(r.to_string().starts_with("`m::f` on actor `w` failed 1 attempt(s):"), "{r}");
        assert_eq!(r.leaves().count(), 1);
    }
}
