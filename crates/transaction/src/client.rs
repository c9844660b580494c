//! Client transactions (RFC 3261 17.1, RFC 6026 7.2).

use bytes::Bytes;

use crate::timer::{Armed, Timer, Timers};
use crate::{Action, Disposition, Failure, Millis};

/// States of an INVITE client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteState {
    Calling,
    Proceeding,
    /// A 2xx was received (RFC 6026): further 2xx are passed up.
    Accepted,
    /// A non-2xx final was received and ACKed.
    Completed,
    Terminated,
}

/// An INVITE client transaction: one branch of a proxied INVITE.
#[derive(Debug, Clone)]
pub struct ClientInvite {
    state: InviteState,
    request: Bytes,
    ack: Option<Bytes>,
    reliable: bool,
    timers: Timers,
    interval: Millis,
    armed: Armed,
}

impl ClientInvite {
    /// Start the transaction: the request is sent, timers A (unreliable
    /// transports only) and B are armed.
    pub fn start(
        request: Bytes,
        reliable: bool,
        timers: Timers,
        now: Millis,
        out: &mut Vec<Action>,
    ) -> Self {
        let mut t = ClientInvite {
            state: InviteState::Calling,
            request,
            ack: None,
            reliable,
            timers,
            interval: timers.t1,
            armed: Armed::default(),
        };
        out.push(Action::Send(t.request.clone()));
        if !reliable {
            t.arm(Timer::A, now + timers.t1, out);
        }
        t.arm(Timer::B, now + timers.t64(), out);
        t
    }

    /// Rebuild a transaction from stored state (after a restart): nothing
    /// is sent; the given timers are re-armed by the caller's choice.
    pub fn restore(request: Bytes, reliable: bool, timers: Timers, state: InviteState) -> Self {
        ClientInvite {
            state,
            request,
            ack: None,
            reliable,
            timers,
            interval: timers.t1,
            armed: Armed::default(),
        }
    }

    fn arm(&mut self, t: Timer, at: Millis, out: &mut Vec<Action>) {
        self.armed.arm(t, at);
        out.push(Action::Arm(t, at));
    }

    /// Re-arm the timers of a restored transaction: in Calling, timer A
    /// (unreliable transports: the request is sent again at once, as a
    /// retransmission) and timer B at its original deadline.
    pub fn resume(&mut self, now: Millis, timer_b_at: Millis, out: &mut Vec<Action>) {
        if self.state == InviteState::Calling {
            if !self.reliable {
                out.push(Action::Send(self.request.clone()));
                self.arm(Timer::A, now + self.timers.t1, out);
            }
            self.arm(Timer::B, timer_b_at.max(now), out);
        }
    }

    pub fn state(&self) -> InviteState {
        self.state
    }

    /// The request as sent.
    pub fn request(&self) -> &Bytes {
        &self.request
    }

    pub fn is_reliable(&self) -> bool {
        self.reliable
    }

    /// A response arrived. `make_ack` builds the ACK for a non-2xx final
    /// (17.1.1.3); it is called at most once.
    pub fn on_response(
        &mut self,
        code: u16,
        make_ack: impl FnOnce() -> Bytes,
        now: Millis,
        out: &mut Vec<Action>,
    ) -> Disposition {
        use InviteState::*;
        match (self.state, code) {
            (Calling | Proceeding, 100..=199) => {
                self.state = Proceeding;
                self.armed.disarm(Timer::A);
                // Timer B only guards Calling; the proxy's timer C takes over.
                self.armed.disarm(Timer::B);
                Disposition::Pass
            }
            (Calling | Proceeding, 200..=299) => {
                self.state = Accepted;
                self.armed.disarm(Timer::A);
                self.armed.disarm(Timer::B);
                self.arm(Timer::M, now + self.timers.t64(), out);
                Disposition::Pass
            }
            (Calling | Proceeding, _) => {
                self.armed.disarm(Timer::A);
                self.armed.disarm(Timer::B);
                let ack = make_ack();
                out.push(Action::Send(ack.clone()));
                self.ack = Some(ack);
                if self.reliable {
                    self.terminate(out);
                } else {
                    self.state = Completed;
                    self.arm(Timer::D, now + 32_000.max(self.timers.t64()), out);
                }
                Disposition::Pass
            }
            // A 2xx from another fork downstream, after this branch's
            // non-2xx: every 2xx goes up (RFC 3261 16.7 item 4).
            (Accepted | Completed, 200..=299) => Disposition::Pass,
            (Completed, 300..=699) => {
                if let Some(ack) = &self.ack {
                    out.push(Action::Send(ack.clone()));
                }
                Disposition::Absorb
            }
            _ => Disposition::Absorb,
        }
    }

    /// A timer armed by this transaction fired (`deadline` is the one it
    /// was armed with).
    pub fn on_timer(
        &mut self,
        t: Timer,
        deadline: Millis,
        now: Millis,
        out: &mut Vec<Action>,
    ) -> Option<Failure> {
        if !self.armed.fire(t, deadline) {
            return None;
        }
        match (t, self.state) {
            (Timer::A, InviteState::Calling) => {
                out.push(Action::Send(self.request.clone()));
                self.interval *= 2;
                self.arm(Timer::A, now + self.interval, out);
                None
            }
            (Timer::B, InviteState::Calling) => {
                self.terminate(out);
                Some(Failure::Timeout)
            }
            (Timer::D, InviteState::Completed) | (Timer::M, InviteState::Accepted) => {
                self.terminate(out);
                None
            }
            _ => None,
        }
    }

    /// The transport could not send the request.
    pub fn on_transport_error(&mut self, out: &mut Vec<Action>) -> Option<Failure> {
        match self.state {
            InviteState::Calling | InviteState::Proceeding => {
                self.terminate(out);
                Some(Failure::TransportError)
            }
            _ => None,
        }
    }

    /// End the transaction now (the proxy gave up on the branch).
    pub fn terminate(&mut self, out: &mut Vec<Action>) {
        if self.state != InviteState::Terminated {
            self.state = InviteState::Terminated;
            out.push(Action::Terminated);
        }
    }
}

/// States of a non-INVITE client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// A non-INVITE client transaction (a proxied BYE, OPTIONS, a CANCEL).
#[derive(Debug, Clone)]
pub struct ClientNonInvite {
    state: NonInviteState,
    request: Bytes,
    reliable: bool,
    timers: Timers,
    interval: Millis,
    armed: Armed,
}

impl ClientNonInvite {
    /// Start: send, arm E (unreliable only) and F.
    pub fn start(
        request: Bytes,
        reliable: bool,
        timers: Timers,
        now: Millis,
        out: &mut Vec<Action>,
    ) -> Self {
        let mut t = ClientNonInvite {
            state: NonInviteState::Trying,
            request,
            reliable,
            timers,
            interval: timers.t1,
            armed: Armed::default(),
        };
        out.push(Action::Send(t.request.clone()));
        if !reliable {
            t.arm(Timer::E, now + timers.t1, out);
        }
        t.arm(Timer::F, now + timers.t64(), out);
        t
    }

    fn arm(&mut self, t: Timer, at: Millis, out: &mut Vec<Action>) {
        self.armed.arm(t, at);
        out.push(Action::Arm(t, at));
    }

    pub fn state(&self) -> NonInviteState {
        self.state
    }

    pub fn request(&self) -> &Bytes {
        &self.request
    }

    pub fn on_response(&mut self, code: u16, now: Millis, out: &mut Vec<Action>) -> Disposition {
        use NonInviteState::*;
        match (self.state, code) {
            (Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                Disposition::Pass
            }
            (Trying | Proceeding, _) => {
                self.armed.disarm(Timer::E);
                self.armed.disarm(Timer::F);
                if self.reliable {
                    self.terminate(out);
                } else {
                    self.state = Completed;
                    self.arm(Timer::K, now + self.timers.t4, out);
                }
                Disposition::Pass
            }
            _ => Disposition::Absorb,
        }
    }

    pub fn on_timer(
        &mut self,
        t: Timer,
        deadline: Millis,
        now: Millis,
        out: &mut Vec<Action>,
    ) -> Option<Failure> {
        if !self.armed.fire(t, deadline) {
            return None;
        }
        match (t, self.state) {
            (Timer::E, NonInviteState::Trying) => {
                out.push(Action::Send(self.request.clone()));
                self.interval = (self.interval * 2).min(self.timers.t2);
                self.arm(Timer::E, now + self.interval, out);
                None
            }
            (Timer::E, NonInviteState::Proceeding) => {
                out.push(Action::Send(self.request.clone()));
                self.arm(Timer::E, now + self.timers.t2, out);
                None
            }
            (Timer::F, NonInviteState::Trying | NonInviteState::Proceeding) => {
                self.terminate(out);
                Some(Failure::Timeout)
            }
            (Timer::K, NonInviteState::Completed) => {
                self.terminate(out);
                None
            }
            _ => None,
        }
    }

    pub fn on_transport_error(&mut self, out: &mut Vec<Action>) -> Option<Failure> {
        match self.state {
            NonInviteState::Trying | NonInviteState::Proceeding => {
                self.terminate(out);
                Some(Failure::TransportError)
            }
            _ => None,
        }
    }

    pub fn terminate(&mut self, out: &mut Vec<Action>) {
        if self.state != NonInviteState::Terminated {
            self.state = NonInviteState::Terminated;
            out.push(Action::Terminated);
        }
    }
}
