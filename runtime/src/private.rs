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
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the return type of a remote function",
    label = "remote functions return a `Result`",
    note = "return `actor::Result<T>`, `anyhow::Result<T>`, or `Result<T, E>` where `E` is a `std::error::Error + Send + Sync + 'static`"
)]
pub trait CallResult {
    type Ok: Serialize + DeserializeOwned + Send + 'static;
}

impl<T, E> CallResult for Result<T, E>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    E: RemoteErrorType,
{
    type Ok = T;
}

/// An error type a remote function may return: anything that converts into a
/// boxed `std::error::Error`, which covers [`Error`], every
/// `std::error::Error + Send + Sync + 'static`, `anyhow::Error` and
/// `eyre::Report`. (`Into` rather than `std::error::Error` because anyhow's and
/// eyre's types do not implement the trait, on purpose.)
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the error type of a remote function",
    label = "not an error type the runtime can send",
    note = "use `actor::Error`, `anyhow::Error`, or a type implementing `std::error::Error + Send + Sync + 'static`"
)]
pub trait RemoteErrorType: Send + 'static {
    /// Converts the error into the runtime's, keeping its type name and causes.
    fn into_error(self) -> Error;
}

impl<E> RemoteErrorType for E
where
    E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    fn into_error(self) -> Error {
        Error::from_boxed(self.into(), std::any::type_name::<E>())
    }
}

/// What `?` becomes in the body of a remote function declared to return
/// `actor::Result`: any `std::error::Error` turns into an [`Error`] (an
/// [`Error`] stays itself), so no `.map_err(actor::Error::app)` is needed.
#[inline]
pub fn lift<T, E: std::error::Error + Send + Sync + 'static>(r: Result<T, E>) -> Result<T, Error> {
    r.map_err(Error::app)
}

pub use crate::registry::{Failure, Registration, Served};

/// Serves an async remote function: decodes `args`, runs `call`, catches
/// panics and encodes the outcome.
pub fn serve_async<A, T, E, Fut>(name: &'static str, args: Bytes, call: fn(A) -> Fut) -> Served
where
    A: DeserializeOwned + Send + 'static,
    T: Serialize,
    E: RemoteErrorType,
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
    E: RemoteErrorType,
{
    Box::pin(async move {
        let args = decode_args::<A>(name, &args)?;
        // The task-local job key and trace span do not cross threads by
        // themselves.
        let key = crate::jobs::key::raw();
        let span = crate::trace::current_span();
        let run = move || crate::trace::sync_scope(span, || crate::jobs::key::sync_scope(key, || call(args)));
        match tokio::task::spawn_blocking(run).await {
            Ok(outcome) => encode_outcome(name, outcome),
            Err(join) if join.is_panic() => Err(Failure::Panicked(panic_message(join.into_panic().as_ref()))),
            Err(join) => Err(Failure::Failed(Error::msg(format!("blocking task failed: {join}")))),
        }
    })
}

fn encode_outcome<T: Serialize, E: RemoteErrorType>(
    name: &str,
    outcome: Result<T, E>,
) -> Result<Bytes, Failure> {
    match outcome {
        Ok(v) => encode(&v, || format!("result of `{name}`")).map_err(Failure::Failed),
        Err(e) => Err(Failure::Failed(e.into_error())),
    }
}

pub use crate::conn::ServedIo;
pub use crate::registration_bench::register_many;
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
    E: RemoteErrorType,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
{
    Box::pin(async move {
        let args = decode_args::<A>(name, &args)?;
        match AssertUnwindSafe(call(args, crate::Yielder::new(io))).catch_unwind().await {
            Ok(Ok(())) => Ok(Bytes::new()),
            Ok(Err(e)) => Err(Failure::Failed(e.into_error())),
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
    E: RemoteErrorType,
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
