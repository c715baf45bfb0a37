//! The arbiter: the name registry of the actor runtime.
//!
//! Actors register `(uid, address)` entries under their own names, and anyone can
//! look names up or wait for one to appear. The arbiter speaks the actors' own wire
//! protocol ([`actor_transport::Msg`]), so a portal can call it like any actor:
//! every operation is a single-result call ([`actor_transport::CallKind::Single`])
//! of one of the functions named by the constants below, with its arguments as a
//! msgpack-encoded tuple and its result as a msgpack document.
//!
//! | function            | arguments         | result            |
//! |---------------------|-------------------|-------------------|
//! | [`REGISTER`]        | `(addr: Addr,)`   | `()`              |
//! | [`UNREGISTER`]      | `()`              | `()`              |
//! | [`FIND`]            | `(name: String,)` | `Vec<Entry>`      |
//! | [`WAIT_FOR`]        | `(name: String,)` | `Vec<Entry>`      |
//! | [`LIST`]            | `()`              | `Vec<Entry>`      |
//!
//! The name an actor registers under is always the name of the uid it
//! authenticated with in the handshake: an actor can register only itself. Entries
//! registered over a connection are removed when that connection closes or breaks.
//! A [`WAIT_FOR`] call may be cancelled with `Msg::Cancel`, answered by
//! `Msg::CancelAck`.
//!
//! - [`registry`]: the state, without sockets ([`Registry`]),
//! - [`server`]: the accept loop and per-connection protocol ([`serve`],
//!   [`spawn_embedded`]),
//! - [`client`]: a typed client ([`ArbiterClient`]).
#![warn(missing_docs)]

pub mod client;
pub mod registry;
pub mod server;

pub use client::{ArbiterClient, ClientError, is_arbiter, probe};
pub use registry::{ConnId, Entry, Registry, RegistryError};
pub use server::{
    ArbiterConfig, ArbiterHandle, serve, serve_registry, serve_registry_tls, serve_tls, spawn_embedded,
    spawn_embedded_tls,
};

/// Registers the caller (its handshake uid, under `uid.name`) at an address.
/// Arguments `(addr: Addr,)`, result `()`.
pub const REGISTER: &str = "arbiter::register";
/// Removes the caller's own entry; succeeds if there was none.
/// Arguments `()`, result `()`.
pub const UNREGISTER: &str = "arbiter::unregister";
/// Looks a name up. Arguments `(name: String,)`, result `Vec<Entry>` (maybe empty).
pub const FIND: &str = "arbiter::find";
/// Waits until a name has at least one entry. Arguments `(name: String,)`, result
/// `Vec<Entry>` (never empty). Cancellable with `Msg::Cancel`.
pub const WAIT_FOR: &str = "arbiter::wait_for";
/// Lists every entry. Arguments `()`, result `Vec<Entry>` sorted by name then uid.
pub const LIST: &str = "arbiter::list";

/// Every function the arbiter serves.
pub const FUNCTIONS: [&str; 5] = [REGISTER, UNREGISTER, FIND, WAIT_FOR, LIST];

/// The address an arbiter listens on unless configured otherwise.
pub const DEFAULT_ADDR: &str = "tcp://127.0.0.1:1616";
/// Environment variable naming the arbiter's address.
pub const ENV_ADDR: &str = "ACTOR_ARBITER";
/// Environment variable holding the cluster token, as hex.
pub const ENV_TOKEN: &str = "ACTOR_TOKEN";
/// Environment variable holding the log filter (a `tracing` `EnvFilter`).
pub const ENV_LOG: &str = "ACTOR_LOG";
