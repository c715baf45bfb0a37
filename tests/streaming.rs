//! Streams and contexts on real process trees built by the
//! `streaming_scenarios` fixture (tests/fixtures/streaming.rs).

mod common;

use std::time::Duration;

use common::Tree;

fn scenario(name: &str) -> String {
    let out = Tree::start("streaming_scenarios", &[name], &[]).finish(Duration::from_secs(60));
    assert!(out.status.success(), "{name}: {out:?}");
    out.stdout
}

/// The numbers on the first line starting with `prefix`.
fn numbers<const N: usize>(out: &str, prefix: &str) -> [u64; N] {
    let line =
        out.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} line: {out}"));
    let v: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    v.try_into().unwrap_or_else(|v| panic!("expected {N} numbers in {line:?}, got {v:?}"))
}

#[test]
fn ten_thousand_items_arrive_complete_and_in_order() {
    assert!(scenario("ten_thousand").contains("COMPLETE 10000 in_order=true"));
}

#[test]
fn dropping_a_stream_stops_the_producer_and_the_actor_keeps_serving() {
    let out = scenario("drop_after_10");
    assert!(out.contains("PRODUCER STOPPED true"), "{out}");
    assert!(out.contains("NEXT CALL [0, 1, 2]"), "{out}");
}

#[test]
fn items_sent_before_a_producer_waits_arrive_while_it_waits() {
    let out = scenario("send_then_wait");
    assert!(out.contains("WHILE WAITING [0, 1, 2]"), "{out}");
    assert!(out.contains("PRODUCER STOPPED true"), "{out}");
}

#[test]
fn a_producer_error_arrives_after_the_items_sent_before_it() {
    let out = scenario("error_after_5");
    assert!(out.contains("ITEMS [0, 1, 2, 3, 4]"), "{out}");
    assert!(out.contains("ERROR Application producer gave up after 5 items"), "{out}");
}

#[test]
fn cancelling_a_context_from_the_caller_is_not_an_error() {
    let out = scenario("context_cancel");
    assert!(out.contains("STARTED running"), "{out}");
    assert!(out.contains("CANCELLED OK; callee stopped true"), "{out}");
    assert!(out.contains("CANCELLER IS ME true"), "{out}");
}

#[test]
fn a_callee_error_tears_down_both_halves_of_a_bidirectional_stream() {
    let out = scenario("bidi_error");
    assert!(out.contains("SEND ERROR remote error: actor `producer#"), "{out}");
    assert!(out.contains("RECV error remote error"), "{out}");
    assert!(out.contains("RESULT error callee failed on the third item"), "{out}");
}

#[test]
fn a_fast_producer_stops_one_window_ahead_of_a_slow_consumer() {
    stops_one_window_ahead("bounded");
}

/// Items of 1 KiB and more are written from their own buffers, not packed:
/// the same credit holds them back.
#[test]
fn a_fast_producer_of_large_items_stops_one_window_ahead_of_a_slow_consumer() {
    stops_one_window_ahead("bounded_large");
}

#[test]
fn byte_items_of_every_size_arrive_whole_and_in_order() {
    let out = scenario("mixed");
    assert!(out.contains("MIXED 1600 of 1600"), "{out}");
}

#[test]
fn a_byte_item_past_the_frame_limit_is_refused_and_the_stream_goes_on() {
    let out = scenario("oversized");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!((lines[0], lines[2], lines[3]), ("ITEM true", "ITEM true", "END"), "{out}");
    assert!(lines[1].contains("does not fit in a frame of 16777216 bytes"), "{out}");
}

fn stops_one_window_ahead(name: &str) {
    let out = scenario(name);
    // Nothing read: exactly one window of items sent, and no more later.
    let [filled, later, window] = numbers(&out, "FILLED");
    assert_eq!((filled, later), (window, window), "{out}");
    let [ahead, window] = numbers(&out, "MAX AHEAD");
    assert!(ahead <= window, "the producer ran {ahead} items ahead of a {window}-item window: {out}");
}

#[test]
fn a_stalled_stream_does_not_stall_another_on_the_same_portal() {
    let out = scenario("stalled_and_flowing");
    let [flowed, stalled, window] = numbers(&out, "FLOWED");
    assert_eq!(flowed, 10_000, "{out}");
    assert_eq!(stalled, window, "the stalled producer holds exactly one window: {out}");
}

#[test]
fn a_broadcast_stream_reaches_every_local_subscriber() {
    let out = scenario("broadcast");
    let sum: u64 = (0..2_000).sum();
    assert!(out.contains(&format!("BROADCAST [(2000, {sum}), (2000, {sum}), (2000, {sum})]")), "{out}");
}

/// A large `Bytes` send cancelled after paying for its item gives the credit
/// back to a clone of its sender that waits for credit meanwhile.
#[test]
fn a_cancelled_large_send_does_not_stall_a_clone_of_its_sender() {
    let out = scenario("refund_stall");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["ITEM 300000", "ITEM 500", "ITEM 3", "END"], "{out}");
}

/// Items each under the window, the second over what is left of it once
/// the first (under half a window, so earning no grant of its own) is read.
#[test]
fn an_item_over_half_a_window_after_a_smaller_one_arrives() {
    let out = scenario("over_half");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["ITEM 500000", "ITEM 600000", "ITEM 3", "END"], "{out}");
}

/// An item larger than the whole window passes, alone.
#[test]
fn an_item_over_the_window_after_a_small_one_arrives() {
    let out = scenario("over_window");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["ITEM 100", "ITEM 2097152", "ITEM 3", "END"], "{out}");
}

/// Every third send under a 1 ms timeout: what was sent arrives once and in
/// order, and no large item whose send was cancelled arrives at all.
#[test]
fn cancelled_sends_lose_reorder_or_duplicate_nothing() {
    let out = scenario("cancelling");
    assert!(out.contains("in_order=true missing=[] extra_large=[]"), "{out}");
}
