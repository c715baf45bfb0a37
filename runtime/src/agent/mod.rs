//! Host agents: spawning actors on other hosts under the same nursery.
//!
//! An agent is a daemon actor on each host (`actor agent` from the
//! `procactor-cli` package, or [`run`] in a program of your own). It
//! joins the tree's arbiter under [`AGENT_NAME`], describes its host
//! ([`HostInfo`]: name, labels, CPUs, memory), and starts the programs on its
//! allow-list for any parent that proves it belongs to the tree.
//! `n.actor(name).on_host(..)` (see
//! [`ActorBuilder::on_host`](crate::ActorBuilder::on_host)) picks an agent
//! with a [`HostSelector`] and spawns through it: the
//! new process connects back to its parent with a one-time token exactly as
//! a local child does, and the parent supervises it as one. The agent reaps
//! it and reports its exit status or signal, signals its process group when
//! the parent escalates a cancel, and kills the group when it loses the
//! parent, so no actor outlives its parent on any host.
//!
//! - `wire`: the two functions an agent serves and what they carry,
//! - `config`: how an agent is configured,
//! - `serve`: the agent itself, serving its two functions,
//! - `keeper`: the agent's watch over one child,
//! - `host`: this host's CPUs and memory,
//! - `select`: choosing a host,
//! - `place`: the parent finding the agent to spawn through,
//! - `remote`: the parent's handle on a child on another host.

mod config;
mod host;
mod keeper;
mod place;
mod remote;
mod select;
mod serve;
mod wire;

pub use config::AgentConfig;
pub use place::list_hosts;
pub(crate) use place::{Placement, place};
pub(crate) use remote::{RemoteChild, spawn};
pub use select::HostSelector;
pub use serve::run;
pub(crate) use serve::{handler, host_name};
pub(crate) use wire::SpawnRequest;
pub use wire::{AGENT_NAME, HostInfo, INFO_FN, SPAWN_FN};
