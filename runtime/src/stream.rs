//! Typed stream halves, shared by remote streams and contexts on both sides.

use std::any::Any;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use actor_transport::{CallId, WRITE_SHARED_AT};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use actor_transport::Unclaimed;

use crate::conn::{CallGuard, Conn, Incoming, ServedIo, Shared};
use crate::error::Result;
use crate::registry::decode;

/// The sending half of a stream: items go to the other actor, at most a
/// window ([`STREAM_WINDOW`](crate::STREAM_WINDOW) bytes) ahead of what it has
/// consumed (`send` waits for credit).
///
/// Cheap to clone; clones send on the same stream.
pub struct StreamSender<T> {
    conn: Arc<Conn>,
    cid: CallId,
    shared: Arc<Shared>,
    _item: PhantomData<fn(T)>,
}

impl<T> Clone for StreamSender<T> {
    fn clone(&self) -> Self {
        StreamSender {
            conn: self.conn.clone(),
            cid: self.cid,
            shared: self.shared.clone(),
            _item: PhantomData,
        }
    }
}

impl<T: Serialize + 'static> StreamSender<T> {
    pub(crate) fn new(conn: Arc<Conn>, cid: CallId, shared: Arc<Shared>) -> Self {
        StreamSender { conn, cid, shared, _item: PhantomData }
    }

    /// Sends one item, waiting while the receiver is a full window behind.
    ///
    /// Items are encoded into batches, except a [`Bytes`] item of 1 KiB or
    /// more, which is written from its own buffer: until it is written it
    /// keeps alive the whole buffer it points into. Send a copy
    /// (`Bytes::copy_from_slice`) of a small slice of a large buffer.
    ///
    /// # Errors
    ///
    /// The reason the stream ended if it has (the other side failed, was
    /// cancelled, or the channel broke); [`Error::Codec`](crate::Error::Codec) if
    /// the item cannot be encoded.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: a cancelled send may have used one unit of credit,
    /// and its item may or may not go. Items whose sends returned still go,
    /// in order.
    pub async fn send(&self, item: T) -> Result<()> {
        let what = || format!("an item of type {}", std::any::type_name::<T>());
        // `T` is `Bytes` exactly when this slot is an `Option<Bytes>`: a
        // large one is written from its own buffer rather than copied.
        let mut slot = Some(item);
        if let Some(bytes) = (&mut slot as &mut dyn Any).downcast_mut::<Option<Bytes>>() {
            if let Some(data) = bytes.take_if(|b| b.len() >= WRITE_SHARED_AT) {
                return self.conn.send_bytes_item(self.cid, &self.shared, data, what).await;
            }
        }
        let Some(item) = slot else { return Ok(()) };
        self.conn.send_item(self.cid, &self.shared, &item, what).await
    }

    /// Tells the receiver no more items will come; its stream then ends.
    ///
    /// # Errors
    ///
    /// A channel error if the message cannot be sent.
    pub async fn close(&self) -> Result<()> {
        self.conn.send_stop(self.cid, &self.shared).await
    }
}

/// Both halves of a context's bidirectional stream on call `cid`.
pub(crate) fn halves<Tx: Serialize + 'static, Rx: DeserializeOwned + 'static>(
    conn: &Arc<Conn>,
    cid: CallId,
    shared: &Arc<Shared>,
    items: mpsc::UnboundedReceiver<Incoming>,
) -> (StreamSender<Tx>, StreamReceiver<Rx>) {
    (
        StreamSender::new(conn.clone(), cid, shared.clone()),
        StreamReceiver::new(conn.clone(), cid, shared.clone(), items, None),
    )
}

/// The receiving half of a stream; a [`futures::Stream`] of `Result<T>`.
///
/// Reading grants the sender more credit. A stream that ends normally yields
/// `None`; one that ends because the other side failed or vanished yields that
/// error once, then `None`. Dropping the receiver of a remote stream
/// ([`Portal::open_stream_from`](crate::Portal::open_stream_from)) cancels the
/// producer.
pub struct StreamReceiver<T> {
    conn: Arc<Conn>,
    cid: CallId,
    shared: Arc<Shared>,
    items: mpsc::UnboundedReceiver<Incoming>,
    /// What is left of the batch being read.
    batch: Bytes,
    unclaimed: Unclaimed,
    finished: bool,
    _guard: Option<CallGuard>,
    _item: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned + 'static> StreamReceiver<T> {
    pub(crate) fn new(
        conn: Arc<Conn>,
        cid: CallId,
        shared: Arc<Shared>,
        items: mpsc::UnboundedReceiver<Incoming>,
        guard: Option<CallGuard>,
    ) -> Self {
        StreamReceiver {
            unclaimed: Unclaimed::new(shared.window),
            conn,
            cid,
            shared,
            items,
            batch: Bytes::new(),
            finished: false,
            _guard: guard,
            _item: PhantomData,
        }
    }

    /// The next item; `None` once the stream has ended.
    ///
    /// # Errors
    ///
    /// The other side's error, a cancellation, or a broken channel (once), or
    /// [`Error::Codec`](crate::Error::Codec) for an item that does not decode as
    /// `T`.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<T>> {
        self.next().await
    }
}

impl<T: DeserializeOwned + 'static> Stream for StreamReceiver<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<T>>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        // Items of a batch come out of it in place: no channel operation
        // per item.
        let bytes = match actor_transport::next_item(&mut this.batch) {
            Some(item) => item,
            None => loop {
                match this.items.poll_recv(cx) {
                    Poll::Pending => {
                        if let Some(credit) = this.unclaimed.drained() {
                            this.conn.grant(this.cid, credit);
                        }
                        return Poll::Pending;
                    }
                    Poll::Ready(Some(Incoming::Item(bytes))) => break bytes,
                    Poll::Ready(Some(Incoming::Batch(items))) => {
                        this.batch = items;
                        if let Some(item) = actor_transport::next_item(&mut this.batch) {
                            break item;
                        }
                    }
                    Poll::Ready(Some(Incoming::Stop)) => {
                        this.finished = true;
                        return Poll::Ready(None);
                    }
                    Poll::Ready(None) => {
                        this.finished = true;
                        return Poll::Ready(Some(Err(this.conn.ended(&this.shared))));
                    }
                }
            },
        };
        if let Some(credit) = this.unclaimed.consumed(bytes.len()) {
            this.conn.grant(this.cid, credit);
        }
        Poll::Ready(Some(decode_item(bytes, || format!("a stream item from `{}`", this.conn.peer()))))
    }
}

/// Decodes a stream item; a `Bytes` item shares the received buffer instead of
/// being copied out of it.
fn decode_item<T: DeserializeOwned + 'static>(bytes: Bytes, what: impl FnOnce() -> String) -> Result<T> {
    // `T` is `Bytes` exactly when this slot is an `Option<Bytes>`.
    let mut out: Option<T> = None;
    let Some(slot) = (&mut out as &mut dyn Any).downcast_mut::<Option<Bytes>>() else {
        return decode(&bytes, what);
    };
    match actor_transport::bin_payload(bytes) {
        Ok(payload) => *slot = Some(payload),
        Err(other) => return decode(&other, what),
    }
    out.map_or_else(|| decode(&[], what), Ok)
}

/// What a remote stream function yields through: its last parameter.
///
/// ```no_run
/// #[actor::remote]
/// async fn count_to(n: u64, out: actor::Yielder<u64>) -> actor::Result<()> {
///     for i in 0..n {
///         out.send(i).await?;
///     }
///     Ok(())
/// }
/// ```
pub struct Yielder<T>(StreamSender<T>);

impl<T: Serialize + 'static> Yielder<T> {
    pub(crate) fn new(io: ServedIo) -> Self {
        Yielder(StreamSender::new(io.conn, io.cid, io.shared))
    }

    /// Sends one item to the caller, waiting while it is a full window behind.
    ///
    /// # Errors
    ///
    /// As [`StreamSender::send`]: once the caller has dropped the stream this
    /// function's task is cancelled anyway.
    pub async fn send(&self, item: T) -> Result<()> {
        self.0.send(item).await
    }
}

impl<T> Clone for Yielder<T> {
    fn clone(&self) -> Self {
        Yielder(self.0.clone())
    }
}

impl<T: DeserializeOwned + Clone + Send + 'static> StreamReceiver<T> {
    /// Shares this stream among `subscribers` local consumers (tractor's
    /// `subscribe`): every [`Subscriber`] gets every item, in order, and the
    /// stream's error if it fails.
    ///
    /// Flow control still holds: items are taken from the remote producer only
    /// as fast as the slowest subscriber reads them (each may be `buffer` items
    /// behind the fastest). A subscriber that is dropped stops holding the
    /// others back; once all are dropped the remote producer is cancelled.
    ///
    /// # Panics
    ///
    /// Panics if called outside a tokio runtime.
    pub fn broadcast(self, buffer: usize, subscribers: usize) -> Vec<Subscriber<T>> {
        let (txs, subs): (Vec<_>, Vec<_>) = (0..subscribers)
            .map(|_| {
                let (tx, rx) = mpsc::channel(buffer.max(1));
                (tx, Subscriber { rx })
            })
            .unzip();
        tokio::spawn(forward(self, txs));
        subs
    }
}

/// One consumer of a broadcast stream ([`StreamReceiver::broadcast`]); a
/// [`futures::Stream`] of `Result<T>`.
pub struct Subscriber<T> {
    rx: mpsc::Receiver<Result<T>>,
}

impl<T> Subscriber<T> {
    /// The next item; `None` once the stream has ended.
    ///
    /// # Errors
    ///
    /// The stream's error, as every subscriber sees it.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<T>> {
        self.rx.recv().await
    }
}

impl<T> Stream for Subscriber<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<T>>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

/// Feeds every subscriber; returns (dropping the source, which cancels the
/// producer) when the stream ends or no subscriber is left.
async fn forward<T: DeserializeOwned + Clone + Send + 'static>(
    mut source: StreamReceiver<T>,
    mut subscribers: Vec<mpsc::Sender<Result<T>>>,
) {
    while !subscribers.is_empty() {
        let Some(item) = source.next().await else { return };
        let mut gone = Vec::new();
        for (i, tx) in subscribers.iter().enumerate() {
            if tx.send(item.clone()).await.is_err() {
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            subscribers.swap_remove(i);
        }
    }
}
