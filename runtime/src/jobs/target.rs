//! Where a job's attempts run.

use crate::portal::Portal;

/// Where a job's attempts run.
#[derive(Clone, Debug)]
pub enum Target {
    /// An actor registered under this name, looked up through the arbiter
    /// for each attempt: a restarted process, or another actor of the same
    /// name, takes the next attempt.
    Named(String),
    /// An actor the job spawns for each attempt (a daemon of a nursery of
    /// its own, cancelled and reaped once the attempt ends).
    Spawned(String),
    /// An actor reached through a portal you hold (a child of your
    /// nursery, say); a portal to a restarting child follows its restarts.
    /// Recorded by the actor's name.
    ViaPortal(Portal),
}

impl Target {
    /// How the journal names it.
    pub(crate) fn describe(&self) -> String {
        match self {
            Target::Named(n) => format!("actor {n}"),
            Target::Spawned(n) => format!("spawn {n}"),
            Target::ViaPortal(p) => format!("portal {}", p.uid().name),
        }
    }
}
