//! The names of the functions every actor serves itself, whatever it
//! exposes; callers and the serving side both name them from here.

/// The function every actor serves to be cancelled by a peer of its tree:
/// arguments `[reason: str]`, result nil, sent once the actor has cancelled
/// its calls and children, just before it exits.
pub(crate) const CANCEL_FN: &str = "actor::cancel";
