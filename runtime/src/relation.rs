//! Who a connected peer is to this actor.

/// Our relation to the peer, which decides what its control messages may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    /// Our parent: it may cancel us, and losing it cancels us.
    Parent,
    /// A child we spawned (it proved its one-time token).
    Child,
    /// Any other actor or program.
    Other,
}
