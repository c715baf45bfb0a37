//! Actor-local state shared by every call one actor serves.

use std::ops::Deref;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::error::Result;

/// A handle on this actor's local state of type `S`: every call served by the
/// actor gets the same value. Lock it to read or change it.
///
/// The initial value is given when the actor is started
/// ([`ActorBuilder::state`](crate::ActorBuilder::state)).
pub struct State<S>(Arc<tokio::sync::Mutex<S>>);

impl<S> Clone for State<S> {
    fn clone(&self) -> Self {
        State(self.0.clone())
    }
}

impl<S> Deref for State<S> {
    type Target = tokio::sync::Mutex<S>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// This actor's local state as `S`, decoded from the initial value on first use.
///
/// # Errors
///
/// [`Error::State`](crate::Error::State) if the actor was started without state
/// or under another type; [`Error::Codec`](crate::Error::Codec) if the initial
/// value does not decode as `S`; [`Error::NotRunning`](crate::Error::NotRunning)
/// outside an actor.
pub fn state<S: DeserializeOwned + Send + 'static>() -> Result<State<S>> {
    Ok(State(crate::local::current()?.state::<S>()?))
}
