//! What a parent and a host agent say to each other: the names of the two
//! functions an agent serves, and the values they carry (see PROTOCOL.md,
//! "Host agents").

use std::collections::BTreeMap;

use actor_transport::{Addr, Uid};
use serde::{Deserialize, Serialize};

/// The name every host agent registers under with the arbiter; several
/// agents share it, one entry per host.
pub const AGENT_NAME: &str = "actor-agent";

/// The function an agent serves to describe its host: a single call,
/// arguments `[]`, result a [`HostInfo`].
pub const INFO_FN: &str = "actor::agent::info";

/// The function an agent serves to start and watch one child: a context
/// call (see PROTOCOL.md for its messages).
pub const SPAWN_FN: &str = "actor::agent::spawn";

/// A host as its agent describes it (see [`list_hosts`](crate::agent::list_hosts)).
///
/// Non-exhaustive: later versions may add fields at the end of its wire
/// form; read the ones you need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HostInfo {
    /// The host's name, as its agent was told (`--host`), which
    /// [`HostSelector::name`](crate::HostSelector::name) matches.
    pub name: String,
    /// Its labels, which [`HostSelector::label`](crate::HostSelector::label) matches.
    pub labels: BTreeMap<String, String>,
    /// CPUs available to the agent.
    pub cores: u32,
    /// Memory available for new processes, in bytes (`MemAvailable`).
    pub memory_available: u64,
    /// All memory of the host, in bytes.
    pub memory_total: u64,
    /// Children the agent runs now, for every parent.
    pub children: u32,
    /// The programs it may start, by the names parents ask for.
    pub programs: Vec<String>,
    /// Where its children listen (port 0: each picks a free port).
    pub child_bind: Addr,
}

/// A parent's request to start one child (the argument of [`SPAWN_FN`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SpawnRequest {
    /// The child's uid: its name and fresh id.
    pub actor: Uid,
    /// Which program of the agent's allow-list to start, by name.
    pub program: String,
    /// Its arguments after argv[0].
    pub args: Vec<String>,
    /// Environment variables on top of the agent's own.
    pub env: Vec<(String, String)>,
    /// Where the child connects back to.
    pub parent: Addr,
    /// The one-time token it proves when it does, as hex.
    pub token: String,
}

/// The context's first value: the child is running.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct Spawned {
    /// Its process id on the agent's host.
    pub pid: u32,
}

/// What a parent asks of the agent about a running child.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Control {
    /// SIGTERM to its process group.
    Terminate,
    /// SIGKILL to its process group.
    Kill,
}

/// The context's result: how the child ended.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Exit {
    /// The wait status the agent reaped (as `waitpid` gives it).
    pub wait_status: i32,
    /// The same, in words, for peers that do not decode wait statuses.
    pub description: String,
}
