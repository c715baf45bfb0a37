//! Support for the code `#[actor::remote]` generates. Not a public API: it may
//! change in any release.

use std::future::Future;
use std::panic::AssertUnwindSafe;

pub use bytes::Bytes;
use futures::FutureExt;
pub use inventory;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::registry::{decode_args, encode, panic_message};

/// Splits a function's return type into its success and error types.
pub trait CallResult {
    type Ok: Serialize + DeserializeOwned + Send + 'static;
}

impl<T, E> CallResult for Result<T, E>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    type Ok = T;
}

pub use crate::registry::{Failure, Registration, Served};

/// Serves an async remote function: decodes `args`, runs `call`, catches
/// panics and encodes the outcome.
pub fn serve_async<A, T, E, Fut>(name: &'static str, args: Bytes, call: fn(A) -> Fut) -> Served
where
    A: DeserializeOwned + Send + 'static,
    T: Serialize,
    E: std::error::Error + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    Box::pin(async move {
        let args = decode_args::<A>(name, &args)?;
        match AssertUnwindSafe(call(args)).catch_unwind().await {
            Ok(outcome) => encode_outcome(name, outcome),
            Err(payload) => Err(Failure::Panicked(panic_message(payload.as_ref()))),
        }
    })
}

/// Serves a plain (blocking) remote function on tokio's blocking pool, so
/// it does not stall the actor's other calls.
pub fn serve_blocking<A, T, E>(name: &'static str, args: Bytes, call: fn(A) -> Result<T, E>) -> Served
where
    A: DeserializeOwned + Send + 'static,
    T: Serialize + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    Box::pin(async move {
        let args = decode_args::<A>(name, &args)?;
        match tokio::task::spawn_blocking(move || call(args)).await {
            Ok(outcome) => encode_outcome(name, outcome),
            Err(join) if join.is_panic() => Err(Failure::Panicked(panic_message(join.into_panic().as_ref()))),
            Err(join) => Err(Failure::Failed(Error::msg(format!("blocking task failed: {join}")))),
        }
    })
}

fn encode_outcome<T: Serialize, E: std::error::Error + Send + Sync + 'static>(
    name: &str,
    outcome: Result<T, E>,
) -> Result<Bytes, Failure> {
    match outcome {
        Ok(v) => encode(&v, || format!("result of `{name}`")).map_err(Failure::Failed),
        Err(e) => Err(Failure::Failed(Error::app(e))),
    }
}

pub use crate::conn::ServedIo;
pub use crate::registry::Handler;

/// Names the item type of a stream function's `Yielder` parameter.
pub trait StreamParam {
    type Item: Serialize + DeserializeOwned + Send + 'static;
}

impl<T: Serialize + DeserializeOwned + Send + 'static> StreamParam for crate::Yielder<T> {
    type Item = T;
}

/// Names the types of a context function's `Context` parameter.
pub trait ContextParam {
    type Started: Serialize + DeserializeOwned + Send + 'static;
    type ToCaller: Serialize + DeserializeOwned + Send + 'static;
    type ToCallee: Serialize + DeserializeOwned + Send + 'static;
}

impl<S, O, I> ContextParam for crate::Context<S, O, I>
where
    S: Serialize + DeserializeOwned + Send + 'static,
    O: Serialize + DeserializeOwned + Send + 'static,
    I: Serialize + DeserializeOwned + Send + 'static,
{
    type Started = S;
    type ToCaller = O;
    type ToCallee = I;
}

/// Serves a remote stream function.
pub fn serve_stream<A, T, E, Fut>(
    name: &'static str,
    args: Bytes,
    io: ServedIo,
    call: fn(A, crate::Yielder<T>) -> Fut,
) -> Served
where
    A: DeserializeOwned + Send + 'static,
    T: Serialize + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
{
    Box::pin(async move {
        let args = decode_args::<A>(name, &args)?;
        match AssertUnwindSafe(call(args, crate::Yielder::new(io))).catch_unwind().await {
            Ok(Ok(())) => Ok(Bytes::new()),
            Ok(Err(e)) => Err(Failure::Failed(Error::app(e))),
            Err(payload) => Err(Failure::Panicked(panic_message(payload.as_ref()))),
        }
    })
}

/// Serves a remote context function.
pub fn serve_context<A, S, O, I, T, E, Fut>(
    name: &'static str,
    args: Bytes,
    io: ServedIo,
    call: fn(A, crate::Context<S, O, I>) -> Fut,
) -> Served
where
    A: DeserializeOwned + Send + 'static,
    S: Serialize + Send + 'static,
    O: Serialize + Send + 'static,
    I: DeserializeOwned + Send + 'static,
    T: Serialize,
    E: std::error::Error + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    Box::pin(async move {
        let args = decode_args::<A>(name, &args)?;
        match AssertUnwindSafe(call(args, crate::Context::new(io))).catch_unwind().await {
            Ok(outcome) => encode_outcome(name, outcome),
            Err(payload) => Err(Failure::Panicked(panic_message(payload.as_ref()))),
        }
    })
}
