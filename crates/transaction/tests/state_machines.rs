//! Every transaction state machine driven on a virtual clock: the
//! retransmission schedules, each timeout, late and duplicate messages.

use bytes::Bytes;
use cairn_transaction::client::{InviteState as CI, NonInviteState as CN};
use cairn_transaction::server::{InviteState as SI, NonInviteState as SN};
use cairn_transaction::{
    Action, ClientInvite, ClientNonInvite, Disposition, Failure, Millis, ServerInvite,
    ServerNonInvite, Timer, TimerQueue, Timers,
};

const T: Timers = Timers {
    t1: 500,
    t2: 4000,
    t4: 5000,
};

/// A tiny harness: a virtual clock and a timer queue that replays armed
/// timers into a transaction, recording what it sends and when.
struct Clock {
    now: Millis,
    queue: TimerQueue<Timer>,
    sent: Vec<(Millis, Bytes)>,
    terminated: Option<Millis>,
    failures: Vec<(Millis, Failure)>,
}

impl Clock {
    fn new() -> Self {
        Clock {
            now: 0,
            queue: TimerQueue::new(),
            sent: vec![],
            terminated: None,
            failures: vec![],
        }
    }

    fn apply(&mut self, out: &mut Vec<Action>) {
        for a in out.drain(..) {
            match a {
                Action::Send(b) => self.sent.push((self.now, b)),
                Action::Arm(t, at) => {
                    assert!(at >= self.now, "timer armed in the past");
                    self.queue.push(at, t)
                }
                Action::Terminated => {
                    assert!(self.terminated.is_none(), "terminated twice");
                    self.terminated = Some(self.now)
                }
            }
        }
    }

    /// Run timers up to `until`, feeding them to `f`.
    fn run(
        &mut self,
        until: Millis,
        mut f: impl FnMut(Timer, Millis, Millis, &mut Vec<Action>) -> Option<Failure>,
    ) {
        let mut out = Vec::new();
        while let Some((at, t)) = self.queue.pop_due(until) {
            self.now = at;
            if let Some(fail) = f(t, at, at, &mut out) {
                self.failures.push((at, fail));
            }
            self.apply(&mut out);
        }
        self.now = until;
    }

    fn send_times(&self) -> Vec<Millis> {
        self.sent.iter().map(|(t, _)| *t).collect()
    }
}

fn bytes(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

#[test]
fn invite_client_retransmits_with_timer_a_then_times_out_with_b() {
    let mut c = Clock::new();
    let mut out = vec![];
    let mut tx = ClientInvite::start(bytes("INVITE"), false, T, 0, &mut out);
    c.apply(&mut out);
    c.run(40_000, |t, d, n, o| tx.on_timer(t, d, n, o));
    // A doubles without a cap: 0, 500, 1500, 3500, 7500, 15500, 31500; B at 32 s.
    assert_eq!(c.send_times(), vec![0, 500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(c.failures, vec![(32_000, Failure::Timeout)]);
    assert_eq!(c.terminated, Some(32_000));
    assert_eq!(tx.state(), CI::Terminated);
}

#[test]
fn invite_client_provisional_stops_retransmissions_and_timer_b() {
    let mut c = Clock::new();
    let mut out = vec![];
    let mut tx = ClientInvite::start(bytes("INVITE"), false, T, 0, &mut out);
    c.apply(&mut out);
    c.run(600, |t, d, n, o| tx.on_timer(t, d, n, o));
    assert_eq!(
        tx.on_response(180, || unreachable!(), 600, &mut out),
        Disposition::Pass
    );
    c.apply(&mut out);
    c.run(100_000, |t, d, n, o| tx.on_timer(t, d, n, o));
    assert_eq!(c.send_times(), vec![0, 500]);
    assert!(c.failures.is_empty(), "no timer B once proceeding");
    assert_eq!(tx.state(), CI::Proceeding);
}

#[test]
fn invite_client_non2xx_is_acked_once_and_retransmissions_reacked() {
    let mut c = Clock::new();
    let mut out = vec![];
    let mut tx = ClientInvite::start(bytes("INVITE"), false, T, 0, &mut out);
    c.apply(&mut out);
    assert_eq!(
        tx.on_response(486, || bytes("ACK"), 100, &mut out),
        Disposition::Pass
    );
    c.now = 100;
    c.apply(&mut out);
    assert_eq!(tx.state(), CI::Completed);
    assert_eq!(
        tx.on_response(486, || panic!("ACK built once"), 200, &mut out),
        Disposition::Absorb
    );
    c.now = 200;
    c.apply(&mut out);
    assert_eq!(c.sent.iter().filter(|(_, b)| &b[..] == b"ACK").count(), 2);
    // A late 2xx after a non-2xx final (another fork downstream) is passed up.
    assert_eq!(
        tx.on_response(200, || unreachable!(), 300, &mut out),
        Disposition::Pass
    );
    c.run(100_000, |t, d, n, o| tx.on_timer(t, d, n, o));
    assert_eq!(c.terminated, Some(32_100), "timer D is 32 s on UDP");
    assert_eq!(
        c.send_times(),
        vec![0, 100, 200],
        "no INVITE retransmission after the final"
    );
}

#[test]
fn invite_client_2xx_accepted_passes_retransmissions_then_timer_m() {
    let mut c = Clock::new();
    let mut out = vec![];
    let mut tx = ClientInvite::start(bytes("INVITE"), true, T, 0, &mut out);
    c.apply(&mut out);
    assert_eq!(
        tx.on_response(200, || unreachable!(), 10, &mut out),
        Disposition::Pass
    );
    c.now = 10;
    c.apply(&mut out);
    assert_eq!(
        tx.on_response(200, || unreachable!(), 20, &mut out),
        Disposition::Pass,
        "2xx retransmissions go up"
    );
    assert_eq!(
        tx.on_response(180, || unreachable!(), 30, &mut out),
        Disposition::Absorb
    );
    c.run(100_000, |t, d, n, o| tx.on_timer(t, d, n, o));
    assert_eq!(c.terminated, Some(10 + 32_000));
    assert_eq!(
        c.send_times(),
        vec![0],
        "no timer A on a reliable transport"
    );
}

#[test]
fn invite_client_reliable_non2xx_terminates_at_once_and_transport_error_fails() {
    let mut out = vec![];
    let mut tx = ClientInvite::start(bytes("INVITE"), true, T, 0, &mut out);
    out.clear();
    tx.on_response(503, || bytes("ACK"), 5, &mut out);
    assert_eq!(out, vec![Action::Send(bytes("ACK")), Action::Terminated]);
    let mut tx = ClientInvite::start(bytes("INVITE"), false, T, 0, &mut out);
    out.clear();
    assert_eq!(
        tx.on_transport_error(&mut out),
        Some(Failure::TransportError)
    );
    assert_eq!(out, vec![Action::Terminated]);
    assert_eq!(Failure::TransportError.status(), 503);
    assert_eq!(Failure::Timeout.status(), 408);
}

#[test]
fn non_invite_client_caps_at_t2_and_times_out_with_f() {
    let mut c = Clock::new();
    let mut out = vec![];
    let mut tx = ClientNonInvite::start(bytes("BYE"), false, T, 0, &mut out);
    c.apply(&mut out);
    c.run(40_000, |t, d, n, o| tx.on_timer(t, d, n, o));
    // E: 500, 1000, 2000, 4000, 4000, ...; F at 32 s.
    assert_eq!(
        c.send_times(),
        vec![0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert_eq!(c.failures, vec![(32_000, Failure::Timeout)]);
}

#[test]
fn non_invite_client_proceeding_retransmits_every_t2_then_k() {
    let mut c = Clock::new();
    let mut out = vec![];
    let mut tx = ClientNonInvite::start(bytes("BYE"), false, T, 0, &mut out);
    c.apply(&mut out);
    c.run(600, |t, d, n, o| tx.on_timer(t, d, n, o));
    assert_eq!(tx.on_response(100, 600, &mut out), Disposition::Pass);
    c.run(10_000, |t, d, n, o| tx.on_timer(t, d, n, o));
    assert_eq!(tx.state(), CN::Proceeding);
    assert_eq!(c.send_times(), vec![0, 500, 1500, 5500, 9500]);
    assert_eq!(tx.on_response(200, 10_000, &mut out), Disposition::Pass);
    c.apply(&mut out);
    assert_eq!(
        tx.on_response(200, 10_001, &mut out),
        Disposition::Absorb,
        "duplicate final absorbed"
    );
    c.run(100_000, |t, d, n, o| tx.on_timer(t, d, n, o));
    assert_eq!(c.terminated, Some(15_000), "timer K = T4 on UDP");
    assert!(c.failures.is_empty());
}

#[test]
fn invite_server_retransmits_final_with_g_until_ack() {
    let mut c = Clock::new();
    let mut out = vec![];
    let mut tx = ServerInvite::new(false, T);
    assert!(tx.send_response(100, bytes("100"), 0, &mut out));
    c.apply(&mut out);
    tx.on_retransmission(&mut out);
    c.apply(&mut out);
    assert!(tx.send_response(486, bytes("486"), 1000, &mut out));
    c.now = 1000;
    c.apply(&mut out);
    assert!(
        !tx.send_response(500, bytes("500"), 1000, &mut out),
        "one final only"
    );
    c.run(5000, |t, d, n, o| tx.on_timer(t, d, n, o));
    // 486 at 1000, G: 1500, 2500, 4500.
    assert_eq!(c.send_times(), vec![0, 0, 1000, 1500, 2500, 4500]);
    tx.on_retransmission(&mut out);
    c.apply(&mut out);
    assert_eq!(
        c.sent.last().unwrap().1,
        bytes("486"),
        "INVITE retransmission gets the final again"
    );
    assert_eq!(tx.on_ack(5000, &mut out), Disposition::Pass);
    c.apply(&mut out);
    assert_eq!(tx.on_ack(5001, &mut out), Disposition::Absorb);
    assert_eq!(tx.state(), SI::Confirmed);
    let before = c.sent.len();
    c.run(100_000, |t, d, n, o| tx.on_timer(t, d, n, o));
    assert_eq!(c.sent.len(), before, "no retransmission after the ACK");
    assert_eq!(c.terminated, Some(10_000), "timer I = T4");
}

#[test]
fn invite_server_g_caps_at_t2_and_h_times_out() {
    let mut c = Clock::new();
    let mut out = vec![];
    let mut tx = ServerInvite::new(false, T);
    tx.send_response(404, bytes("404"), 0, &mut out);
    c.apply(&mut out);
    c.run(40_000, |t, d, n, o| tx.on_timer(t, d, n, o));
    assert_eq!(
        c.send_times(),
        vec![0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert_eq!(c.failures, vec![(32_000, Failure::Timeout)]);
    assert_eq!(tx.state(), SI::Terminated);
}

#[test]
fn invite_server_accepted_absorbs_invite_and_sends_2xx_retransmissions() {
    let mut c = Clock::new();
    let mut out = vec![];
    let mut tx = ServerInvite::new(true, T);
    tx.send_response(180, bytes("180"), 0, &mut out);
    tx.send_response(200, bytes("200"), 10, &mut out);
    c.apply(&mut out);
    assert_eq!(tx.state(), SI::Accepted);
    tx.on_retransmission(&mut out);
    assert!(out.is_empty(), "INVITE retransmission absorbed after 2xx");
    assert!(
        tx.send_response(200, bytes("200b"), 20, &mut out),
        "2xx from another branch goes out"
    );
    assert_eq!(out, vec![Action::Send(bytes("200b"))]);
    out.clear();
    assert!(!tx.send_response(487, bytes("487"), 30, &mut out));
    c.run(100_000, |t, d, n, o| tx.on_timer(t, d, n, o));
    assert_eq!(c.terminated, Some(10 + 32_000), "timer L = 64*T1");
}

#[test]
fn non_invite_server_absorbs_then_resends_final_until_j() {
    let mut c = Clock::new();
    let mut out = vec![];
    let mut tx = ServerNonInvite::new(false, T);
    tx.on_retransmission(&mut out);
    assert!(out.is_empty(), "nothing to resend in Trying");
    tx.send_response(200, bytes("200"), 100, &mut out);
    c.now = 100;
    c.apply(&mut out);
    tx.on_retransmission(&mut out);
    c.apply(&mut out);
    assert_eq!(c.sent.len(), 2);
    assert!(!tx.send_response(500, bytes("500"), 200, &mut out));
    assert_eq!(tx.state(), SN::Completed);
    c.run(100_000, |t, d, n, o| tx.on_timer(t, d, n, o));
    assert_eq!(c.terminated, Some(100 + 32_000));
    let mut tx = ServerNonInvite::new(true, T);
    tx.send_response(200, bytes("200"), 0, &mut out);
    assert_eq!(
        out,
        vec![Action::Send(bytes("200")), Action::Terminated],
        "timer J = 0 on TCP"
    );
}

#[test]
fn stale_timers_are_ignored() {
    let mut out = vec![];
    let mut tx = ClientInvite::start(bytes("INVITE"), false, T, 0, &mut out);
    out.clear();
    tx.on_response(180, || unreachable!(), 100, &mut out);
    // Timer A and B entries still in an owner's queue fire later: ignored.
    assert_eq!(tx.on_timer(Timer::A, 500, 500, &mut out), None);
    assert_eq!(tx.on_timer(Timer::B, 32_000, 32_000, &mut out), None);
    assert!(out.is_empty());
}
