//! Server transactions (RFC 3261 17.2, RFC 6026 7.1).

use bytes::Bytes;

use crate::timer::{Armed, Timer, Timers};
use crate::{Action, Disposition, Failure, Millis};

/// States of an INVITE server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteState {
    Proceeding,
    /// A 2xx was sent (RFC 6026): INVITE retransmissions are absorbed,
    /// further 2xx from the TU are sent.
    Accepted,
    /// A non-2xx final was sent; waiting for the ACK.
    Completed,
    /// The ACK arrived; absorbing its retransmissions.
    Confirmed,
    Terminated,
}

/// An INVITE server transaction: the caller's side of a proxied INVITE.
#[derive(Debug, Clone)]
pub struct ServerInvite {
    state: InviteState,
    last_response: Option<Bytes>,
    last_status: u16,
    reliable: bool,
    timers: Timers,
    interval: Millis,
    armed: Armed,
}

impl ServerInvite {
    /// A new INVITE arrived. The proxy sends its 100 Trying through
    /// [`ServerInvite::send_response`].
    pub fn new(reliable: bool, timers: Timers) -> Self {
        ServerInvite {
            state: InviteState::Proceeding,
            last_response: None,
            last_status: 0,
            reliable,
            timers,
            interval: timers.t1,
            armed: Armed::default(),
        }
    }

    /// Rebuild from stored state (after a restart).
    pub fn restore(
        reliable: bool,
        timers: Timers,
        state: InviteState,
        last_response: Option<Bytes>,
        last_status: u16,
    ) -> Self {
        ServerInvite {
            state,
            last_response,
            last_status,
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

    /// Re-arm the timers of a restored transaction (their original
    /// deadlines are not kept: each starts again from `now`).
    pub fn resume(&mut self, now: Millis, out: &mut Vec<Action>) {
        let t = self.timers;
        match self.state {
            InviteState::Completed => {
                if !self.reliable {
                    self.arm(Timer::G, now + self.interval, out);
                }
                self.arm(Timer::H, now + t.t64(), out);
            }
            InviteState::Accepted => self.arm(Timer::L, now + t.t64(), out),
            InviteState::Confirmed => {
                self.arm(Timer::I, now + if self.reliable { 0 } else { t.t4 }, out)
            }
            _ => {}
        }
    }

    pub fn state(&self) -> InviteState {
        self.state
    }

    /// The status of the last response sent (0 when none).
    pub fn last_status(&self) -> u16 {
        self.last_status
    }

    pub fn last_response(&self) -> Option<&Bytes> {
        self.last_response.as_ref()
    }

    pub fn is_reliable(&self) -> bool {
        self.reliable
    }

    /// The INVITE was received again.
    pub fn on_retransmission(&mut self, out: &mut Vec<Action>) {
        match self.state {
            InviteState::Proceeding | InviteState::Completed => {
                if let Some(r) = &self.last_response {
                    out.push(Action::Send(r.clone()));
                }
            }
            _ => {}
        }
    }

    /// The TU sends a response. Returns false when the state does not
    /// allow it (a final after a non-2xx final, anything after the end).
    pub fn send_response(
        &mut self,
        status: u16,
        bytes: Bytes,
        now: Millis,
        out: &mut Vec<Action>,
    ) -> bool {
        match (self.state, status) {
            (InviteState::Proceeding, 100..=199) => {
                out.push(Action::Send(bytes.clone()));
                self.last_response = Some(bytes);
                self.last_status = status;
                true
            }
            (InviteState::Proceeding, 200..=299) => {
                out.push(Action::Send(bytes.clone()));
                self.last_response = Some(bytes);
                self.last_status = status;
                self.state = InviteState::Accepted;
                self.arm(Timer::L, now + self.timers.t64(), out);
                true
            }
            (InviteState::Accepted, 200..=299) => {
                out.push(Action::Send(bytes));
                true
            }
            (InviteState::Proceeding, 300..=699) => {
                out.push(Action::Send(bytes.clone()));
                self.last_response = Some(bytes);
                self.last_status = status;
                self.state = InviteState::Completed;
                if !self.reliable {
                    self.arm(Timer::G, now + self.interval, out);
                }
                self.arm(Timer::H, now + self.timers.t64(), out);
                true
            }
            _ => false,
        }
    }

    /// An ACK matched this transaction (a non-2xx ACK). Returns whether
    /// it was the first (retransmissions are absorbed either way).
    pub fn on_ack(&mut self, now: Millis, out: &mut Vec<Action>) -> Disposition {
        if self.state != InviteState::Completed {
            return Disposition::Absorb;
        }
        self.armed.disarm(Timer::G);
        self.armed.disarm(Timer::H);
        if self.reliable {
            self.terminate(out);
        } else {
            self.state = InviteState::Confirmed;
            self.arm(Timer::I, now + self.timers.t4, out);
        }
        Disposition::Pass
    }

    /// A timer fired. Timer H reports a timeout: no ACK came.
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
            (Timer::G, InviteState::Completed) => {
                if let Some(r) = &self.last_response {
                    out.push(Action::Send(r.clone()));
                }
                self.interval = (self.interval * 2).min(self.timers.t2);
                self.arm(Timer::G, now + self.interval, out);
                None
            }
            (Timer::H, InviteState::Completed) => {
                self.terminate(out);
                Some(Failure::Timeout)
            }
            (Timer::I, InviteState::Confirmed) | (Timer::L, InviteState::Accepted) => {
                self.terminate(out);
                None
            }
            _ => None,
        }
    }

    /// The transport could not deliver a response.
    pub fn on_transport_error(&mut self, out: &mut Vec<Action>) -> Option<Failure> {
        if self.state == InviteState::Terminated {
            return None;
        }
        self.terminate(out);
        Some(Failure::TransportError)
    }

    pub fn terminate(&mut self, out: &mut Vec<Action>) {
        if self.state != InviteState::Terminated {
            self.state = InviteState::Terminated;
            out.push(Action::Terminated);
        }
    }
}

/// States of a non-INVITE server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// A non-INVITE server transaction.
#[derive(Debug, Clone)]
pub struct ServerNonInvite {
    state: NonInviteState,
    last_response: Option<Bytes>,
    last_status: u16,
    reliable: bool,
    timers: Timers,
    armed: Armed,
}

impl ServerNonInvite {
    pub fn new(reliable: bool, timers: Timers) -> Self {
        ServerNonInvite {
            state: NonInviteState::Trying,
            last_response: None,
            last_status: 0,
            reliable,
            timers,
            armed: Armed::default(),
        }
    }

    pub fn state(&self) -> NonInviteState {
        self.state
    }

    pub fn last_status(&self) -> u16 {
        self.last_status
    }

    /// The request was received again: resend the last response, if any.
    pub fn on_retransmission(&mut self, out: &mut Vec<Action>) {
        if matches!(
            self.state,
            NonInviteState::Proceeding | NonInviteState::Completed
        ) {
            if let Some(r) = &self.last_response {
                out.push(Action::Send(r.clone()));
            }
        }
    }

    pub fn send_response(
        &mut self,
        status: u16,
        bytes: Bytes,
        now: Millis,
        out: &mut Vec<Action>,
    ) -> bool {
        match (self.state, status) {
            (NonInviteState::Trying | NonInviteState::Proceeding, 100..=199) => {
                out.push(Action::Send(bytes.clone()));
                self.last_response = Some(bytes);
                self.last_status = status;
                self.state = NonInviteState::Proceeding;
                true
            }
            (NonInviteState::Trying | NonInviteState::Proceeding, _) => {
                out.push(Action::Send(bytes.clone()));
                self.last_response = Some(bytes);
                self.last_status = status;
                if self.reliable {
                    self.terminate(out);
                } else {
                    self.state = NonInviteState::Completed;
                    self.armed.arm(Timer::J, now + self.timers.t64());
                    out.push(Action::Arm(Timer::J, now + self.timers.t64()));
                }
                true
            }
            _ => false,
        }
    }

    pub fn on_timer(
        &mut self,
        t: Timer,
        deadline: Millis,
        _now: Millis,
        out: &mut Vec<Action>,
    ) -> Option<Failure> {
        if self.armed.fire(t, deadline) && t == Timer::J && self.state == NonInviteState::Completed
        {
            self.terminate(out);
        }
        None
    }

    pub fn on_transport_error(&mut self, out: &mut Vec<Action>) -> Option<Failure> {
        if self.state == NonInviteState::Terminated {
            return None;
        }
        self.terminate(out);
        Some(Failure::TransportError)
    }

    pub fn terminate(&mut self, out: &mut Vec<Action>) {
        if self.state != NonInviteState::Terminated {
            self.state = NonInviteState::Terminated;
            out.push(Action::Terminated);
        }
    }
}
