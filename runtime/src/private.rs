//! Support for the code `#[actor::remote]` generates. Not a public API: it may
//! change in any release.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;

pub use bytes::Bytes;
use futures::FutureExt;
pub use inventory;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::registry::{encode, panic_message};

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

/// The boxed future the registry stores.
pub type Served = Pin<Box<dyn Future<Output = Result<Bytes, Failure>> + Send>>;

pub use crate::registry::{Failure, Registration};

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

fn decode_args<A: DeserializeOwned>(name: &str, args: &[u8]) -> Result<A, Failure> {
    actor_transport::codec::decode_value(args).map_err(|e| {
        Failure::BadArguments(format!(
            "arguments of `{name}` do not decode as {}: {e}",
            std::any::type_name::<A>()
        ))
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
