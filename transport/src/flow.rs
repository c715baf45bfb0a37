//! Flow control for one call: the window both ends agreed on, what we may
//! still send, what the peer may still send us, and when to grant it more.
//!
//! Counted in bytes of item payload. An item costs its encoded length, at
//! least [`MIN_ITEM_COST`] and at most the whole window, so an item larger
//! than the window still passes, alone. The receiver grants credit as its application
//! *consumes* items, not as they arrive, and only once at least half a window
//! is unclaimed (h2's and quinn's rule), or when its application has read
//! everything and waits ([`Unclaimed::drained`]; otherwise a sender with an
//! item over half a window could wait for good): few `Credit` messages, and
//! a stream nobody reads holds at most one window of memory.

use thiserror::Error;

/// What the smallest item costs. A receiver keeps each unread item in a
/// queue entry of its own (about 73 bytes beside the item here), so items
/// of a byte or two, charged their length, would let a window of credit
/// hold some 70 times its size in the receiver's memory.
pub const MIN_ITEM_COST: u32 = 64;

/// What one item of `len` encoded bytes costs in a call with `window`: its
/// length, at least [`MIN_ITEM_COST`], at most the window.
pub fn item_cost(len: usize, window: u32) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX).max(MIN_ITEM_COST).min(window.max(1))
}

/// A peer broke the flow-control rules of a call.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum FlowError {
    /// The peer sent an item costing more than the credit it had.
    #[error("the peer sent an item costing {cost} with only {allowance} of credit")]
    BeyondCredit {
        /// The item's cost.
        cost: u32,
        /// What the peer was allowed.
        allowance: u64,
    },
    /// The peer granted credit that would let us exceed the window.
    #[error(
        "the peer granted {granted} of credit with {available} already available in a window of {window}"
    )]
    CreditOverflow {
        /// The grant.
        granted: u32,
        /// Our credit before it.
        available: u64,
        /// The call's window.
        window: u32,
    },
}

/// Both directions of one call's flow control.
#[derive(Clone, Debug)]
pub struct FlowControl {
    window: u32,
    /// Cost we may still send before the peer grants more.
    send: u64,
    /// Cost the peer may still send us before we grant more.
    recv: u64,
}

impl FlowControl {
    /// A call with `window` bytes each way, all of it available.
    pub fn new(window: u32) -> Self {
        let window = window.max(1);
        FlowControl { window, send: u64::from(window), recv: u64::from(window) }
    }

    /// The call's window.
    pub fn window(&self) -> u32 {
        self.window
    }

    /// The cost of an item of `len` bytes in this call.
    pub fn cost(&self, len: usize) -> u32 {
        item_cost(len, self.window)
    }

    /// What we may still send.
    pub fn send_credit(&self) -> u64 {
        self.send
    }

    /// Spends the credit for an item of `len` bytes; `false` (nothing spent)
    /// when there is not enough: wait for the peer's next grant.
    pub fn try_send(&mut self, len: usize) -> bool {
        let cost = u64::from(self.cost(len));
        if self.send < cost {
            return false;
        }
        self.send -= cost;
        true
    }

    /// The peer granted `credit` more.
    ///
    /// # Errors
    ///
    /// [`FlowError::CreditOverflow`] if that would let us have more than a
    /// window in flight: the peer granted what it never received.
    pub fn granted(&mut self, credit: u32) -> Result<(), FlowError> {
        let after = self.send + u64::from(credit);
        if after > u64::from(self.window) {
            return Err(FlowError::CreditOverflow {
                granted: credit,
                available: self.send,
                window: self.window,
            });
        }
        self.send = after;
        Ok(())
    }

    /// Takes all the credit we may still send, for a sender that spends it
    /// item by item itself (a batch being packed): returns it.
    pub fn withdraw(&mut self) -> u64 {
        std::mem::take(&mut self.send)
    }

    /// The peer sent an item of `len` bytes.
    ///
    /// # Errors
    ///
    /// [`FlowError::BeyondCredit`] if it had not enough credit for it.
    pub fn received(&mut self, len: usize) -> Result<(), FlowError> {
        self.received_cost(u64::from(self.cost(len)))
    }

    /// The peer sent items costing `cost` in all (a batch).
    ///
    /// # Errors
    ///
    /// [`FlowError::BeyondCredit`] if it had not enough credit for them.
    pub fn received_cost(&mut self, cost: u64) -> Result<(), FlowError> {
        if self.recv < cost {
            let cost = u32::try_from(cost).unwrap_or(u32::MAX);
            return Err(FlowError::BeyondCredit { cost, allowance: self.recv });
        }
        self.recv -= cost;
        Ok(())
    }

    /// We grant the peer `credit` more (what our application consumed),
    /// never beyond the window. Returns what was actually granted.
    pub fn grant(&mut self, credit: u32) -> u32 {
        let room = u64::from(self.window) - self.recv;
        let credit = u64::from(credit).min(room);
        self.recv += credit;
        // `credit <= room <= window`, which is a u32.
        u32::try_from(credit).unwrap_or(self.window)
    }
}

/// The receiving application's tally of consumed items, kept beside the
/// consumer so reading an item takes no lock: it says when a grant is due.
#[derive(Clone, Debug)]
pub struct Unclaimed {
    window: u32,
    consumed: u32,
}

impl Unclaimed {
    /// A tally for a call with `window`.
    pub fn new(window: u32) -> Self {
        Unclaimed { window: window.max(1), consumed: 0 }
    }

    /// The application consumed an item of `len` bytes. Returns the credit to
    /// grant once at least half a window is unclaimed.
    pub fn consumed(&mut self, len: usize) -> Option<u32> {
        self.consumed = self.consumed.saturating_add(item_cost(len, self.window));
        if self.consumed >= self.window / 2 { Some(std::mem::take(&mut self.consumed)) } else { None }
    }

    /// The application has consumed every item received and waits for more:
    /// returns the credit still unclaimed, if any. Without it a sender whose
    /// next item costs more than it has left (an item over half a window)
    /// would wait for a grant that never comes.
    pub fn drained(&mut self) -> Option<u32> {
        (self.consumed > 0).then(|| std::mem::take(&mut self.consumed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_clamped_to_the_minimum_and_the_window() {
        assert_eq!(item_cost(0, 100), MIN_ITEM_COST);
        assert_eq!(item_cost(50, 100), MIN_ITEM_COST);
        assert_eq!(item_cost(80, 100), 80);
        assert_eq!(item_cost(5000, 100), 100);
        assert_eq!(item_cost(usize::MAX, 100), 100);
        // A window below the minimum: every item takes all of it.
        assert_eq!(item_cost(1, 10), 10);
    }

    #[test]
    fn sending_stops_at_the_window_and_resumes_on_grants() {
        let mut f = FlowControl::new(1000);
        assert!(f.try_send(600));
        assert!(!f.try_send(600), "only 400 left");
        assert_eq!(f.send_credit(), 400);
        f.granted(600).expect("back to a full window");
        assert!(f.try_send(10_000), "an item larger than the window passes alone");
        assert_eq!(f.send_credit(), 0);
    }

    #[test]
    fn a_grant_beyond_the_window_is_an_error() {
        let mut f = FlowControl::new(1000);
        assert!(f.try_send(100));
        assert!(f.granted(101).is_err());
        f.granted(100).expect("exactly the window");
        assert!(f.granted(1).is_err());
    }

    #[test]
    fn receiving_beyond_the_allowance_is_an_error() {
        let mut f = FlowControl::new(1000);
        f.received(1000).expect("a full window");
        assert_eq!(f.received(0), Err(FlowError::BeyondCredit { cost: MIN_ITEM_COST, allowance: 0 }));
        assert_eq!(f.grant(5000), 1000, "never more than the window");
        f.received(300).expect("granted");
    }

    #[test]
    fn tiny_items_cost_the_minimum() {
        let mut f = FlowControl::new(1000);
        for _ in 0..1000 / MIN_ITEM_COST {
            f.received(1).expect("within the window");
        }
        assert!(f.received(1).is_err(), "a window of one-byte items holds window / 64 of them");
    }

    #[test]
    fn a_batch_is_charged_its_total_and_withdrawn_credit_is_gone() {
        let mut f = FlowControl::new(100);
        f.received_cost(70).expect("within the window");
        assert_eq!(f.received_cost(31), Err(FlowError::BeyondCredit { cost: 31, allowance: 30 }));
        assert_eq!(f.withdraw(), 100);
        assert_eq!(f.withdraw(), 0);
        assert!(!f.try_send(1));
        f.granted(100).expect("a window, all of it withdrawn");
    }

    #[test]
    fn grants_come_in_half_windows() {
        let mut u = Unclaimed::new(1000);
        assert_eq!(u.consumed(300), None);
        assert_eq!(u.consumed(300), Some(600));
        assert_eq!(u.consumed(436), None);
        assert_eq!(u.consumed(1), Some(500), "a one-byte item counts the minimum");
    }

    #[test]
    fn a_drained_receiver_grants_what_is_unclaimed_once() {
        let mut u = Unclaimed::new(1000);
        assert_eq!(u.drained(), None, "nothing consumed");
        assert_eq!(u.consumed(300), None);
        assert_eq!(u.drained(), Some(300));
        assert_eq!(u.drained(), None, "granted already");
        assert_eq!(u.consumed(300), None, "counting starts again");
        assert_eq!(u.consumed(200), Some(500));
    }
}
