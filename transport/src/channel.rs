//! Framed message channels over any byte stream.
//!
//! A [`Channel`] splits into a [`Sender`] (cloneable, usable from many tasks) and
//! a [`Receiver`]. Senders encode straight into a shared write buffer; one writer
//! task drains the whole buffer with a single write per wake-up and flushes only
//! when nothing more is queued, so bursts of small messages cost one syscall, not
//! one each. A large stream item's payload is not copied into the buffer: it is
//! queued as it is, behind its frame's head, and written with the rest in one
//! vectored write. The buffer has a high-water mark: [`Sender::send`] waits
//! while it is full, which gives back-pressure without an unbounded queue.

use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::codec::{
    DEFAULT_MAX_FRAME, FrameCodec, FrameError, WRITE_SHARED_AT, encode_bytes_item_head, encode_frame,
    encode_frame_sharing,
};
use crate::read_pool;
use crate::stream::Stream;
use crate::wire::{BytesItem, Msg};

/// Limits of one channel.
#[derive(Clone, Debug)]
pub struct ChannelConfig {
    /// Largest accepted or sent frame payload, in bytes.
    pub max_frame: usize,
    /// [`Sender::send`] waits while this many bytes are queued for writing.
    pub write_high_water: usize,
    /// How long a write may make no progress before the peer is taken to
    /// have stopped reading and the channel is closed ([`STOPPED_READING`]).
    pub write_stall: Duration,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            max_frame: DEFAULT_MAX_FRAME,
            write_high_water: 256 * 1024,
            write_stall: Duration::from_secs(30),
        }
    }
}

/// Why a channel operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// A frame could not be read or encoded; the channel is unusable for reading
    /// (receive side) or the message was not queued (send side).
    #[error("{0}")]
    Frame(Arc<FrameError>),
    /// The channel is closed: by this side, or because writing failed.
    #[error("channel closed: {reason}")]
    Closed {
        /// Why it closed.
        reason: String,
    },
}

impl ChannelError {
    /// Whether this is an I/O failure of the underlying stream (reset, broken
    /// pipe) rather than bad data from the peer.
    pub fn is_io(&self) -> bool {
        matches!(self, ChannelError::Frame(f) if matches!(**f, FrameError::Io(_)))
    }
}

impl From<FrameError> for ChannelError {
    fn from(e: FrameError) -> Self {
        ChannelError::Frame(Arc::new(e))
    }
}

/// Why a channel closes when its peer stops reading what we must send.
pub const STOPPED_READING: &str = "the peer stopped reading";

/// How many high-water marks of forced messages ([`Sender::send_now`]) may
/// queue before the channel is closed as unread.
const FORCED_SLACK: usize = 16;

type BoxRead = Pin<Box<dyn AsyncRead + Send>>;
type BoxWrite = Pin<Box<dyn AsyncWrite + Send>>;

/// A bidirectional, framed [`Msg`] channel.
pub struct Channel {
    sender: Sender,
    receiver: Receiver,
}

impl Channel {
    /// Builds a channel from a read half and a write half, spawning its writer
    /// task on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Panics if called outside a tokio runtime.
    pub fn new<R, W>(reader: R, writer: W, config: &ChannelConfig) -> Self
    where
        R: AsyncRead + Send + 'static,
        W: AsyncWrite + Send + 'static,
    {
        let shared = Arc::new(Shared {
            state: Mutex::new(WriteState {
                buf: BytesMut::with_capacity(64 * 1024),
                chunks: Vec::new(),
                chunked: 0,
                closed: None,
            }),
            wake_writer: Notify::new(),
            wake_senders: Notify::new(),
            writer_done: CancellationToken::new(),
            writer: OnceLock::new(),
            is_closed: AtomicBool::new(false),
            max_frame: config.max_frame,
            high_water: config.write_high_water,
            vectored: writer.is_write_vectored(),
        });
        let writer = tokio::spawn(write_loop(shared.clone(), Box::pin(writer), config.write_stall));
        let _ = shared.writer.set(writer.abort_handle());
        let sender = Sender { guard: Arc::new(SenderGuard(shared.clone())), shared };
        let mut frames =
            FramedRead::with_capacity(Box::pin(reader) as BoxRead, FrameCodec::new(config.max_frame), 0);
        *frames.read_buffer_mut() = read_pool::take();
        let receiver = Receiver { frames, ended: false };
        Channel { sender, receiver }
    }

    /// Builds a channel over a connected [`Stream`]. TCP and Unix sockets split
    /// into owned halves (no lock between reading and writing); a TLS session
    /// serves both directions, so its halves share a lock.
    ///
    /// # Panics
    ///
    /// Panics if called outside a tokio runtime.
    pub fn from_stream(stream: Stream, config: &ChannelConfig) -> Self {
        match stream {
            Stream::Tcp(s) => {
                crate::spin::watch(s.as_fd());
                let (r, w) = s.into_split();
                Channel::new(r, w, config)
            }
            Stream::Unix(s) => {
                crate::spin::watch(s.as_fd());
                let (r, w) = s.into_split();
                Channel::new(r, w, config)
            }
            #[cfg(feature = "tls")]
            Stream::Tls(s) => {
                crate::spin::watch(s.get_ref().0.as_fd());
                // One TLS session serves both directions: split behind a lock.
                let (r, w) = tokio::io::split(*s);
                Channel::new(r, w, config)
            }
        }
    }

    /// Splits into the sending and receiving halves.
    pub fn split(self) -> (Sender, Receiver) {
        (self.sender, self.receiver)
    }

    /// Queues `msg`; see [`Sender::send`].
    ///
    /// # Errors
    ///
    /// As [`Sender::send`].
    pub async fn send(&mut self, msg: &Msg) -> Result<(), ChannelError> {
        self.sender.send(msg).await
    }

    /// Receives the next message; see [`Receiver::recv`].
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`].
    pub async fn recv(&mut self) -> Result<Option<Msg>, ChannelError> {
        self.receiver.recv().await
    }

    /// The sending half, for sharing with other tasks.
    pub fn sender(&self) -> &Sender {
        &self.sender
    }

    /// Sets the largest frame payload this channel will read from now on; see
    /// [`Receiver::set_max_frame`].
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.receiver.set_max_frame(max_frame);
    }
}

struct WriteState {
    buf: BytesMut,
    /// Queued before `buf`, in order: parts of it frozen ahead of a shared
    /// payload, and those payloads, written from where they are.
    chunks: Vec<Bytes>,
    /// How many bytes `chunks` hold.
    chunked: usize,
    /// Set once: by `close`, by the last sender going away, or by a write error.
    closed: Option<String>,
}

struct Shared {
    state: Mutex<WriteState>,
    wake_writer: Notify,
    wake_senders: Notify,
    writer_done: CancellationToken,
    /// Stops the writer at once, for [`Sender::abort`].
    writer: OnceLock<AbortHandle>,
    /// Mirrors `WriteState::closed.is_some()`, for readers that check it per
    /// message without taking the lock.
    is_closed: AtomicBool,
    max_frame: usize,
    high_water: usize,
    /// The writer takes several buffers in one write, so large payloads
    /// are queued without being copied.
    vectored: bool,
}

impl WriteState {
    /// Bytes queued and not yet taken by the writer.
    fn queued(&self) -> usize {
        self.buf.len() + self.chunked
    }

    /// Appends one frame holding `out`: whole into `buf`, or its head there
    /// and its large payload as a chunk of its own, when `share`.
    fn encode(&mut self, out: Outgoing<'_>, max_frame: usize, share: bool) -> Result<(), FrameError> {
        let payload = match out {
            Outgoing::Msg(msg) if share => encode_frame_sharing(msg, max_frame, &mut self.buf)?,
            Outgoing::Msg(msg) => return encode_frame(msg, max_frame, &mut self.buf),
            Outgoing::Bytes(item) => {
                encode_bytes_item_head(item, max_frame, &mut self.buf)?;
                if !share || item.data().len() < WRITE_SHARED_AT {
                    self.buf.extend_from_slice(item.data());
                    return Ok(());
                }
                Some(item.data().clone())
            }
        };
        if let Some(payload) = payload {
            let head = self.buf.split().freeze();
            self.chunked += head.len() + payload.len();
            self.chunks.push(head);
            self.chunks.push(payload);
        }
        Ok(())
    }
}

/// What a sender queues: a message, or an item written from its own buffer.
#[derive(Clone, Copy)]
enum Outgoing<'a> {
    Msg(&'a Msg),
    Bytes(&'a BytesItem),
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, WriteState> {
        // A panic while holding this lock can only come from an allocation failure
        // in `encode_frame`; the buffer is still consistent, so keep using it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records why the channel closed, unless it already had. Called with
    /// the lock held, so the flag never runs ahead of the reason.
    fn mark_closed(&self, st: &mut WriteState, reason: impl FnOnce() -> String) {
        if st.closed.is_none() {
            st.closed = Some(reason());
            self.is_closed.store(true, Ordering::Release);
        }
    }

    fn close(&self, reason: String) {
        let mut st = self.lock();
        self.mark_closed(&mut st, || reason);
        drop(st);
        self.wake_writer.notify_one();
        self.wake_senders.notify_waiters();
    }
}

/// Closes the channel gracefully when the last [`Sender`] clone is dropped.
struct SenderGuard(Arc<Shared>);

impl Drop for SenderGuard {
    fn drop(&mut self) {
        self.0.close("every sender was dropped".into());
    }
}

/// The sending half of a [`Channel`]. Clone it to send from several tasks; the
/// channel closes (after writing what is queued) when the last clone is dropped or
/// [`Sender::close`] is called.
#[derive(Clone)]
pub struct Sender {
    shared: Arc<Shared>,
    guard: Arc<SenderGuard>,
}

impl Sender {
    /// Encodes `msg` into the write buffer, waiting first while the buffer is
    /// above its high-water mark.
    ///
    /// The payload of a stream item message (`Msg::Yield`, `Msg::YieldBatch`)
    /// of 1 KiB or more is queued as it is, not copied: until it is written,
    /// it keeps the whole buffer its [`Bytes`] points into alive, while the
    /// high-water mark counts only its length. Copy a small slice of a large
    /// buffer (`Bytes::copy_from_slice`) before sending it.
    ///
    /// # Errors
    ///
    /// [`ChannelError::Frame`] if the message cannot be encoded or exceeds the
    /// maximum frame size (nothing is queued); [`ChannelError::Closed`] if the
    /// channel was closed or a write failed.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a message is either queued whole or not at all.
    pub async fn send(&self, msg: &Msg) -> Result<(), ChannelError> {
        self.queue(Outgoing::Msg(msg)).await
    }

    /// As [`Sender::send`] for the `Yield` of `item`. Data of 1 KiB or more
    /// ([`WRITE_SHARED_AT`]) is queued as it is, not copied, on a writer
    /// that takes vectored writes, as [`Sender::send`] does with stream item
    /// payloads: until it is written it keeps the whole buffer its [`Bytes`]
    /// points into alive.
    ///
    /// # Errors
    ///
    /// As [`Sender::send`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the item is either queued whole or not at all.
    pub async fn send_bytes_item(&self, item: &BytesItem) -> Result<(), ChannelError> {
        self.queue(Outgoing::Bytes(item)).await
    }

    /// Queues `out`, waiting first while the buffer is above its high-water
    /// mark.
    async fn queue(&self, out: Outgoing<'_>) -> Result<(), ChannelError> {
        // Fast path, without registering for a wake-up: there is room.
        if self.try_queue(out, false)? {
            return Ok(());
        }
        loop {
            let space = self.shared.wake_senders.notified();
            tokio::pin!(space);
            // Register before checking again, so a wake-up in between is not lost.
            space.as_mut().enable();
            if self.try_queue(out, false)? {
                return Ok(());
            }
            space.await;
        }
    }

    /// Queues `out` if the channel is open and (unless `force`) below its
    /// high-water mark; `Ok(false)` if there was no room.
    fn try_queue(&self, out: Outgoing<'_>, force: bool) -> Result<bool, ChannelError> {
        let mut st = self.shared.lock();
        if let Some(reason) = &st.closed {
            return Err(ChannelError::Closed { reason: reason.clone() });
        }
        if !force && st.queued() >= self.shared.high_water {
            return Ok(false);
        }
        if force && st.queued() >= self.shared.high_water.saturating_mul(FORCED_SLACK) {
            // Only a peer that stopped reading lets forced messages pile up this
            // far: close rather than buffer for it without bound.
            let reason = STOPPED_READING.to_owned();
            self.shared.mark_closed(&mut st, || reason.clone());
            drop(st);
            self.shared.wake_writer.notify_one();
            self.shared.wake_senders.notify_waiters();
            return Err(ChannelError::Closed { reason });
        }
        let was_empty = st.queued() == 0;
        st.encode(out, self.shared.max_frame, self.shared.vectored)?;
        drop(st);
        // Whoever queues into an empty buffer wakes the writer. A non-empty buffer
        // means the writer has a wake-up pending or is running, and it takes the
        // whole buffer before it waits again.
        if was_empty {
            self.shared.wake_writer.notify_one();
        }
        Ok(true)
    }

    /// Encodes `msg` into the write buffer without waiting for space.
    ///
    /// For small control messages sent by a task that must never block on the
    /// peer (a channel's reader answering with credit or acknowledgements), where
    /// waiting could deadlock two peers that both wait to write.
    ///
    /// # Errors
    ///
    /// As [`Sender::send`]; and [`ChannelError::Closed`] once forced messages
    /// pile up to 16 times the high-water mark: the peer has stopped reading,
    /// and the channel is closed rather than buffering for it without bound.
    pub fn send_now(&self, msg: &Msg) -> Result<(), ChannelError> {
        self.try_queue(Outgoing::Msg(msg), true).map(|_| ())
    }

    /// Stops accepting messages, writes what is already queued, then shuts the
    /// write side down. Returns once that is done (or the write failed).
    pub async fn close(&self) {
        self.shared.close("closed by this side".into());
        self.shared.writer_done.cancelled().await;
    }

    /// Whether nothing waits in the write buffer: the writer has taken all
    /// that was queued (it may still be writing it). A stream producer
    /// packs its items into batches while this is false.
    pub fn is_idle(&self) -> bool {
        self.shared.lock().queued() == 0
    }

    /// The largest frame payload this channel sends; a larger message is
    /// refused by [`Sender::send`].
    pub fn max_frame(&self) -> usize {
        self.shared.max_frame
    }

    /// Whether the channel no longer accepts messages.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed.load(Ordering::Acquire)
    }

    /// Closes the channel at once, discarding what is queued: for a peer
    /// that is gone or stopped reading, whose queued bytes would only hold
    /// memory until a write gave up. Senders waiting for room fail.
    pub fn abort(&self, reason: &str) {
        {
            let mut st = self.shared.lock();
            self.shared.mark_closed(&mut st, || reason.to_owned());
            st.buf = BytesMut::new();
            st.chunks = Vec::new();
            st.chunked = 0;
        }
        if let Some(writer) = self.shared.writer.get() {
            writer.abort();
        }
        self.shared.wake_senders.notify_waiters();
        // An aborted writer never reaches its end; nobody may wait for it.
        self.shared.writer_done.cancel();
    }

    /// Why the channel no longer accepts messages, once it does not.
    pub fn close_reason(&self) -> Option<String> {
        self.shared.lock().closed.clone()
    }

    /// Whether `self` and `other` send on the same channel.
    pub fn same_channel(&self, other: &Sender) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Resolves once the writer has stopped: after a close, or a write error.
    pub async fn closed(&self) {
        self.shared.writer_done.cancelled().await;
    }

    /// As [`Sender::closed`], as a future that holds no sender, so waiting on
    /// it does not keep the channel open.
    pub fn closed_owned(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.shared.writer_done.clone().cancelled_owned()
    }
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("clones", &Arc::strong_count(&self.guard)).finish()
    }
}

/// Writes all of `buf`, failing if a single write makes no progress within
/// `stall`: a peer that stopped reading must not hold our buffers forever,
/// while a slow one that still reads is never cut off.
async fn write_all_progressing(io: &mut BoxWrite, buf: &[u8], stall: Duration) -> io::Result<()> {
    let mut written = 0;
    while written < buf.len() {
        match bounded(stall, io.write(&buf[written..])).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => written += n,
        }
    }
    Ok(())
}

/// A write buffer grown past this (by a large frame) is not kept for reuse.
const MAX_KEPT_BUFFER: usize = 4 * 1024 * 1024;

/// Most buffers handed to one vectored write.
const MAX_SLICES: usize = 64;

/// As [`write_all_progressing`], for `chunks` in order, several per write.
/// Each chunk is released as soon as it is written: a shared payload holds
/// its whole buffer alive, and that must last no longer than its write.
async fn write_chunks_progressing(
    io: &mut BoxWrite,
    chunks: &mut [Bytes],
    stall: Duration,
) -> io::Result<()> {
    // The next byte to write: chunk `i`, from `at`.
    let (mut i, mut at) = (0, 0);
    while i < chunks.len() {
        let slices: Vec<_> = std::iter::once(&chunks[i][at..])
            .chain(chunks[i + 1..].iter().take(MAX_SLICES - 1).map(|c| &c[..]))
            .map(io::IoSlice::new)
            .collect();
        let written = bounded(stall, io.write_vectored(&slices)).await?;
        drop(slices);
        let mut n = match written {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => n,
        };
        while i < chunks.len() && n >= chunks[i].len() - at {
            n -= chunks[i].len() - at;
            chunks[i] = Bytes::new();
            (i, at) = (i + 1, 0);
        }
        at += n;
    }
    Ok(())
}

/// `op`, or a `TimedOut` error naming a peer that stopped reading. An
/// operation that completes at once (the usual write into a socket with
/// room) never arms a timer: that would cost more than the write.
async fn bounded<T>(stall: Duration, op: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    let mut op = std::pin::pin!(op);
    if let Some(done) = futures::FutureExt::now_or_never(&mut op) {
        return done;
    }
    tokio::time::timeout(stall, op)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, STOPPED_READING)))
}

async fn write_loop(shared: Arc<Shared>, mut io: BoxWrite, stall: Duration) {
    let mut spare = BytesMut::with_capacity(64 * 1024);
    let mut chunks = Vec::new();
    let outcome: io::Result<()> = async {
        loop {
            let wake = shared.wake_writer.notified();
            let closing = {
                let mut st = shared.lock();
                if !st.chunks.is_empty() {
                    std::mem::swap(&mut st.chunks, &mut chunks);
                    st.chunked = 0;
                    if !st.buf.is_empty() {
                        chunks.push(st.buf.split().freeze());
                    }
                    if st.buf.capacity() > MAX_KEPT_BUFFER {
                        st.buf = BytesMut::new();
                    }
                    false
                } else if !st.buf.is_empty() {
                    std::mem::swap(&mut st.buf, &mut spare);
                    false
                } else {
                    st.closed.is_some()
                }
            };
            if closing {
                return bounded(stall, io.shutdown()).await;
            }
            if spare.is_empty() && chunks.is_empty() {
                wake.await;
                continue;
            }
            shared.wake_senders.notify_waiters();
            if chunks.is_empty() {
                write_all_progressing(&mut io, &spare, stall).await?;
                if spare.capacity() > MAX_KEPT_BUFFER {
                    spare = BytesMut::with_capacity(64 * 1024);
                } else {
                    spare.clear();
                }
            } else {
                write_chunks_progressing(&mut io, &mut chunks, stall).await?;
                chunks.clear();
            }
            if shared.lock().queued() == 0 {
                bounded(stall, io.flush()).await?;
            }
        }
    }
    .await;
    if let Err(e) = outcome {
        tracing::debug!(error = %e, "channel write failed");
        shared.close(match e.kind() {
            io::ErrorKind::TimedOut => STOPPED_READING.to_owned(),
            _ => format!("write failed: {e}"),
        });
    }
    shared.writer_done.cancel();
}

/// The receiving half of a [`Channel`].
pub struct Receiver {
    frames: FramedRead<BoxRead, FrameCodec<Msg>>,
    /// Set after an error or a clean end. `FramedRead` yields `None` only once
    /// after an error and then resumes reading (and would decode whatever follows
    /// the bad frame), so the end is latched here.
    ended: bool,
}

impl Receiver {
    /// Sets the largest frame payload read from now on. The handshake keeps it
    /// small until the peer is authenticated, then raises it to the channel's
    /// configured maximum. Sending is not affected.
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.frames.decoder_mut().set_max_frame(max_frame);
    }

    /// The next message; `Ok(None)` when the peer closed the stream cleanly
    /// between frames.
    ///
    /// # Errors
    ///
    /// [`ChannelError::Frame`] for an oversized, truncated or undecodable frame or
    /// a read error. After an error the receiver yields `Ok(None)`: the caller
    /// must treat the channel as broken.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: partial frames stay buffered for the next call.
    pub async fn recv(&mut self) -> Result<Option<Msg>, ChannelError> {
        if self.ended {
            return Ok(None);
        }
        let unread = self.unread();
        if read_pool::make_room(self.frames.read_buffer_mut(), unread) {
            self.frames.decoder_mut().restart_largest();
        }
        match self.frames.next().await {
            Some(Ok(m)) => Ok(Some(m)),
            None => {
                self.ended = true;
                Ok(None)
            }
            Some(Err(e)) => {
                self.ended = true;
                Err(e.into())
            }
        }
    }
}

impl Receiver {
    /// What the read pool needs to know of the bytes in the read buffer.
    fn unread(&self) -> read_pool::Unread {
        let codec = self.frames.decoder();
        read_pool::Unread {
            may_have_grown: codec.largest() > read_pool::GROWS_AT,
            part_of_one_frame: codec.holds_part_of_one_frame(self.frames.read_buffer(), read_pool::GROWS_AT),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if !self.unread().may_have_grown {
            read_pool::retire(std::mem::take(self.frames.read_buffer_mut()));
        }
    }
}
