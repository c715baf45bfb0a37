//! Walking an [`Error`] down to the failures it is made of.
//!
//! A nursery's error may be a group of errors, each of which may be a remote
//! error that actors relayed (and wrapped) on its way up, which may itself be
//! a group from a deeper nursery. A user asking "what actually failed?" wants
//! the leaves of that tree: [`Error::leaves`].

use actor_transport::{ErrorKind, RemoteError, Uid};

use super::Error;

/// One original failure inside an [`Error`]: not a group, not a relay
/// wrapper. From [`Error::leaves`].
#[derive(Clone, Copy, Debug)]
pub enum Leaf<'a> {
    /// A failure raised in a remote actor, as that actor reported it. Its
    /// `src` is the actor that raised it and its `relay_path` lists every
    /// actor that relayed it toward us, nearest the source first.
    Remote(&'a RemoteError),
    /// A failure observed or raised in this process: a child's crash seen by
    /// our nursery ([`Error::ActorCrashed`]), a local application error, a
    /// cancellation, a broken channel, ...
    Local(&'a Error),
}

impl<'a> Leaf<'a> {
    /// The actor the failure is about, when known: the remote source, or the
    /// crashed or unreachable actor of a local error. `None` for an error
    /// raised here that names no actor (an application error of this actor,
    /// say).
    pub fn actor(&self) -> Option<&'a Uid> {
        match *self {
            Leaf::Remote(r) => Some(&r.src),
            Leaf::Local(Error::ActorCrashed { actor, .. } | Error::ActorLost { actor, .. }) => Some(actor),
            Leaf::Local(Error::Disconnected { peer, .. }) => Some(peer),
            Leaf::Local(_) => None,
        }
    }

    /// Whether this leaf is a cancellation rather than a failure.
    pub fn is_cancelled(&self) -> bool {
        match *self {
            Leaf::Remote(r) => r.kind == ErrorKind::Cancelled,
            Leaf::Local(e) => e.is_cancelled(),
        }
    }

    /// The actors that relayed this failure toward us, nearest the source
    /// first; empty for a local leaf.
    pub fn relay_path(&self) -> &'a [Uid] {
        match *self {
            Leaf::Remote(r) => &r.relay_path,
            Leaf::Local(_) => &[],
        }
    }

    /// The failure's message, without its cause chain.
    pub fn message(&self) -> String {
        match *self {
            Leaf::Remote(r) => r.message.clone(),
            Leaf::Local(Error::App(a)) => a.message().to_owned(),
            Leaf::Local(e) => e.to_string(),
        }
    }
}

impl std::fmt::Display for Leaf<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Leaf::Remote(r) => write!(f, "{r}"),
            Leaf::Local(e) => write!(f, "{e}"),
        }
    }
}

/// Iterator over the leaves of an [`Error`], depth first, in the order the
/// errors are stored (a group's first error first). From [`Error::leaves`].
#[derive(Clone, Debug)]
pub struct Leaves<'a> {
    stack: Vec<Node<'a>>,
}

#[derive(Clone, Copy, Debug)]
enum Node<'a> {
    Local(&'a Error),
    Remote(&'a RemoteError),
}

impl<'a> Leaves<'a> {
    pub(super) fn new(e: &'a Error) -> Self {
        Leaves { stack: vec![Node::Local(e)] }
    }
}

impl<'a> Iterator for Leaves<'a> {
    type Item = Leaf<'a>;

    fn next(&mut self) -> Option<Leaf<'a>> {
        while let Some(node) = self.stack.pop() {
            match node {
                Node::Local(
                    Error::Group(errors)
                    | Error::RestartIntensity { causes: errors, .. }
                    | Error::Retries { attempts: errors, .. },
                ) => {
                    self.stack.extend(errors.iter().rev().map(Node::Local));
                }
                Node::Local(Error::Remote(r)) => self.stack.push(Node::Remote(r)),
                Node::Local(e) => return Some(Leaf::Local(e)),
                // A wrapper whose nested errors were cut off (very deep trees)
                // is the deepest thing we have: it is the leaf.
                Node::Remote(r)
                    if matches!(r.kind, ErrorKind::Relayed | ErrorKind::Group) && !r.nested.is_empty() =>
                {
                    self.stack.extend(r.nested.iter().rev().map(Node::Remote));
                }
                Node::Remote(r) => return Some(Leaf::Remote(r)),
            }
        }
        None
    }
}
