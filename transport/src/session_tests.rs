//! Two sessions as an in-memory pair: every transition and violation, and a
//! proptest of random interleavings (quinn-proto's `Pair` model).

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use proptest::prelude::*;

use super::*;
use crate::flow::{Unclaimed, item_cost};

/// How a call ended, as the tests compare it.
#[derive(Clone, Debug, PartialEq)]
enum Ended {
    Returned(Bytes),
    Failed(String),
    CancelAcked,
    Abandoned,
    Completed,
    Closed,
}

/// Everything the session handed one call's application side.
#[derive(Default, Debug)]
struct Log {
    started: Option<Bytes>,
    items: VecDeque<Bytes>,
    stopped: bool,
    credits: usize,
    cancel_requested: Option<Uid>,
    ended: Vec<Ended>,
}

#[derive(Clone, Default)]
struct Rec(Rc<RefCell<Log>>);

impl CallApp for Rec {
    fn started(&mut self, value: Bytes) {
        self.0.borrow_mut().started = Some(value);
    }
    fn item(&mut self, value: Bytes) {
        self.0.borrow_mut().items.push_back(value);
    }
    fn stopped(&mut self) {
        self.0.borrow_mut().stopped = true;
    }
    fn credit(&mut self) {
        self.0.borrow_mut().credits += 1;
    }
    fn cancel_requested(&mut self, canceller: &Uid) {
        self.0.borrow_mut().cancel_requested = Some(canceller.clone());
    }
    fn ended(self, end: End) {
        let e = match end {
            End::Returned(v) => Ended::Returned(v),
            End::Failed(e) => Ended::Failed(e.message),
            End::CancelAcked => Ended::CancelAcked,
            End::Abandoned => Ended::Abandoned,
            End::Completed => Ended::Completed,
            End::Closed(_) => Ended::Closed,
        };
        self.0.borrow_mut().ended.push(e);
    }
}

impl Rec {
    fn log(&self) -> std::cell::Ref<'_, Log> {
        self.0.borrow()
    }
}

/// One end of the pair: its session, and the logs of its calls by id.
struct End2 {
    s: Session<Rec>,
    calls: BTreeMap<CallId, Rec>,
    /// The served calls' kinds, by id.
    served: BTreeMap<CallId, CallKind>,
    /// Grants due per call, kept beside the consumer.
    unclaimed: BTreeMap<CallId, Unclaimed>,
}

impl End2 {
    fn new(side: Side, limits: Limits) -> Self {
        End2 {
            s: Session::new(side, Uid::new(format!("{side:?}")), limits),
            calls: BTreeMap::new(),
            served: BTreeMap::new(),
            unclaimed: BTreeMap::new(),
        }
    }

    fn log(&self, cid: CallId) -> std::cell::Ref<'_, Log> {
        self.calls[&cid].log()
    }
}

/// Two sessions and the messages in flight between them, in order.
struct Pair {
    a: End2,
    b: End2,
    to_a: VecDeque<Msg>,
    to_b: VecDeque<Msg>,
}

impl Pair {
    fn new() -> Self {
        Pair::with_limits(Limits::default())
    }

    fn with_limits(limits: Limits) -> Self {
        Pair {
            a: End2::new(Side::Connector, limits.clone()),
            b: End2::new(Side::Acceptor, limits),
            to_a: VecDeque::new(),
            to_b: VecDeque::new(),
        }
    }

    fn end(&mut self, a: bool) -> &mut End2 {
        if a { &mut self.a } else { &mut self.b }
    }

    fn outbox(&mut self, from_a: bool) -> &mut VecDeque<Msg> {
        if from_a { &mut self.to_b } else { &mut self.to_a }
    }

    fn open(&mut self, from_a: bool, kind: CallKind) -> CallId {
        let rec = Rec::default();
        let end = self.end(from_a);
        let (cid, msg) = end.s.open("f", kind, Bytes::from_static(b"\x90"), rec.clone()).expect("open");
        end.calls.insert(cid, rec);
        end.unclaimed.insert(cid, Unclaimed::new(end.s.limits().window));
        self.outbox(from_a).push_back(msg);
        cid
    }

    fn send(&mut self, from_a: bool, msg: Msg) {
        self.outbox(from_a).push_back(msg);
    }

    /// Delivers one message to `a` (or `b`); an admitted call gets a log.
    fn step(&mut self, to_a: bool) -> Result<bool, Violation> {
        let queue = if to_a { &mut self.to_a } else { &mut self.to_b };
        let Some(msg) = queue.pop_front() else { return Ok(false) };
        let end = self.end(to_a);
        if let Some(Incoming::Call(CallStart { cid, kind, window, .. })) = end.s.handle(msg)? {
            let rec = Rec::default();
            end.s.admit(cid, kind, window, rec.clone());
            end.calls.insert(cid, rec);
            end.served.insert(cid, kind);
            end.unclaimed.insert(cid, Unclaimed::new(window));
        }
        let mut replies = Vec::new();
        while let Some(m) = end.s.poll_transmit() {
            replies.push(m);
        }
        self.outbox(to_a).extend(replies);
        Ok(true)
    }

    /// Delivers everything in flight, both ways, until both queues are empty.
    fn drive(&mut self) {
        loop {
            let a = self.step(true).expect("no violation between honest sessions");
            let b = self.step(false).expect("no violation between honest sessions");
            if !a && !b {
                return;
            }
        }
    }

    /// Consumes every item `to_a`'s side has received on `cid`, granting
    /// credit as due.
    fn consume(&mut self, on_a: bool, cid: CallId) -> usize {
        let end = self.end(on_a);
        let Some(rec) = end.calls.get(&cid).cloned() else { return 0 };
        let items: Vec<Bytes> = rec.0.borrow_mut().items.drain(..).collect();
        let mut grants = Vec::new();
        for item in &items {
            if let Some(credit) = end.unclaimed.get_mut(&cid).and_then(|u| u.consumed(item.len())) {
                grants.extend(end.s.grant(cid, credit));
            }
        }
        let n = items.len();
        self.outbox(on_a).extend(grants);
        n
    }
}

fn item(n: usize) -> Bytes {
    Bytes::from(vec![7u8; n])
}

fn remote(message: &str) -> Box<RemoteError> {
    Box::new(RemoteError::new(Uid::new("x"), ErrorKind::Application, "T", message))
}

#[test]
fn a_single_call_returns_its_value() {
    let mut p = Pair::new();
    let cid = p.open(true, CallKind::Single);
    assert_eq!(cid, 1, "the connector's ids are odd");
    p.drive();
    assert_eq!(p.b.served.get(&cid), Some(&CallKind::Single));
    let msg = p.b.s.complete(cid, Completion::Returned(Bytes::from_static(b"\x2a"))).expect("open");
    p.send(false, msg);
    p.drive();
    assert_eq!(p.a.log(cid).ended, vec![Ended::Returned(Bytes::from_static(b"\x2a"))]);
    assert_eq!(p.b.log(cid).ended, vec![Ended::Completed]);
    assert_eq!((p.a.s.open_calls(), p.b.s.open_calls()), (0, 0));
}

#[test]
fn both_sides_start_calls_with_their_own_parity() {
    let mut p = Pair::new();
    assert_eq!(p.open(true, CallKind::Single), 1);
    assert_eq!(p.open(false, CallKind::Single), 2);
    assert_eq!(p.open(true, CallKind::Single), 3);
    assert_eq!(p.open(false, CallKind::Single), 4);
    p.drive();
    assert_eq!(p.a.served.keys().copied().collect::<Vec<_>>(), vec![2, 4]);
    assert_eq!(p.b.served.keys().copied().collect::<Vec<_>>(), vec![1, 3]);
}

#[test]
fn a_stream_waits_for_credit_and_ends_with_stop() {
    let limits = Limits { window: 1024, ..Limits::default() };
    let mut p = Pair::with_limits(limits);
    let cid = p.open(true, CallKind::Stream);
    p.drive();
    // 1024 bytes of window: four items of 256, then no credit.
    for _ in 0..4 {
        let m = p.b.s.send_item(cid, item(256)).expect("credit");
        p.send(false, m);
    }
    assert_eq!(p.b.s.send_item(cid, item(256)), Err(SessionError::NoCredit(cid)));
    p.drive();
    assert_eq!(p.a.log(cid).items.len(), 4);
    // Consuming grants half a window at a time.
    assert_eq!(p.consume(true, cid), 4);
    p.drive();
    assert!(p.b.log(cid).credits >= 1);
    let m = p.b.s.send_item(cid, item(256)).expect("credit again");
    p.send(false, m);
    let stop = p.b.s.complete(cid, Completion::Returned(Bytes::new())).expect("open");
    assert_eq!(stop, Msg::Stop { cid });
    p.send(false, stop);
    p.drive();
    assert_eq!(p.a.log(cid).items.len(), 1);
    assert_eq!(p.a.log(cid).ended, vec![Ended::Returned(Bytes::new())]);
}

#[test]
fn an_item_without_credit_stays_with_its_sender() {
    let mut p = Pair::with_limits(Limits { window: 1024, ..Limits::default() });
    let cid = p.open(true, CallKind::Stream);
    p.drive();
    let mut first = Some(item(1024));
    assert!(matches!(p.b.s.send_item_from(cid, &mut first), Ok(Some(Msg::Yield { .. }))));
    assert!(first.is_none(), "taken once it could go");
    let mut second = Some(item(10));
    assert_eq!(p.b.s.send_item_from(cid, &mut second), Ok(None));
    assert_eq!(second.as_ref().map(Bytes::len), Some(10), "kept while the peer is a window behind");
    let mut none = Some(item(1));
    assert!(p.a.s.send_item_from(cid, &mut none).is_err(), "the caller of a stream sends no items");
}

#[test]
fn a_context_runs_both_ways_then_returns() {
    let mut p = Pair::new();
    let cid = p.open(true, CallKind::Context);
    p.drive();
    assert_eq!(
        p.b.s.send_item(cid, item(1)),
        Err(SessionError::Invalid { cid, why: "an item before `Started`" })
    );
    let m = p.b.s.send_started(cid, Bytes::from_static(b"\xc0")).expect("started");
    p.send(false, m);
    assert!(p.b.s.send_started(cid, Bytes::new()).is_err(), "only once");
    p.drive();
    assert_eq!(p.a.log(cid).started, Some(Bytes::from_static(b"\xc0")));
    let to_b = p.a.s.send_item(cid, item(3)).expect("caller sends");
    let to_a = p.b.s.send_item(cid, item(5)).expect("callee sends");
    p.send(true, to_b);
    p.send(false, to_a);
    let stop = p.a.s.send_stop(cid).expect("stop");
    p.send(true, stop);
    assert!(p.a.s.send_item(cid, item(1)).is_err(), "no item after our Stop");
    p.drive();
    assert_eq!(p.b.log(cid).items.len(), 1);
    assert!(p.b.log(cid).stopped);
    assert_eq!(p.a.log(cid).items.len(), 1);
    let ret = p.b.s.complete(cid, Completion::Returned(Bytes::from_static(b"\x01"))).expect("open");
    p.send(false, ret);
    p.drive();
    assert_eq!(p.a.log(cid).ended, vec![Ended::Returned(Bytes::from_static(b"\x01"))]);
}

#[test]
fn a_context_that_fails_before_started_reports_the_error() {
    let mut p = Pair::new();
    let cid = p.open(true, CallKind::Context);
    p.drive();
    let err = p.b.s.complete(cid, Completion::Failed(remote("no start"))).expect("open");
    p.send(false, err);
    p.drive();
    assert_eq!(p.a.log(cid).ended, vec![Ended::Failed("no start".into())]);
    assert_eq!(p.a.log(cid).started, None);
}

#[test]
fn a_cancel_the_callee_sees_first_is_acknowledged() {
    let mut p = Pair::new();
    let cid = p.open(true, CallKind::Single);
    p.drive();
    let cancel = p.a.s.request_cancel(cid).expect("open");
    assert_eq!(p.a.s.request_cancel(cid), None, "one Cancel per call");
    p.send(true, cancel);
    p.drive();
    assert_eq!(p.b.log(cid).cancel_requested.as_ref().map(|u| u.name.as_str()), Some("Connector"));
    assert_eq!(p.b.s.canceller(cid).map(|u| u.name.as_str()), Some("Connector"));
    let ack = p.b.s.complete(cid, Completion::Cancelled(remote("cancelled"))).expect("open");
    assert_eq!(ack, Msg::CancelAck { cid });
    p.send(false, ack);
    p.drive();
    assert_eq!(p.a.log(cid).ended, vec![Ended::CancelAcked]);
}

#[test]
fn a_cancel_racing_the_return_keeps_the_result() {
    let mut p = Pair::new();
    let cid = p.open(true, CallKind::Single);
    p.drive();
    let cancel = p.a.s.request_cancel(cid).expect("open");
    p.send(true, cancel);
    // The callee returns before it reads the Cancel.
    let ret = p.b.s.complete(cid, Completion::Returned(Bytes::from_static(b"\x07"))).expect("open");
    p.send(false, ret);
    p.drive();
    assert_eq!(p.a.log(cid).ended, vec![Ended::Returned(Bytes::from_static(b"\x07"))]);
    assert_eq!(p.b.log(cid).ended, vec![Ended::Completed]);
    assert_eq!(p.b.log(cid).cancel_requested, None, "the Cancel came after the call ended");
}

#[test]
fn a_cancel_of_the_whole_actor_is_an_error_not_an_ack() {
    let mut p = Pair::new();
    let cid = p.open(true, CallKind::Single);
    p.drive();
    let err = p.b.s.complete(cid, Completion::Cancelled(remote("actor cancelled"))).expect("open");
    assert!(matches!(err, Msg::Error { .. }), "{err:?}");
}

#[test]
fn an_abandoned_call_ends_at_once_and_late_replies_are_ignored() {
    let mut p = Pair::new();
    let cid = p.open(true, CallKind::Stream);
    p.drive();
    let y = p.b.s.send_item(cid, item(10)).expect("credit");
    p.send(false, y);
    let cancel = p.a.s.abandon(cid).expect("open");
    assert_eq!(p.a.log(cid).ended, vec![Ended::Abandoned]);
    assert_eq!(p.a.s.abandon(cid), None);
    p.send(true, cancel);
    p.drive();
    let last = p.b.s.complete(cid, Completion::Cancelled(remote("c"))).expect("open");
    assert_eq!(last, Msg::CancelAck { cid });
    p.send(false, last);
    p.drive();
    assert_eq!(p.a.log(cid).ended.len(), 1);
}

#[test]
fn a_stream_error_arrives_after_the_items_sent_before_it() {
    let mut p = Pair::new();
    let cid = p.open(true, CallKind::Stream);
    p.drive();
    for _ in 0..3 {
        let y = p.b.s.send_item(cid, item(8)).expect("credit");
        p.send(false, y);
    }
    let e = p.b.s.complete(cid, Completion::Failed(remote("boom"))).expect("open");
    p.send(false, e);
    p.drive();
    assert_eq!(p.a.log(cid).items.len(), 3);
    assert_eq!(p.a.log(cid).ended, vec![Ended::Failed("boom".into())]);
}

#[test]
fn closing_ends_every_open_call_once() {
    let mut p = Pair::new();
    let c1 = p.open(true, CallKind::Single);
    let c2 = p.open(true, CallKind::Context);
    p.drive();
    p.a.s.close("gone");
    p.a.s.close("again");
    assert_eq!(p.a.s.closed(), Some("gone"));
    for c in [c1, c2] {
        assert_eq!(p.a.log(c).ended, vec![Ended::Closed]);
    }
    assert!(matches!(
        p.a.s.open("f", CallKind::Single, Bytes::new(), Rec::default()),
        Err(SessionError::Closed(_))
    ));
    assert_eq!(p.a.s.handle(Msg::Return { cid: c1, value: Bytes::new() }), Ok(None));
}

// ---- violations and refusals ------------------------------------------------

fn violation(p: &mut Pair, to_a: bool, msg: Msg) -> Violation {
    p.send(!to_a, msg);
    p.step(to_a).expect_err("a violation")
}

fn refusal(p: &mut Pair, to_a: bool, msg: Msg) -> String {
    p.send(!to_a, msg);
    assert!(p.step(to_a).expect("no violation"));
    match p.outbox(to_a).pop_back() {
        Some(Msg::Error { error, .. }) => {
            assert_eq!(error.kind, ErrorKind::Protocol);
            error.message
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn start(cid: CallId, kind: CallKind, window: u32) -> Msg {
    Msg::Start {
        cid,
        func: "f".into(),
        kind,
        args: Bytes::new(),
        window,
        timeout_ms: None,
        key: None,
        trace: None,
    }
}

#[test]
fn a_start_with_our_parity_or_a_reused_id_is_refused() {
    let mut p = Pair::new();
    assert!(refusal(&mut p, false, start(2, CallKind::Single, 0)).contains("parity"));
    p.send(true, start(1, CallKind::Single, 0));
    p.drive();
    assert!(refusal(&mut p, false, start(1, CallKind::Single, 0)).contains("in use"));
}

#[test]
fn calls_past_the_cap_are_refused() {
    let mut p = Pair::with_limits(Limits { max_served: 2, ..Limits::default() });
    p.open(true, CallKind::Single);
    let c = p.open(true, CallKind::Single);
    p.drive();
    assert!(refusal(&mut p, false, start(5, CallKind::Single, 0)).contains("concurrent calls"));
    // A call that ends frees its place once its reply is queued, not before.
    p.b.s.complete(c, Completion::Returned(Bytes::new())).expect("open");
    assert!(refusal(&mut p, false, start(7, CallKind::Single, 0)).contains("concurrent calls"));
    p.b.s.reply_queued();
    p.send(true, start(9, CallKind::Single, 0));
    p.drive();
    assert!(p.b.served.contains_key(&9));
}

#[test]
fn windows_outside_the_limits_and_past_the_budget_are_refused() {
    let limits = Limits { max_served_window: 2 * 1024 * 1024, ..Limits::default() };
    let mut p = Pair::with_limits(limits);
    assert!(refusal(&mut p, false, start(1, CallKind::Stream, 10)).contains("outside"));
    assert!(refusal(&mut p, false, start(3, CallKind::Context, u32::MAX)).contains("outside"));
    p.send(true, start(5, CallKind::Context, 1024 * 1024));
    p.send(true, start(7, CallKind::Context, 1024 * 1024));
    p.drive();
    assert!(refusal(&mut p, false, start(9, CallKind::Context, 1024)).contains("window"));
    p.b.s.complete(5, Completion::Returned(Bytes::new())).expect("open");
    p.send(true, start(11, CallKind::Context, 1024));
    p.drive();
    assert!(p.b.served.contains_key(&11), "an ended context gives its window back");
}

#[test]
fn credit_beyond_the_window_is_a_violation() {
    let mut p = Pair::new();
    let cid = p.open(true, CallKind::Stream);
    p.drive();
    let v = violation(&mut p, false, Msg::Credit { cid, credit: 1 });
    assert!(matches!(v, Violation::Flow { error: FlowError::CreditOverflow { .. }, .. }), "{v}");
}

#[test]
fn items_beyond_credit_are_a_violation() {
    let limits = Limits { window: 1024, ..Limits::default() };
    let mut p = Pair::with_limits(limits);
    let cid = p.open(true, CallKind::Stream);
    p.drive();
    p.send(false, Msg::Yield { cid, value: item(1024) });
    p.drive();
    let v = violation(&mut p, true, Msg::Yield { cid, value: item(1) });
    assert!(matches!(v, Violation::Flow { error: FlowError::BeyondCredit { .. }, .. }), "{v}");
}

/// `values` packed as a batch the way a producer packs them.
fn batch_of(values: &[Bytes]) -> (Bytes, usize) {
    let mut b = crate::BatchBuilder::new();
    for v in values {
        b.push(v).expect("encodes");
    }
    b.take().expect("items")
}

#[test]
fn a_batch_is_delivered_in_order_and_charged_per_item() {
    let limits = Limits { window: 1024, ..Limits::default() };
    let mut p = Pair::with_limits(limits);
    let cid = p.open(true, CallKind::Stream);
    p.drive();
    // Items of 98 bytes: 100-byte documents, so ten fill 1000 of the window.
    let values: Vec<Bytes> = (0..10u8).map(|i| Bytes::from(vec![i; 98])).collect();
    assert_eq!(p.b.s.withdraw_credit(cid), Ok(1024));
    assert_eq!(p.b.s.withdraw_credit(cid), Ok(0), "all of it was taken");
    let (items, count) = batch_of(&values[..9]);
    let msg = p.b.s.send_batch(cid, items, count).expect("open");
    assert!(matches!(msg, Msg::YieldBatch { .. }));
    p.send(false, msg);
    let (one, count) = batch_of(&values[9..]);
    let msg = p.b.s.send_batch(cid, one, count).expect("open");
    assert!(matches!(msg, Msg::Yield { .. }), "a batch of one goes as a plain Yield");
    p.send(false, msg);
    p.drive();
    let got: Vec<Bytes> = p.a.log(cid).items.iter().cloned().collect();
    let want: Vec<Bytes> =
        values.iter().map(|v| Bytes::from(rmp_serde::to_vec(v).expect("encodes"))).collect();
    assert_eq!(got, want);
    // The receiver charged all ten: one more byte is beyond its allowance
    // until it grants.
    let v = violation(&mut p, true, Msg::YieldBatch { cid, items: batch_of(&[item(30)]).0 });
    assert!(matches!(v, Violation::Flow { error: FlowError::BeyondCredit { .. }, .. }), "{v}");
}

#[test]
fn a_bytes_item_is_checked_like_any_item() {
    let mut p = Pair::new();
    let single = p.open(true, CallKind::Single);
    let stream = p.open(true, CallKind::Stream);
    p.drive();
    let data = Bytes::from(vec![3u8; 2000]);
    let item = p.b.s.send_bytes_item(stream, data.clone()).expect("open");
    assert_eq!((item.cid(), item.data()), (stream, &data));
    assert!(matches!(p.b.s.send_bytes_item(single, data.clone()), Err(SessionError::Invalid { .. })));
    assert!(matches!(p.b.s.send_bytes_item(99, data.clone()), Err(SessionError::NotOpen(99))));
    p.b.s.send_stop(stream).expect("open");
    assert!(matches!(p.b.s.send_bytes_item(stream, data), Err(SessionError::Invalid { .. })), "after Stop");
}

#[test]
fn a_batch_beyond_credit_is_refused_whole() {
    let limits = Limits { window: 1024, ..Limits::default() };
    let mut p = Pair::with_limits(limits);
    let cid = p.open(true, CallKind::Stream);
    p.drive();
    let (items, _) = batch_of(&[item(600), item(600)]);
    let v = violation(&mut p, true, Msg::YieldBatch { cid, items });
    assert!(matches!(v, Violation::Flow { error: FlowError::BeyondCredit { .. }, .. }), "{v}");
    assert!(p.a.log(cid).items.is_empty(), "no item of a refused batch is delivered");
}

#[test]
fn malformed_or_misplaced_batches_are_violations() {
    let mut p = Pair::new();
    let single = p.open(true, CallKind::Single);
    let stream = p.open(true, CallKind::Stream);
    p.drive();
    for (items, why) in [
        (Bytes::new(), "an empty batch"),
        (Bytes::from_static(b"\xc4\x05abc"), "a batch that is not a sequence of `bin` items"),
        (Bytes::from_static(b"\x01\x02"), "a batch that is not a sequence of `bin` items"),
    ] {
        assert_eq!(
            violation(&mut p, true, Msg::YieldBatch { cid: stream, items }),
            Violation::BadBatch { cid: stream, why }
        );
    }
    let v = violation(&mut p, true, Msg::YieldBatch { cid: single, items: batch_of(&[item(1)]).0 });
    assert!(matches!(v, Violation::OutOfOrder { why: "a single call carries no items", .. }), "{v}");
    let v = violation(&mut p, true, Msg::YieldBatch { cid: 99, items: batch_of(&[item(1)]).0 });
    assert!(matches!(v, Violation::UnknownCall { .. }), "{v}");
    assert!(matches!(p.b.s.send_batch(stream, Bytes::new(), 0), Err(SessionError::Invalid { .. })));
    assert!(p.a.log(stream).items.is_empty());
}

#[test]
fn replies_with_the_wrong_parity_or_an_unused_id_are_violations() {
    let mut p = Pair::new();
    p.open(true, CallKind::Single);
    p.drive();
    let v = violation(&mut p, true, Msg::Return { cid: 2, value: Bytes::new() });
    assert_eq!(v, Violation::WrongParity { msg: "Return", cid: 2 });
    let mut p = Pair::new();
    p.open(true, CallKind::Single);
    for msg in [
        Msg::Return { cid: 3, value: Bytes::new() },
        Msg::Error { cid: 5, error: remote("x") },
        Msg::Started { cid: 7, value: Bytes::new() },
        Msg::CancelAck { cid: 9 },
        Msg::Yield { cid: 11, value: Bytes::new() },
        Msg::Stop { cid: 13 },
        Msg::Credit { cid: 15, credit: 1 },
        Msg::StartAck { cid: 17 },
    ] {
        let name = msg.name();
        assert!(matches!(violation(&mut p, true, msg), Violation::UnknownCall { .. }), "{name}");
    }
}

#[test]
fn messages_out_of_order_are_violations() {
    let mut p = Pair::new();
    let single = p.open(true, CallKind::Single);
    let stream = p.open(true, CallKind::Stream);
    let ctx = p.open(true, CallKind::Context);
    p.drive();
    let cases = [
        (true, Msg::Yield { cid: single, value: Bytes::new() }, "a single call carries no items"),
        (true, Msg::Started { cid: stream, value: Bytes::new() }, "only a context has `Started`"),
        (true, Msg::Yield { cid: ctx, value: Bytes::new() }, "an item before `Started`"),
        (true, Msg::Return { cid: stream, value: Bytes::new() }, "a stream ends with `Stop`"),
        (true, Msg::CancelAck { cid: single }, "the call was not cancelled"),
        (false, Msg::Yield { cid: stream, value: Bytes::new() }, "the caller of a stream sends no items"),
    ];
    for (to_a, msg, expected) in cases {
        match violation(&mut p, to_a, msg) {
            Violation::OutOfOrder { why, .. } => assert_eq!(why, expected),
            other => panic!("{other}"),
        }
    }
    p.send(false, Msg::Started { cid: ctx, value: Bytes::new() });
    p.drive();
    let v = violation(&mut p, true, Msg::Started { cid: ctx, value: Bytes::new() });
    assert!(matches!(v, Violation::OutOfOrder { why: "a second `Started`", .. }), "{v}");
    p.send(false, Msg::Stop { cid: ctx });
    p.drive();
    let v = violation(&mut p, true, Msg::Yield { cid: ctx, value: Bytes::new() });
    assert!(matches!(v, Violation::OutOfOrder { why: "an item after `Stop`", .. }), "{v}");
}

#[test]
fn handshake_messages_after_the_handshake_are_violations() {
    let mut p = Pair::new();
    let v = violation(&mut p, true, Msg::Welcome);
    assert_eq!(v, Violation::AfterHandshake { msg: "Welcome" });
    let v = violation(&mut p, false, Msg::Init { config: Bytes::new() });
    assert_eq!(v, Violation::AfterHandshake { msg: "Init" });
}

#[test]
fn stray_cancels_and_late_messages_are_ignored() {
    let mut p = Pair::new();
    let cid = p.open(true, CallKind::Context);
    p.drive();
    for msg in [
        Msg::Cancel { cid: 999_999, canceller: Uid::new("x") },
        Msg::Cancel { cid: 2, canceller: Uid::new("x") },
        // The peer's own ids, not open (or never used: only the peer knows).
        Msg::Credit { cid: 1001, credit: 5 },
        Msg::Yield { cid: 1003, value: Bytes::new() },
    ] {
        p.send(true, msg);
        assert!(p.step(false).expect("ignored"));
    }
    p.b.s.complete(cid, Completion::Returned(Bytes::new())).expect("open");
    // The caller's items racing the callee's return.
    p.send(true, Msg::Yield { cid, value: Bytes::new() });
    p.send(true, Msg::Stop { cid });
    p.drive();
}

#[test]
fn a_ping_is_answered_by_the_session_itself() {
    let mut p = Pair::new();
    p.send(true, Msg::Ping { nonce: 7 });
    assert!(p.step(false).expect("no violation"));
    assert_eq!(p.to_a.pop_front(), Some(Msg::Pong { nonce: 7 }));
    assert_eq!(p.a.s.handle(Msg::Pong { nonce: 7 }), Ok(None));
}

#[test]
fn control_messages_are_handed_to_the_driver() {
    let mut p = Pair::new();
    let c = Uid::new("parent");
    p.send(true, Msg::CancelActor { canceller: c.clone(), reason: "bye".into() });
    assert_eq!(
        p.b.s.handle(p.to_b.pop_front().expect("queued")),
        Ok(Some(Incoming::CancelActor { canceller: c, reason: "bye".into() }))
    );
    assert_eq!(p.a.s.handle(Msg::CancelActorAck), Ok(Some(Incoming::CancelActorAck)));
}

// ---- random interleavings -------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Open {
        from_a: bool,
        kind: u8,
    },
    Deliver {
        to_a: bool,
        n: u8,
    },
    /// The callee side of a call acts.
    Serve {
        on_a: bool,
        pick: u8,
        act: u8,
        len: u16,
    },
    /// The caller side of a call acts.
    Caller {
        on_a: bool,
        pick: u8,
        act: u8,
        len: u16,
    },
    Consume {
        on_a: bool,
        pick: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<bool>(), 0..3u8).prop_map(|(from_a, kind)| Op::Open { from_a, kind }),
        (any::<bool>(), 1..6u8).prop_map(|(to_a, n)| Op::Deliver { to_a, n }),
        (any::<bool>(), any::<u8>(), 0..6u8, 0..600u16).prop_map(|(on_a, pick, act, len)| Op::Serve {
            on_a,
            pick,
            act,
            len
        }),
        (any::<bool>(), any::<u8>(), 0..5u8, 0..600u16).prop_map(|(on_a, pick, act, len)| Op::Caller {
            on_a,
            pick,
            act,
            len
        }),
        (any::<bool>(), any::<u8>()).prop_map(|(on_a, pick)| Op::Consume { on_a, pick }),
    ]
}

/// What the test knows of one call beyond its logs.
#[derive(Default, Clone)]
struct Truth {
    /// The callee's completion, if it completed: what the caller must see.
    completed: Option<Ended>,
    cancel_requested: bool,
    abandoned: bool,
}

fn pick<T: Copy>(keys: impl Iterator<Item = T>, pick: u8) -> Option<T> {
    let v: Vec<T> = keys.collect();
    (!v.is_empty()).then(|| v[pick as usize % v.len()])
}

struct Model {
    p: Pair,
    /// Per (caller is a, cid).
    truth: BTreeMap<(bool, CallId), Truth>,
    /// Cost of items in flight per (sender is a, cid), counted from the
    /// messages: Yields sent minus Credits granted.
    in_flight: BTreeMap<(bool, CallId), u64>,
    window: u32,
}

impl Model {
    fn account(&mut self, from_a: bool, msg: &Msg) {
        match msg {
            Msg::Yield { cid, value } => {
                let f = self.in_flight.entry((from_a, *cid)).or_default();
                *f += u64::from(item_cost(value.len(), self.window));
                assert!(*f <= u64::from(self.window), "more than a window in flight on call {cid}");
            }
            Msg::Credit { cid, credit } => {
                let f = self.in_flight.entry((!from_a, *cid)).or_default();
                *f = f.checked_sub(u64::from(*credit)).expect("credit for items never sent");
            }
            _ => {}
        }
    }

    fn send(&mut self, from_a: bool, msg: Msg) {
        self.account(from_a, &msg);
        self.p.send(from_a, msg);
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Open { from_a, kind } => {
                let kind = [CallKind::Single, CallKind::Stream, CallKind::Context][kind as usize];
                let cid = self.p.open(from_a, kind);
                self.truth.insert((from_a, cid), Truth::default());
            }
            Op::Deliver { to_a, n } => {
                for _ in 0..n {
                    let before = self.p.outbox(to_a).len();
                    self.p.step(to_a).expect("no violation between honest sessions");
                    // Refusals the session sent by itself are accounted too.
                    let replies: Vec<Msg> = self.p.outbox(to_a).iter().skip(before).cloned().collect();
                    for r in &replies {
                        if matches!(r, Msg::Yield { .. } | Msg::Credit { .. }) {
                            self.account(to_a, r);
                        }
                    }
                }
            }
            Op::Serve { on_a, pick: k, act, len } => {
                let open: Vec<CallId> = self.p.end(on_a).served.keys().copied().collect();
                let Some(cid) = pick(open.into_iter(), k) else { return };
                let kind = self.p.end(on_a).served[&cid];
                let s = &mut self.p.end(on_a).s;
                let msg = match act {
                    0 => s.send_started(cid, Bytes::from_static(b"\x01")).ok(),
                    1 | 2 => s.send_item(cid, item(len as usize)).ok(),
                    3 if kind == CallKind::Context => s.send_stop(cid).ok(),
                    _ => {
                        let how = match act {
                            4 => Completion::Returned(Bytes::from(len.to_be_bytes().to_vec())),
                            5 => Completion::Failed(remote(&format!("fail {len}"))),
                            _ => Completion::Cancelled(remote("cancelled")),
                        };
                        let expected = match &how {
                            Completion::Returned(_) if kind == CallKind::Stream => {
                                Ended::Returned(Bytes::new())
                            }
                            Completion::Returned(v) => Ended::Returned(v.clone()),
                            Completion::Failed(e) => Ended::Failed(e.message.clone()),
                            Completion::Cancelled(_) if s.canceller(cid).is_some() => Ended::CancelAcked,
                            Completion::Cancelled(e) => Ended::Failed(e.message.clone()),
                        };
                        let msg = s.complete(cid, how);
                        if msg.is_some() {
                            self.p.end(on_a).served.remove(&cid);
                            self.truth.entry((!on_a, cid)).or_default().completed = Some(expected);
                        }
                        msg
                    }
                };
                if let Some(m) = msg {
                    self.send(on_a, m);
                }
            }
            Op::Caller { on_a, pick: k, act, len } => {
                let mine: Vec<CallId> = {
                    let end = self.p.end(on_a);
                    end.calls
                        .keys()
                        .copied()
                        .filter(|c| end.s.is_ours(*c) && end.s.app(*c).is_some())
                        .collect()
                };
                let Some(cid) = pick(mine.into_iter(), k) else { return };
                let s = &mut self.p.end(on_a).s;
                let msg = match act {
                    0 | 1 => s.send_item(cid, item(len as usize)).ok(),
                    2 => s.send_stop(cid).ok(),
                    3 => {
                        let m = s.request_cancel(cid);
                        if m.is_some() {
                            self.truth.entry((on_a, cid)).or_default().cancel_requested = true;
                        }
                        m
                    }
                    _ => {
                        let m = s.abandon(cid);
                        self.truth.entry((on_a, cid)).or_default().abandoned = true;
                        m
                    }
                };
                if let Some(m) = msg {
                    self.send(on_a, m);
                }
            }
            Op::Consume { on_a, pick: k } => {
                let keys: Vec<CallId> = self.p.end(on_a).calls.keys().copied().collect();
                if let Some(cid) = pick(keys.into_iter(), k) {
                    let before = self.p.outbox(on_a).len();
                    self.p.consume(on_a, cid);
                    let grants: Vec<Msg> = self.p.outbox(on_a).iter().skip(before).cloned().collect();
                    for g in &grants {
                        self.account(on_a, g);
                    }
                }
            }
        }
    }

    /// Lets everything finish: every served call completes, every message
    /// is delivered and every item consumed, until nothing moves.
    fn settle(&mut self) {
        for _ in 0..64 {
            for on_a in [true, false] {
                // Each step completes the first served call still open.
                for _ in 0..self.p.end(on_a).served.len() {
                    self.apply(Op::Serve { on_a, pick: 0, act: 4, len: 1 });
                }
                let keys: Vec<CallId> = self.p.end(on_a).calls.keys().copied().collect();
                for cid in keys {
                    let before = self.p.outbox(on_a).len();
                    self.p.consume(on_a, cid);
                    let grants: Vec<Msg> = self.p.outbox(on_a).iter().skip(before).cloned().collect();
                    for g in &grants {
                        self.account(on_a, g);
                    }
                }
            }
            let quiet = self.p.to_a.is_empty() && self.p.to_b.is_empty();
            while !self.p.to_a.is_empty() || !self.p.to_b.is_empty() {
                self.apply(Op::Deliver { to_a: true, n: 1 });
                self.apply(Op::Deliver { to_a: false, n: 1 });
            }
            if quiet && self.p.a.served.is_empty() && self.p.b.served.is_empty() {
                return;
            }
        }
        panic!("the pair did not settle");
    }

    fn check(&self) {
        assert_eq!(self.p.a.s.open_calls(), 0, "a still has open calls");
        assert_eq!(self.p.b.s.open_calls(), 0, "b still has open calls");
        for on_a in [true, false] {
            let end = if on_a { &self.p.a } else { &self.p.b };
            for (cid, rec) in &end.calls {
                let ended = &rec.log().ended;
                assert_eq!(ended.len(), 1, "call {cid} on {on_a} ended {ended:?}");
                if !end.s.is_ours(*cid) {
                    assert_eq!(ended[0], Ended::Completed);
                    continue;
                }
                let truth = self.truth.get(&(on_a, *cid)).cloned().unwrap_or_default();
                if truth.abandoned {
                    assert_eq!(ended[0], Ended::Abandoned, "call {cid}");
                    continue;
                }
                let expected = truth.completed.clone().expect("every served call completed");
                if expected == Ended::CancelAcked {
                    assert!(truth.cancel_requested, "call {cid}: an ack for a cancel never asked for");
                }
                assert_eq!(ended[0], expected, "call {cid}: no result may be lost");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_interleavings_keep_every_promise(ops in proptest::collection::vec(op(), 1..80)) {
        let window = 1024;
        let limits = Limits { window, min_window: 1024, ..Limits::default() };
        let mut m = Model { p: Pair::with_limits(limits), truth: BTreeMap::new(), in_flight: BTreeMap::new(), window };
        for op in ops {
            m.apply(op);
        }
        m.settle();
        m.check();
    }
}

/// A call opened with a timeout carries it in its `Start`, and the callee's
/// session hands it to the driver with the call; a plain call has none.
#[test]
fn a_call_timeout_travels_with_its_start() {
    let mut a = Session::new(Side::Connector, Uid::new("a"), Limits::default());
    let mut b: Session<Rec> = Session::new(Side::Acceptor, Uid::new("b"), Limits::default());
    let (_, timed) =
        a.open_within("f", CallKind::Single, Bytes::new(), Rec::default(), Some(250)).expect("open");
    let (_, plain) = a.open("f", CallKind::Single, Bytes::new(), Rec::default()).expect("open");
    match b.handle(timed) {
        Ok(Some(Incoming::Call(CallStart { timeout_ms, .. }))) => assert_eq!(timeout_ms, Some(250)),
        other => panic!("expected a call, got {other:?}"),
    }
    match b.handle(plain) {
        Ok(Some(Incoming::Call(CallStart { timeout_ms, .. }))) => assert_eq!(timeout_ms, None),
        other => panic!("expected a call, got {other:?}"),
    }
}

/// A call opened with a trace context hands it to the callee's driver with
/// the call, through the encoded `Start`.
#[test]
fn a_trace_context_travels_with_its_start() {
    let mut a = Session::new(Side::Connector, Uid::new("a"), Limits::default());
    let mut b: Session<Rec> = Session::new(Side::Acceptor, Uid::new("b"), Limits::default());
    let ctx = crate::TraceContext::new_root();
    let options = StartOptions { trace: Some(ctx), ..StartOptions::default() };
    let (_, start) = a.open_with("f", CallKind::Single, Bytes::new(), Rec::default(), options).expect("open");
    let wire = rmp_serde::to_vec(&start).expect("encode");
    let start: Msg = rmp_serde::from_slice(&wire).expect("decode");
    match b.handle(start) {
        Ok(Some(Incoming::Call(CallStart { trace, timeout_ms, key, .. }))) => {
            assert_eq!((trace, timeout_ms, key), (Some(ctx), None, None))
        }
        other => panic!("expected a call, got {other:?}"),
    }
}
