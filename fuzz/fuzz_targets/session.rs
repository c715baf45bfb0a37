//! Drives one `Session` the way a connection does: the peer's messages (decoded
//! from arbitrary frames, or built from a few bytes so that call ids and
//! windows line up often enough to reach deep states) interleaved with
//! arbitrary operations of our own application.
//!
//! The session must never panic, and a model kept beside it checks:
//!
//! - every call's application side ends exactly once (by `ended`), none is
//!   dropped silently, and none ends after `close` has ended them all;
//! - `open_calls()` equals the calls opened or admitted and not yet ended;
//! - the peer's open calls stay within `max_served` and its open contexts'
//!   windows within `max_served_window`;
//! - items handed to a call, alone or in batches, never exceed its window
//!   plus what was granted;
//! - every message the session gives us to send belongs to a call that was
//!   open and has its id.
//!
//! Input layout: byte 0 picks our side and the limits (small ones, so the
//! caps are reached, or the defaults); then a sequence of operations, each an
//! opcode byte and its operands (missing bytes read as zero).
#![no_main]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use actor_transport::codec::FrameCodec;
use actor_transport::{
    BatchBuilder, CallApp, CallId, CallKind, CallStart, Completion, End, ErrorKind, Incoming, Limits, Msg,
    RemoteError, Session, Side, Uid, item_cost,
};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

/// What the model knows of one open call.
#[derive(Debug)]
struct Open {
    kind: CallKind,
    served: bool,
    window: u32,
    /// Item cost the session delivered minus what it let us grant back.
    outstanding: u64,
}

#[derive(Default)]
struct Model {
    /// Calls whose application side exists and has not ended, by serial.
    live: BTreeMap<u64, CallId>,
    /// Serials that ended, to catch a second end.
    ended: BTreeSet<u64>,
    /// Open calls by id.
    open: BTreeMap<CallId, Open>,
    /// Set when the session was closed: later ends are the close's.
    closing: bool,
}

type Shared = Rc<RefCell<Model>>;

/// The application side of one call: records what the session does to it.
struct App {
    serial: u64,
    cid: CallId,
    model: Shared,
    ended: bool,
}

impl CallApp for App {
    fn started(&mut self, _value: Bytes) {
        self.assert_open("started");
    }

    fn item(&mut self, value: Bytes) {
        self.assert_open("item");
        let mut m = self.model.borrow_mut();
        let call = m.open.get_mut(&self.cid).expect("an item for a call the model has open");
        call.outstanding += u64::from(item_cost(value.len(), call.window));
        assert!(
            call.outstanding <= u64::from(call.window.max(1)),
            "call {}: {} of items outstanding in a window of {}",
            self.cid,
            call.outstanding,
            call.window
        );
    }

    fn stopped(&mut self) {
        self.assert_open("stopped");
    }

    fn credit(&mut self) {
        self.assert_open("credit");
    }

    fn cancel_requested(&mut self, _canceller: &Uid) {
        self.assert_open("cancel_requested");
        assert!(
            self.model.borrow().open.get(&self.cid).is_some_and(|c| c.served),
            "cancel of a call of ours"
        );
    }

    fn ended(mut self, end: End) {
        self.ended = true;
        let mut m = self.model.borrow_mut();
        assert!(m.ended.insert(self.serial), "call {} (serial {}) ended twice", self.cid, self.serial);
        assert_eq!(m.live.remove(&self.serial), Some(self.cid), "an end for a call that was not live");
        if m.closing {
            assert!(matches!(end, End::Closed(_)), "call {} ended as {end:?} while closing", self.cid);
        }
        assert!(m.open.remove(&self.cid).is_some(), "call {} ended but was not open", self.cid);
    }
}

impl App {
    fn assert_open(&self, what: &str) {
        let m = self.model.borrow();
        assert!(m.live.contains_key(&self.serial), "{what} for call {} after it ended", self.cid);
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // A panic while unwinding aborts, hiding the first failure: only check
        // on the normal path.
        if !std::thread::panicking() {
            assert!(self.ended, "call {} (serial {}) was dropped without `ended`", self.cid, self.serial);
        }
    }
}

/// The fuzz input as a stream of operands; reads past the end give zeros.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn bytes(&mut self, max: usize) -> &[u8] {
        let n = usize::from(self.byte()).min(max).min(self.data.len());
        let (taken, rest) = self.data.split_at(n);
        self.data = rest;
        taken
    }

    /// A call id: usually a small one (likely open), sometimes anything.
    fn cid(&mut self) -> CallId {
        match self.byte() {
            b @ 0..=239 => u64::from(b % 24),
            _ => u64::from(self.u32()) | (u64::from(self.byte()) << 40),
        }
    }

    fn kind(&mut self) -> CallKind {
        match self.byte() % 3 {
            0 => CallKind::Single,
            1 => CallKind::Stream,
            _ => CallKind::Context,
        }
    }

    /// A window: usually near the limits' interesting values.
    fn window(&mut self) -> u32 {
        match self.byte() % 6 {
            0 => 0,
            1 => 1024,
            2 => 4096,
            3 => 1024 * 1024,
            4 => 16 * 1024 * 1024,
            _ => self.u32(),
        }
    }

    /// An item: its length is what flow control counts.
    fn value(&mut self) -> Bytes {
        let len = match self.byte() % 5 {
            0 => 0,
            1 => 1,
            2 => 1000,
            3 => 5000,
            _ => usize::from(self.byte()) * 64,
        };
        Bytes::from(vec![0u8; len])
    }

    /// The items of a batch: usually a few values packed as a producer
    /// packs them (possibly none), sometimes arbitrary bytes.
    fn batch(&mut self) -> Bytes {
        if self.byte() % 4 == 0 {
            return Bytes::copy_from_slice(self.bytes(64));
        }
        let mut b = BatchBuilder::new();
        for _ in 0..self.byte() % 6 {
            let v = self.value();
            b.push(&v).expect("a value encodes");
        }
        b.take().map(|(items, _)| items).unwrap_or_default()
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

struct Harness {
    session: Session<App>,
    model: Shared,
    next_serial: u64,
    limits: Limits,
    side: Side,
}

impl Harness {
    fn app(&mut self, cid: CallId) -> App {
        self.next_serial += 1;
        self.model.borrow_mut().live.insert(self.next_serial, cid);
        App { serial: self.next_serial, cid, model: self.model.clone(), ended: false }
    }

    fn ours(&self, cid: CallId) -> bool {
        cid % 2 == if self.side == Side::Connector { 1 } else { 0 }
    }

    /// Checks a message the session told us to send.
    fn sent(&self, msg: &Msg) {
        if let Some(cid) = msg.cid() {
            // Refusals name the peer's id, open or not; a call's last message
            // leaves after the call left the table.
            let last = matches!(
                msg,
                Msg::Error { .. } | Msg::Cancel { .. } | Msg::Return { .. } | Msg::CancelAck { .. }
            );
            assert!(
                last || self.model.borrow().open.contains_key(&cid),
                "{} for call {cid}, which is not open",
                msg.name()
            );
        }
    }

    fn check(&mut self) {
        let m = self.model.borrow();
        assert_eq!(
            self.session.open_calls(),
            m.open.len(),
            "open_calls() disagrees with the model: {:?}",
            m.open
        );
        assert_eq!(m.open.len(), m.live.len(), "open calls and live applications differ");
        let served = m.open.values().filter(|c| c.served).count();
        assert!(
            served <= self.limits.max_served,
            "{served} served calls over a cap of {}",
            self.limits.max_served
        );
        let window: u64 = m
            .open
            .values()
            .filter(|c| c.served && c.kind == CallKind::Context)
            .map(|c| u64::from(c.window))
            .sum();
        assert!(
            window <= self.limits.max_served_window,
            "served contexts hold {window} of window over a cap of {}",
            self.limits.max_served_window
        );
        if self.session.closed().is_some() {
            assert!(m.open.is_empty(), "calls open after close: {:?}", m.open);
        }
    }

    fn close(&mut self, reason: &str) {
        self.model.borrow_mut().closing = true;
        self.session.close(reason);
        self.model.borrow_mut().closing = false;
        assert!(self.model.borrow().open.is_empty(), "close left calls open");
    }

    /// Feeds one message from the peer, as `link.rs` does: a violation closes.
    fn peer(&mut self, msg: Msg, input: &mut Input<'_>) {
        // What an open session must answer by itself: a `Pong` for a `Ping`,
        // a protocol `Error` for a `Start` it does not hand to the driver.
        let open = self.session.closed().is_none();
        let (ping, start) = match &msg {
            Msg::Ping { nonce } if open => (Some(*nonce), None),
            Msg::Start { cid, .. } if open => (None, Some(*cid)),
            _ => (None, None),
        };
        let mut handed_over = false;
        match self.session.handle(msg) {
            Ok(Some(Incoming::Call(CallStart { cid, kind, window, .. }))) => {
                handed_over = true;
                assert!(!self.ours(cid), "a call with our parity was let through");
                assert!(!self.model.borrow().open.contains_key(&cid), "a call id in use was let through");
                // The driver decides before the next message.
                if input.byte() % 4 == 0 {
                    let msg = self.session.refuse(
                        cid,
                        RemoteError::new(Uid::new("fuzz"), ErrorKind::UnknownFunction, "t", "refused"),
                    );
                    self.sent(&msg);
                } else {
                    let app = self.app(cid);
                    // On a closed session `admit` ends the call at once.
                    self.model
                        .borrow_mut()
                        .open
                        .insert(cid, Open { kind, served: true, window, outstanding: 0 });
                    self.session.admit(cid, kind, window, app);
                }
            }
            Ok(_) => {}
            Err(_violation) => self.close("violation"),
        }
        let mut queued = Vec::new();
        while let Some(m) = self.session.poll_transmit() {
            self.sent(&m);
            queued.push(m);
        }
        if let Some(nonce) = ping {
            assert_eq!(queued, [Msg::Pong { nonce }], "the answer to a ping");
        }
        match start {
            Some(cid) if !handed_over => match queued.as_slice() {
                [Msg::Error { cid: c, error }] if *c == cid && error.kind == ErrorKind::Protocol => {}
                other => panic!("a Start for {cid} was neither handed over nor refused: {other:?}"),
            },
            Some(_) => assert!(queued.is_empty(), "a call handed over was also answered: {queued:?}"),
            None => {}
        }
    }

    fn structured(&mut self, input: &mut Input<'_>) -> Msg {
        let cid = input.cid();
        let canceller = Uid { name: "peer".into(), id: "0".into() };
        match input.byte() % 15 {
            0 => Msg::Start {
                cid,
                func: "f".into(),
                kind: input.kind(),
                args: Bytes::new(),
                window: input.window(),
                timeout_ms: None,
                key: None,
                trace: None,
            },
            1 => Msg::StartAck { cid },
            2 => Msg::Started { cid, value: input.value() },
            3 => Msg::Yield { cid, value: input.value() },
            4 => Msg::Stop { cid },
            5 => Msg::Return { cid, value: input.value() },
            6 => Msg::Error {
                cid,
                error: Box::new(RemoteError::new(canceller, ErrorKind::Application, "t", "m")),
            },
            7 => Msg::Cancel { cid, canceller },
            8 => Msg::CancelAck { cid },
            9 => Msg::Credit { cid, credit: input.window() },
            10 => Msg::Ping { nonce: cid },
            11 => Msg::Pong { nonce: cid },
            12 => Msg::CancelActor { canceller, reason: String::new() },
            13 => Msg::YieldBatch { cid, items: input.batch() },
            _ => Msg::Welcome,
        }
    }

    fn local(&mut self, op: u8, input: &mut Input<'_>) {
        let cid = input.cid();
        match op {
            0 => {
                let kind = input.kind();
                if self.session.closed().is_some() {
                    // Refused before it became a call: the session drops the
                    // application side without an end, which is fine here.
                    let app = App { serial: 0, cid: 0, model: self.model.clone(), ended: true };
                    assert!(
                        self.session.open("f", kind, Bytes::new(), app).is_err(),
                        "open on a closed session"
                    );
                    return;
                }
                let app = self.app(0);
                let serial = self.next_serial;
                let (cid, msg) =
                    self.session.open("f", kind, Bytes::new(), app).expect("open on an open session");
                assert!(self.ours(cid), "our call got the peer's parity");
                assert_eq!(msg.cid(), Some(cid));
                let mut m = self.model.borrow_mut();
                assert!(!m.open.contains_key(&cid), "call id {cid} reused while open");
                m.live.insert(serial, cid);
                m.open.insert(cid, Open { kind, served: false, window: self.limits.window, outstanding: 0 });
                drop(m);
                // The application side was made before its id was known.
                if let Some(app) = self.session.app(cid) {
                    app.cid = cid;
                }
            }
            1 => {
                if let Ok(msg) = self.session.send_item(cid, input.value()) {
                    self.sent(&msg);
                }
            }
            2 => {
                if let Ok(msg) = self.session.send_stop(cid) {
                    self.sent(&msg);
                }
            }
            3 => {
                if let Ok(msg) = self.session.send_started(cid, input.value()) {
                    self.sent(&msg);
                }
            }
            4 => {
                let credit = input.window();
                if let Some(msg) = self.session.grant(cid, credit) {
                    self.sent(&msg);
                    let Msg::Credit { credit: granted, .. } = msg else { panic!("a grant sent {msg:?}") };
                    assert!(granted <= credit, "granted {granted} of {credit}");
                    let mut m = self.model.borrow_mut();
                    let call = m.open.get_mut(&cid).expect("a grant on a call the model has closed");
                    call.outstanding = call.outstanding.saturating_sub(u64::from(granted));
                }
            }
            5 => {
                let error = Box::new(RemoteError::new(Uid::new("me"), ErrorKind::Cancelled, "t", "m"));
                let how = match input.byte() % 3 {
                    0 => Completion::Returned(input.value()),
                    1 => Completion::Failed(error),
                    _ => Completion::Cancelled(error),
                };
                let was_served = self.model.borrow().open.get(&cid).is_some_and(|c| c.served);
                let msg = self.session.complete(cid, how);
                assert_eq!(msg.is_some(), was_served, "complete of call {cid}");
                if msg.is_some() {
                    self.session.reply_queued();
                }
            }
            6 => {
                let was_ours = self.model.borrow().open.get(&cid).is_some_and(|c| !c.served);
                let msg = self.session.abandon(cid);
                assert_eq!(msg.is_some(), was_ours, "abandon of call {cid}");
            }
            7 => {
                if let Some(msg) = self.session.request_cancel(cid) {
                    assert!(self.model.borrow().open.get(&cid).is_some_and(|c| !c.served), "cancel of {cid}");
                    self.sent(&msg);
                }
            }
            8 => {
                // A producer packing a batch takes the credit and spends it
                // item by item itself, never beyond what it took.
                let Ok(credit) = self.session.withdraw_credit(cid) else { return };
                let window = self.model.borrow().open.get(&cid).map_or(0, |c| c.window);
                assert!(credit <= u64::from(window.max(1)), "withdrew {credit} of a {window} window");
                let mut batch = BatchBuilder::new();
                let mut spent = 0u64;
                for _ in 0..input.byte() % 8 {
                    let v = input.value();
                    let len = batch.push(&v).expect("a value encodes");
                    let cost = u64::from(item_cost(len, window));
                    if spent + cost > credit {
                        batch.pop();
                        break;
                    }
                    spent += cost;
                }
                if let Some((items, count)) = batch.take() {
                    let msg = self.session.send_batch(cid, items, count).expect("the call was open");
                    self.sent(&msg);
                }
            }
            _ => self.close("closed by us"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input { data };
    let config = input.byte();
    let side = if config & 1 == 0 { Side::Connector } else { Side::Acceptor };
    let limits = if config & 2 == 0 {
        Limits::default()
    } else {
        Limits {
            window: 4096,
            min_window: 1024,
            max_window: 16 * 1024,
            max_served: 3,
            max_served_window: 20 * 1024,
        }
    };
    let mut h = Harness {
        session: Session::new(side, Uid { name: "me".into(), id: "1".into() }, limits.clone()),
        model: Rc::default(),
        next_serial: 0,
        limits,
        side,
    };
    let mut steps = 0;
    while !input.is_empty() && steps < 4096 {
        steps += 1;
        match input.byte() {
            // Raw frames through the decoder: whatever decodes is delivered.
            0..=15 => {
                let mut buf = BytesMut::from(input.bytes(255));
                let mut codec = FrameCodec::<Msg>::new(64 * 1024);
                while let Ok(Some(msg)) = codec.decode(&mut buf) {
                    h.peer(msg, &mut input);
                }
            }
            16..=143 => {
                let msg = h.structured(&mut input);
                h.peer(msg, &mut input);
            }
            op => h.local((op - 144) % 10, &mut input),
        }
        h.check();
    }
    h.close("end of input");
    h.check();
    let m = h.model.borrow();
    assert!(m.live.is_empty(), "applications never ended: {:?}", m.live);
});
