//! Timer values (RFC 3261 table 4) and the queue that holds every armed
//! timer of a proxy.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::Millis;

/// The transaction timers of RFC 3261 17 and RFC 6026.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// INVITE client: request retransmission.
    A,
    /// INVITE client: transaction timeout.
    B,
    /// INVITE client: wait for final response retransmissions.
    D,
    /// non-INVITE client: request retransmission.
    E,
    /// non-INVITE client: transaction timeout.
    F,
    /// non-INVITE client: wait for response retransmissions.
    K,
    /// INVITE server: final response retransmission.
    G,
    /// INVITE server: wait for ACK.
    H,
    /// INVITE server: wait for ACK retransmissions.
    I,
    /// non-INVITE server: wait for request retransmissions.
    J,
    /// INVITE server, Accepted: wait for 2xx retransmissions (RFC 6026).
    L,
    /// INVITE client, Accepted: wait for 2xx retransmissions (RFC 6026).
    M,
}

impl Timer {
    pub(crate) fn slot(self) -> usize {
        match self {
            Timer::A | Timer::E | Timer::G => 0,
            Timer::B | Timer::F | Timer::H => 1,
            Timer::D | Timer::K | Timer::I | Timer::J | Timer::L | Timer::M => 2,
        }
    }
}

/// T1, T2 and T4 (RFC 3261 17.1.1.1, table 4), in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate, 500 ms by default.
    pub t1: Millis,
    /// Maximum retransmission interval for non-INVITE requests and INVITE
    /// responses, 4 s by default.
    pub t2: Millis,
    /// Maximum time a message stays in the network, 5 s by default.
    pub t4: Millis,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: 500,
            t2: 4000,
            t4: 5000,
        }
    }
}

impl Timers {
    /// 64*T1: timers B, F, H, J, L and M.
    pub fn t64(&self) -> Millis {
        64 * self.t1
    }
}

/// The deadlines a transaction has armed, one per slot, so that a timer
/// that fires after being superseded is recognised as stale.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Armed([Option<Millis>; 3]);

impl Armed {
    pub(crate) fn arm(&mut self, t: Timer, at: Millis) {
        self.0[t.slot()] = Some(at);
    }
    /// Whether the entry of `t` with this deadline is the one armed last;
    /// disarms it.
    pub(crate) fn fire(&mut self, t: Timer, deadline: Millis) -> bool {
        if self.0[t.slot()] == Some(deadline) {
            self.0[t.slot()] = None;
            true
        } else {
            false
        }
    }
    pub(crate) fn disarm(&mut self, t: Timer) {
        self.0[t.slot()] = None;
    }
}

/// Every armed timer of the proxy in one heap, keyed by an owner id and a
/// timer kind. Cancelling is lazy: a fired entry whose owner is gone, or
/// whose deadline was replaced, is ignored by the owner. An entry costs
/// 24 bytes and O(log n) to insert.
#[derive(Debug, Default)]
pub struct TimerQueue<K: Ord + Copy> {
    heap: BinaryHeap<Reverse<(Millis, K)>>,
}

impl<K: Ord + Copy> TimerQueue<K> {
    pub fn new() -> Self {
        TimerQueue {
            heap: BinaryHeap::new(),
        }
    }

    pub fn push(&mut self, at: Millis, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The next entry due at `now`, removed from the queue.
    pub fn pop_due(&mut self, now: Millis) -> Option<(Millis, K)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_orders_by_deadline() {
        let mut q = TimerQueue::new();
        q.push(30, (1u64, 0u8));
        q.push(10, (2, 0));
        q.push(20, (3, 0));
        assert_eq!(q.next_deadline(), Some(10));
        assert_eq!(q.pop_due(5), None);
        assert_eq!(q.pop_due(25), Some((10, (2, 0))));
        assert_eq!(q.pop_due(25), Some((20, (3, 0))));
        assert_eq!(q.pop_due(25), None);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn armed_recognises_stale_timers() {
        let mut a = Armed::default();
        a.arm(Timer::A, 100);
        a.arm(Timer::A, 200);
        assert!(!a.fire(Timer::A, 100), "superseded deadline is stale");
        assert!(a.fire(Timer::A, 200));
        assert!(!a.fire(Timer::A, 200), "fires once");
        a.arm(Timer::B, 300);
        a.disarm(Timer::B);
        assert!(!a.fire(Timer::B, 300));
    }
}
