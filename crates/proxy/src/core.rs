//! The proxy core (RFC 3261 section 16) as a sans-I/O state machine.
//!
//! The driver feeds it events — a message received, timers due, a send
//! that failed — each with the current time, and drains [`Output`]s:
//! datagrams and stream messages to transmit. The core owns the
//! transaction tables and one timer queue for every timer of every
//! transaction.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ahash::AHashMap;
use bytes::Bytes;
use smallvec::SmallVec;
use tracing::{debug, info, warn};

use cairn_routing::{
    Decision, Failover, ForkMode, Lookup, Manipulation, Plan, Policy, RouteInput, Target,
};
use cairn_sip::{build, Editor, HeaderName, Limits, Message, Method, Scheme, Transport, Uri};
use cairn_transaction::{
    Action, ClientInvite, ClientKey, ClientNonInvite, Disposition, Failure, Millis, ServerInvite,
    ServerKey, ServerNonInvite, Timer, TimerQueue,
};

use crate::branch;
use crate::config::{CoreConfig, LocalAddr, UnmatchedCancel};
use crate::dialog::{self, Dialog, DialogState, DialogTable};
use crate::persist;
use crate::probe;
use crate::reason::CancelReason;
use crate::stats::Stats;
use cairn_transaction::client::InviteState as ClientInviteState;
use cairn_transaction::server::InviteState;

/// A transaction in flight, for the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TxnInfo {
    pub call_id: String,
    pub method: String,
    pub request_uri: String,
    pub source: String,
    pub transport: &'static str,
    pub state: String,
    pub last_status: u16,
    /// A routing lookup is running.
    pub routing: bool,
    pub cancelled: bool,
    /// A record of it is in the store.
    pub persisted: bool,
    pub branches: Vec<BranchInfo>,
}

/// One branch of a transaction in flight.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BranchInfo {
    pub destination: String,
    pub address: String,
    pub transport: &'static str,
    /// calling, ringing or done.
    pub state: &'static str,
    /// none, pending (waits for a 1xx) or sent.
    pub cancel: &'static str,
    pub age_ms: u64,
}

/// What [`Proxy::restore`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreReport {
    pub restored: usize,
    /// Past their deadline: of no use any more.
    pub expired: usize,
    /// Damaged, of another format, or duplicate.
    pub skipped: usize,
}

fn reason_record(r: &CancelReason) -> persist::ReasonRecord {
    match r {
        CancelReason::Caller(v) => {
            persist::ReasonRecord::Caller(v.iter().map(|b| b.to_vec()).collect())
        }
        CancelReason::CompletedElsewhere => persist::ReasonRecord::CompletedElsewhere,
        CancelReason::NoAnswer => persist::ReasonRecord::NoAnswer,
        CancelReason::Final(c) => persist::ReasonRecord::Final(*c),
    }
}

fn reason_of(r: persist::ReasonRecord) -> CancelReason {
    match r {
        persist::ReasonRecord::Caller(v) => {
            CancelReason::Caller(v.into_iter().map(Bytes::from).collect())
        }
        persist::ReasonRecord::CompletedElsewhere => CancelReason::CompletedElsewhere,
        persist::ReasonRecord::NoAnswer => CancelReason::NoAnswer,
        persist::ReasonRecord::Final(c) => CancelReason::Final(c),
    }
}

/// Transaction ids: one counter for server and client transactions.
pub type TxnId = u64;

/// The far end of a message: where it came from or where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub addr: SocketAddr,
    pub transport: Transport,
    /// The stream connection, for TCP (the transport's connection id).
    pub conn: Option<u64>,
}

impl Peer {
    pub fn new(addr: SocketAddr, transport: Transport) -> Peer {
        Peer {
            addr,
            transport,
            conn: None,
        }
    }
}

/// Bytes to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dest: SocketAddr,
    pub transport: Transport,
    /// Prefer this connection (responses go back on the request's, 18.2.2).
    pub conn: Option<u64>,
    pub data: Bytes,
    /// Given back by [`Proxy::handle_send_failed`] when sending fails.
    pub token: u64,
}

/// What the core asks its driver to do.
#[derive(Debug, Clone)]
pub enum Output {
    Transmit(Transmit),
    /// Run this routing lookup for the request of server transaction
    /// `txn`, then call [`Proxy::lookup_done`] with the decision. The
    /// transaction exists already: a CANCEL that arrives meanwhile is
    /// answered, and the INVITE is then never forwarded.
    Lookup {
        txn: TxnId,
        lookup: Lookup,
        request: Message,
        /// Where the request came from.
        peer: Peer,
    },
    /// Write (or replace) this record. When one `Persist` drained in a
    /// poll cycle is `urgent`, every `Persist` and `Forget` staged so far
    /// must be committed to the store before any `Transmit` drained in the
    /// same cycle goes out: that is how no INVITE (and no CANCEL) leaves
    /// before its branch is on record.
    Persist {
        space: Space,
        key: [u8; 8],
        value: Vec<u8>,
        expires_at: Millis,
        /// The `Transmit`s of this poll cycle wait for this record (a
        /// branch or a CANCEL is about to go out). A record that is not
        /// urgent may be committed later, grouped with others, in the
        /// order the core gave them; what a restart makes of a lost one
        /// is in docs/durability.md.
        urgent: bool,
        /// No earlier value of this key was ever handed out: when a
        /// `Forget` of the key comes before the record was committed,
        /// neither needs to reach the store.
        fresh: bool,
    },
    /// The record is of no use any more.
    Forget {
        space: Space,
        key: [u8; 8],
    },
    /// A response to one of cairn's own OPTIONS probes (its only Via has a
    /// [`probe`](crate::probe) branch): for the health tracker, never
    /// forwarded.
    ProbeResponse {
        /// The run and the token of the probe, from its branch.
        run: u32,
        token: u64,
        code: u16,
    },
    /// Cluster mode: no transaction here has the INVITE of this CANCEL or
    /// ACK. Find which other node holds the INVITE's record `key` (a
    /// transaction record), then call [`Proxy::owner_found`] with the
    /// request, without blocking the event loop.
    FindOwner {
        key: [u8; 8],
        request: Message,
        peer: Peer,
        local: Option<LocalAddr>,
    },
}

/// Which kind of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    Transactions,
    Dialogs,
}

/// What routing decided for a new request.
enum Outcome {
    Respond(u16, String, Option<(&'static str, Bytes)>),
    Forward(Box<Context>),
    Lookup(Lookup),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tag {
    Txn(Timer),
    /// Timer C of an INVITE branch.
    C,
    /// The rule's ring timeout of an INVITE branch.
    Ring,
    /// The timeout of a dialog (the id is its key).
    Dialog,
    /// 64*T1 after a CANCEL went to an INVITE branch: if no final came,
    /// the branch is over (RFC 3261 9.1).
    CancelWait,
}

enum ServerMachine {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

struct ServerTxn {
    key: ServerKey,
    machine: ServerMachine,
    request: Message,
    peer: Peer,
    /// The listener the request arrived on.
    local: Option<LocalAddr>,
    key_hash: u64,
    loop_hash: u32,
    ctx: Option<Box<Context>>,
    /// A routing lookup is running.
    routing: bool,
    /// Its record must be written (again).
    dirty: bool,
    /// ... before the messages of this poll cycle go out (a branch is sent,
    /// a CANCEL is sent or decided).
    urgent: bool,
    /// A record of it is in the store.
    persisted: bool,
    /// Branches in the stored base record (0: none stored).
    base_branches: usize,
    /// The stored base record's expiry.
    base_expires: Millis,
    /// A state record of its own was written (until then the state rides
    /// in the base).
    state_written: bool,
}

/// How a request is rewritten on every branch, from route processing.
#[derive(Debug, Default, Clone)]
struct RouteEdits {
    /// The first Route value named this proxy: remove it.
    pop_route: bool,
    /// The previous hop was a strict router (16.4): the Request-URI
    /// becomes the last Route value, which is removed.
    strict_ruri: Option<Bytes>,
    record_route: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum CancelState {
    None,
    /// To be sent when the branch answers 1xx (RFC 3261 9.1).
    Pending(CancelReason),
    Sent,
}

struct Branch {
    client: TxnId,
    target: Target,
    provisional: bool,
    done: bool,
    cancel: CancelState,
    /// Timer C fired: the branch's final counts as a timeout.
    timed_out: bool,
    timer_c: Millis,
    ring_deadline: Option<Millis>,
    /// When the request went out on this branch.
    sent_at: Millis,
    /// When the first CANCEL went out on this branch (64*T1 later the
    /// branch is over, also across restarts).
    cancel_sent_at: Option<Millis>,
    /// Restored without a recorded 1xx: one may have come all the same.
    unsure: bool,
}

/// The response context of a proxied request (16.7).
struct Context {
    mode: ForkMode,
    failover: Failover,
    targets: Vec<Target>,
    next_target: usize,
    branches: SmallVec<[Branch; 2]>,
    edits: RouteEdits,
    /// The best non-2xx final so far, and every 401/407 for aggregation.
    best: Option<Message>,
    challenges: SmallVec<[Message; 1]>,
    /// A final that no response stands for (408 from a timeout, 503 from
    /// a transport error).
    synthetic: Option<u16>,
    cancelled: Option<CancelReason>,
    final_sent: bool,
    got_2xx: bool,
    /// The rule's Reason for this call's CANCELs.
    cancel_reason: Option<Arc<str>>,
    ring_timeout: Option<Millis>,
    /// The rule and destination set that routed the request.
    rule: Option<Arc<str>>,
    set: Option<Arc<str>>,
    /// The rule's changes to the request, on every branch.
    manipulation: Option<Arc<Manipulation>>,
}

enum ClientMachine {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

struct ClientTxn {
    key: ClientKey,
    machine: ClientMachine,
    server: TxnId,
    /// Index into the server's branches; `None` for a CANCEL.
    branch: Option<usize>,
    dest: Peer,
}

/// The proxy core.
pub struct Proxy {
    cfg: CoreConfig,
    policy: Arc<Policy>,
    limits: Limits,
    next_id: TxnId,
    servers: AHashMap<TxnId, ServerTxn>,
    server_keys: AHashMap<ServerKey, TxnId>,
    clients: AHashMap<TxnId, ClientTxn>,
    client_keys: AHashMap<ClientKey, TxnId>,
    timers: TimerQueue<(TxnId, Tag)>,
    out: VecDeque<Output>,
    actions: Vec<Action>,
    stats: Stats,
    draining: bool,
    /// Unmatched CANCELs remembered (the INVITE key they name), bounded.
    recent_cancels: AHashMap<ServerKey, Millis>,
    recent_order: VecDeque<(Millis, ServerKey)>,
    /// Server transactions whose record is to be written.
    dirty: Vec<TxnId>,
    dialogs: DialogTable,
}

impl Proxy {
    pub fn new(cfg: CoreConfig, policy: Arc<Policy>) -> Proxy {
        let limits = Limits {
            max_size: cfg.max_message_size,
            ..Limits::default()
        };
        Proxy {
            cfg,
            policy,
            limits,
            next_id: 1,
            servers: AHashMap::new(),
            server_keys: AHashMap::new(),
            clients: AHashMap::new(),
            client_keys: AHashMap::new(),
            timers: TimerQueue::new(),
            out: VecDeque::new(),
            actions: Vec::new(),
            stats: Stats::default(),
            draining: false,
            recent_cancels: AHashMap::new(),
            recent_order: VecDeque::new(),
            dirty: Vec::new(),
            dialogs: DialogTable::default(),
        }
    }

    /// Stop taking new calls (a graceful shutdown): new out-of-dialog
    /// requests get 503, everything in flight goes on.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    /// Whether any proxied request still waits for its final response.
    pub fn has_pending_requests(&self) -> bool {
        self.servers
            .values()
            .any(|s| s.ctx.as_ref().is_some_and(|c| !c.final_sent))
    }

    /// Replace the routing policy (a reload). Calls in flight keep their
    /// routes: every branch's target, and with it where its CANCEL goes, is
    /// a copy in the transaction. The dialogs being tracked are counted
    /// again in the new policy's destinations (those it still has, found
    /// by set name, address and URI), for the per-destination limit.
    pub fn set_policy(&mut self, policy: Arc<Policy>) {
        self.policy = policy;
        for d in self.dialogs.iter() {
            if let Some(dest) = dialog_destination(&self.policy, d) {
                dest.state().dialog_changed(true);
            }
        }
    }

    /// Replace the CANCEL settings (a reload): they apply to the CANCELs
    /// sent and the unmatched CANCELs remembered from now on.
    pub fn set_cancel_config(&mut self, cancel: crate::config::CancelConfig) {
        self.cfg.cancel = cancel;
    }

    /// The routing policy in force.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Live server and client transactions.
    pub fn transaction_counts(&self) -> (usize, usize) {
        (self.servers.len(), self.clients.len())
    }

    /// The next output to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Proxy::handle_timeout`] must be called next.
    pub fn next_timeout(&self) -> Option<Millis> {
        self.timers.next_deadline()
    }

    // ------------------------------------------------------------------
    // Events
    // ------------------------------------------------------------------

    /// A message arrived from `peer` on the listener `local`.
    pub fn handle_message(
        &mut self,
        now: Millis,
        data: Bytes,
        peer: Peer,
        local: Option<SocketAddr>,
    ) {
        self.on_message(now, data, peer, local);
        self.flush_records(now);
    }

    fn on_message(&mut self, now: Millis, data: Bytes, peer: Peer, local: Option<SocketAddr>) {
        let msg = match Message::parse_with(data.clone(), &self.limits) {
            Ok(m) => m,
            Err(e) => {
                self.stats.parse_errors += 1;
                let tag = branch::local_tag(branch::key_hash(&data[..data.len().min(256)]));
                match build::error_response(&data, &e, tag.as_bytes()) {
                    Some(resp) => {
                        info!(source = %peer.addr, error = %e, "malformed request answered");
                        self.transmit(peer, resp, 0);
                    }
                    None => debug!(source = %peer.addr, error = %e, "malformed message dropped"),
                }
                return;
            }
        };
        let local = local
            .and_then(|a| {
                self.cfg
                    .listeners
                    .iter()
                    .find(|l| l.transport == peer.transport && l.addr == a)
                    .copied()
            })
            .or_else(|| self.cfg.local_for(peer.transport, peer.addr));
        if msg.is_request() {
            self.stats.requests_in += 1;
            self.on_request(now, msg, peer, local);
        } else {
            self.stats.responses_in += 1;
            self.on_response(now, msg, peer);
        }
    }

    /// Fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.on_timeout(now);
        self.flush_records(now);
    }

    fn on_timeout(&mut self, now: Millis) {
        while let Some((deadline, (id, tag))) = self.timers.pop_due(now) {
            match tag {
                Tag::C => self.on_timer_c(now, id, deadline, false),
                Tag::Ring => self.on_timer_c(now, id, deadline, true),
                Tag::CancelWait => self.on_cancel_wait(now, id),
                Tag::Dialog => self.on_dialog_timeout(now, id.to_be_bytes(), deadline),
                Tag::Txn(t) => {
                    if self.servers.contains_key(&id) {
                        self.server_timer(now, id, t, deadline);
                    } else if self.clients.contains_key(&id) {
                        self.client_timer(now, id, t, deadline);
                    }
                }
            }
        }
    }

    /// A transmit with this token could not be delivered.
    pub fn handle_send_failed(&mut self, now: Millis, token: u64) {
        self.on_send_failed(now, token);
        self.flush_records(now);
    }

    fn on_send_failed(&mut self, now: Millis, token: u64) {
        let id = token;
        if let Some(c) = self.clients.get_mut(&id) {
            let mut out = std::mem::take(&mut self.actions);
            let failure = match &mut c.machine {
                ClientMachine::Invite(m) => m.on_transport_error(&mut out),
                ClientMachine::NonInvite(m) => m.on_transport_error(&mut out),
            };
            let owner = (c.server, c.branch);
            self.actions = out;
            self.apply_client_actions(now, id);
            if let (Some(f), (server, Some(bi))) = (failure, owner) {
                self.branch_failed(now, server, bi, f);
            }
        }
    }

    // ------------------------------------------------------------------
    // Requests
    // ------------------------------------------------------------------

    fn on_request(&mut self, now: Millis, msg: Message, peer: Peer, local: Option<LocalAddr>) {
        match msg.method() {
            Method::Ack => return self.on_ack(now, msg, peer, local),
            Method::Cancel => return self.on_cancel(now, msg, peer, local),
            _ => {}
        }
        let key = ServerKey::of(&msg);
        if let Some(&id) = self.server_keys.get(&key) {
            self.stats.retransmissions_in += 1;
            self.server_retransmission(now, id);
            return;
        }
        if self.cfg.dialogs && msg.method() == Method::Bye {
            if let (Some(ft), Some(tt)) = (msg.from_tag(), msg.to_tag()) {
                let k = dialog::key(msg.call_id(), ft, tt);
                self.end_dialog(k, "BYE");
            }
        }
        let id = self.new_server(now, key, msg, peer, local);
        self.route_new_request(now, id);
    }

    fn new_server(
        &mut self,
        now: Millis,
        key: ServerKey,
        msg: Message,
        peer: Peer,
        local: Option<LocalAddr>,
    ) -> TxnId {
        let id = self.next_id;
        self.next_id += 1;
        let reliable = peer.transport.is_reliable();
        let invite = msg.method() == Method::Invite;
        let machine = if invite {
            ServerMachine::Invite(ServerInvite::new(reliable, self.cfg.timers))
        } else {
            ServerMachine::NonInvite(ServerNonInvite::new(reliable, self.cfg.timers))
        };
        let key_hash = branch::key_hash(key.as_bytes());
        let loop_hash = branch::loop_hash(&msg);
        self.server_keys.insert(key.clone(), id);
        self.servers.insert(
            id,
            ServerTxn {
                key,
                machine,
                request: msg,
                peer,
                local,
                key_hash,
                loop_hash,
                ctx: None,
                routing: false,
                dirty: false,
                urgent: false,
                persisted: false,
                base_branches: 0,
                base_expires: 0,
                state_written: false,
            },
        );
        if invite {
            // A proxy answers 100 at once (16.2 note, 17.2.1).
            self.respond(now, id, 100, "Trying", &[]);
        }
        id
    }

    /// Validation (16.3), route processing (16.4) and target selection.
    fn route_new_request(&mut self, now: Millis, id: TxnId) {
        if self.was_cancelled_before(now, id) {
            self.stats.cancelled_before_invite += 1;
            return self.respond(now, id, 487, "Request Terminated", &[]);
        }
        match self.decide(now, id) {
            Some(Outcome::Respond(code, reason, extra)) => match extra {
                Some((name, value)) => self.respond(now, id, code, &reason, &[(name, &value)]),
                None => self.respond(now, id, code, &reason, &[]),
            },
            Some(Outcome::Forward(ctx)) => self.start_forwarding(now, id, *ctx),
            Some(Outcome::Lookup(lookup)) => {
                let Some(s) = self.servers.get_mut(&id) else {
                    return;
                };
                s.routing = true;
                let request = s.request.clone();
                let peer = s.peer;
                self.stats.lookups += 1;
                self.out.push_back(Output::Lookup {
                    txn: id,
                    lookup,
                    request,
                    peer,
                });
            }
            None => {}
        }
    }

    /// The routing lookup of server transaction `txn` finished. If the
    /// caller cancelled meanwhile (or the transaction is gone), nothing is
    /// forwarded.
    pub fn lookup_done(&mut self, now: Millis, txn: TxnId, decision: Decision) {
        self.on_lookup_done(now, txn, decision);
        self.flush_records(now);
    }

    fn on_lookup_done(&mut self, now: Millis, txn: TxnId, decision: Decision) {
        let Some(s) = self.servers.get_mut(&txn) else {
            return;
        };
        if !s.routing {
            return;
        }
        s.routing = false;
        let proceeding = match &s.machine {
            ServerMachine::Invite(m) => {
                m.state() == cairn_transaction::server::InviteState::Proceeding
            }
            ServerMachine::NonInvite(m) => matches!(
                m.state(),
                cairn_transaction::server::NonInviteState::Trying
                    | cairn_transaction::server::NonInviteState::Proceeding
            ),
        };
        if !proceeding {
            debug!(
                txn,
                "lookup finished after the request was answered: not forwarded"
            );
            return;
        }
        match decision {
            Decision::Respond { code, reason } => self.respond(now, txn, code, &reason, &[]),
            Decision::Forward(plan) => {
                let ctx = self.context_for(txn, plan);
                self.start_forwarding(now, txn, ctx)
            }
            Decision::Lookup(_) => self.respond(now, txn, 500, "Server Internal Error", &[]),
        }
    }

    /// A response context for a routing plan.
    fn context_for(&self, id: TxnId, plan: Plan) -> Context {
        let req = self.servers.get(&id).map(|s| &s.request);
        let record_route = self.cfg.record_route
            && req.is_some_and(|r| {
                matches!(
                    r.method(),
                    Method::Invite | Method::Subscribe | Method::Refer
                )
            });
        debug!(rule = %plan.rule, set = %plan.set, targets = plan.targets.len(), "routed");
        let edits = RouteEdits {
            pop_route: req.is_some_and(|r| self.first_route_is_local(r)),
            strict_ruri: None,
            record_route,
        };
        let mut ctx = Context::new(plan.mode, plan.failover, plan.targets, edits);
        ctx.cancel_reason = plan.cancel_reason;
        ctx.ring_timeout = plan.ring_timeout_ms;
        ctx.rule = Some(plan.rule);
        ctx.set = Some(plan.set);
        ctx.manipulation = plan.manipulation;
        ctx
    }

    fn first_route_is_local(&self, req: &Message) -> bool {
        req.routes()
            .next()
            .and_then(|r| Uri::parse(r.uri).ok())
            .is_some_and(|u| self.cfg.is_local(u.host, u.port))
    }

    /// Whether an unmatched CANCEL for this INVITE arrived just before it.
    fn was_cancelled_before(&mut self, now: Millis, id: TxnId) -> bool {
        if self.recent_cancels.is_empty() {
            return false;
        }
        let Some(s) = self.servers.get(&id) else {
            return false;
        };
        if !matches!(s.machine, ServerMachine::Invite(_)) {
            return false;
        }
        self.recent_cancels
            .remove(&s.key)
            .is_some_and(|expiry| expiry > now)
    }

    /// Remember an unmatched CANCEL for a short, bounded time: the oldest
    /// is forgotten first when the memory is full.
    fn remember_cancel(&mut self, now: Millis, invite_key: ServerKey) {
        let cap = self.cfg.cancel.unmatched_memory;
        if cap == 0 {
            return;
        }
        while let Some((expiry, _)) = self.recent_order.front() {
            if *expiry > now && self.recent_order.len() < cap {
                break;
            }
            if let Some((expiry, k)) = self.recent_order.pop_front() {
                if self.recent_cancels.get(&k) == Some(&expiry) {
                    self.recent_cancels.remove(&k);
                }
            }
        }
        let expiry = now + self.cfg.cancel.unmatched_window;
        self.recent_cancels.insert(invite_key.clone(), expiry);
        self.recent_order.push_back((expiry, invite_key));
    }

    /// How many unmatched CANCELs are remembered now.
    pub fn remembered_cancels(&self) -> usize {
        self.recent_cancels.len()
    }

    fn decide(&self, now: Millis, id: TxnId) -> Option<Outcome> {
        let respond = |code: u16, reason: &str| Some(Outcome::Respond(code, reason.into(), None));
        let s = self.servers.get(&id)?;
        let req = &s.request;
        // 16.3 item 2: URI scheme.
        let ruri = match req.request_uri() {
            Some(u) if matches!(u.scheme, Scheme::Sip | Scheme::Sips | Scheme::Tel) => u,
            _ => return respond(416, "Unsupported URI Scheme"),
        };
        // 16.3 item 3: Max-Forwards.
        if req.max_forwards() == Some(0) {
            return respond(483, "Too Many Hops");
        }
        // 16.3 item 4: loop detection.
        if self.is_loop(req, s.loop_hash) {
            return respond(482, "Loop Detected");
        }
        // 16.3 item 5: cairn supports no extension that a proxy must.
        if let Some(h) = req.headers_named(HeaderName::ProxyRequire).next() {
            let v = Bytes::copy_from_slice(req.slice(h.value));
            return Some(Outcome::Respond(
                420,
                "Bad Extension".into(),
                Some(("Unsupported", v)),
            ));
        }

        // 16.4: route information preprocessing.
        let mut edits = RouteEdits::default();
        let ruri_is_us = matches!(ruri.scheme, Scheme::Sip | Scheme::Sips)
            && self.cfg.is_local(ruri.host, ruri.port);
        let routes: SmallVec<[(Bytes, bool); 4]> = req
            .routes()
            .map(|r| {
                let local = Uri::parse(r.uri)
                    .map(|u| self.cfg.is_local(u.host, u.port))
                    .unwrap_or(false);
                (Bytes::copy_from_slice(r.uri), local)
            })
            .collect();
        let mut remaining: &[(Bytes, bool)] = &routes;
        if ruri_is_us {
            if let Some((last, rest)) = remaining.split_last() {
                // The previous hop was a strict router.
                edits.strict_ruri = Some(last.0.clone());
                remaining = rest;
            }
        }
        if let Some(((_, true), rest)) = remaining.split_first() {
            edits.pop_route = true;
            remaining = rest;
        }

        if req.to_tag().is_some() {
            // In a dialog: follow the route set, or the Request-URI.
            if !edits.pop_route && edits.strict_ruri.is_none() {
                return respond(404, "Not Found");
            }
            let next = match remaining.first() {
                Some((uri, _)) => uri.clone(),
                None => edits
                    .strict_ruri
                    .clone()
                    .unwrap_or_else(|| Bytes::copy_from_slice(req.request_uri_bytes())),
            };
            let Some(target) = target_from_uri(&next) else {
                return respond(503, "Service Unavailable");
            };
            let ctx = Context::new(ForkMode::Serial, Failover::default(), vec![target], edits);
            return Some(Outcome::Forward(Box::new(ctx)));
        }

        if self.draining {
            return Some(Outcome::Respond(
                503,
                "Service Unavailable".into(),
                Some(("Retry-After", Bytes::from_static(b"5"))),
            ));
        }
        if !remaining.is_empty() {
            // A preloaded route beyond this proxy: cairn is not an open relay.
            return respond(403, "Preloaded Route Denied");
        }
        let method = std::str::from_utf8(req.method_bytes()).unwrap_or("");
        let user = ruri.user.and_then(|u| std::str::from_utf8(u).ok());
        let host = std::str::from_utf8(ruri.host_unbracketed()).unwrap_or("");
        let decision = self.policy.route(&RouteInput {
            method,
            ruri_user: user,
            ruri_host: host,
            ruri_port: ruri.port,
            source: s.peer.addr,
            call_id: req.call_id(),
            now_unix_ms: now,
            transport: s.peer.transport,
            request: Some(req),
        });
        match decision {
            Decision::Respond { code, reason } => respond(code, &reason),
            Decision::Forward(plan) => Some(Outcome::Forward(Box::new(self.context_for(id, plan)))),
            Decision::Lookup(l) => Some(Outcome::Lookup(l)),
        }
    }

    fn is_loop(&self, req: &Message, loop_hash: u32) -> bool {
        req.vias().any(|v| {
            v.branch()
                .and_then(branch::parse)
                .is_some_and(|(l, _, _)| l == loop_hash && self.cfg.is_local(v.host, v.port))
        })
    }

    fn start_forwarding(&mut self, now: Millis, id: TxnId, ctx: Context) {
        let parallel = ctx.mode == ForkMode::Parallel;
        let n = ctx.targets.len();
        if let Some(s) = self.servers.get_mut(&id) {
            s.ctx = Some(Box::new(ctx));
        }
        if parallel {
            for i in 0..n {
                self.forward_to(now, id, i);
            }
        } else {
            self.try_next_target(now, id);
        }
        self.check_completion(now, id);
    }

    /// Serial forking: start the next target, if any is left.
    fn try_next_target(&mut self, now: Millis, id: TxnId) -> bool {
        let Some(i) = self
            .servers
            .get_mut(&id)
            .and_then(|s| s.ctx.as_mut())
            .and_then(|c| {
                if c.next_target < c.targets.len() && c.cancelled.is_none() && !c.got_2xx {
                    c.next_target += 1;
                    Some(c.next_target - 1)
                } else {
                    None
                }
            })
        else {
            return false;
        };
        self.forward_to(now, id, i);
        true
    }

    /// Forward the request of server transaction `id` to its `i`th target
    /// (16.6).
    fn forward_to(&mut self, now: Millis, id: TxnId, i: usize) {
        let Some(s) = self.servers.get_mut(&id) else {
            return;
        };
        let Some(ctx) = s.ctx.as_mut() else { return };
        if i >= ctx.targets.len() {
            return;
        }
        ctx.next_target = ctx.next_target.max(i + 1);
        let target = ctx.targets[i].clone();
        let branch_index = ctx.branches.len();
        let Some(out_local) = self.cfg.local_for(target.transport, target.addr) else {
            warn!(target = %target.name, "no listener for the target's transport");
            let client = 0;
            ctx.branches.push(Branch::new(client, target, now));
            ctx.branches[branch_index].done = true;
            ctx.synthetic.get_or_insert(503);
            return;
        };
        let req = &s.request;
        let branch_id = branch::make(self.cfg.node, s.loop_hash, s.key_hash, branch_index as u32);
        let via = format!(
            "SIP/2.0/{} {};branch={}",
            target.transport.via_token(),
            self.cfg.hostport(&out_local),
            branch_id
        );
        let mut e = Editor::new(req);
        let manipulation = ctx.manipulation.as_deref();
        if let Some(r) = branch_ruri(req, ctx.edits.strict_ruri.as_ref(), manipulation, &target) {
            e.set_request_uri(&r);
        }
        if let Some(m) = manipulation {
            m.edit_headers(&mut e);
        }
        if ctx.edits.strict_ruri.is_some() {
            e.remove_last_route();
        }
        if ctx.edits.pop_route {
            e.pop_route();
        }
        e.decrement_max_forwards();
        // 18.2.1 and RFC 3581: where the request really came from.
        let top = req.top_via();
        let src_ip = s.peer.addr.ip().to_string();
        let received = (ip_text(top.host) != src_ip.as_str()).then_some(src_ip.as_bytes());
        let rport = top.rport().and(Some(s.peer.addr.port()));
        e.set_via_received(received, rport);
        let rr_out;
        let rr_in;
        if ctx.edits.record_route {
            // The top value faces the callee; with a change of transport or
            // interface a second one faces the caller (RFC 5658).
            rr_out = record_route_value(&self.cfg, &out_local);
            e.push_record_route(rr_out.as_bytes());
            let in_local = s.local.unwrap_or(out_local);
            if in_local != out_local {
                rr_in = record_route_value(&self.cfg, &in_local);
                e.push_record_route(rr_in.as_bytes());
            }
        }
        e.push_via(via.as_bytes());
        if target.transport.is_reliable() {
            e.ensure_content_length();
        }
        let bytes = e.finish();
        let is_invite = req.method() == Method::Invite;
        let method = Bytes::copy_from_slice(req.method_bytes());

        let client = self.next_id;
        self.next_id += 1;
        let reliable = target.transport.is_reliable();
        let dest = Peer::new(target.addr, target.transport);
        let timer_c = now + self.cfg.timer_c;
        let ring = ctx.ring_timeout.map(|r| now + r);
        let mut b = Branch::new(client, target, timer_c);
        b.ring_deadline = ring;
        b.sent_at = now;
        ctx.branches.push(b);
        let mut out = std::mem::take(&mut self.actions);
        let machine = if is_invite {
            ClientMachine::Invite(ClientInvite::start(
                bytes,
                reliable,
                self.cfg.timers,
                now,
                &mut out,
            ))
        } else {
            ClientMachine::NonInvite(ClientNonInvite::start(
                bytes,
                reliable,
                self.cfg.timers,
                now,
                &mut out,
            ))
        };
        self.actions = out;
        let key = ClientKey::new(branch_id.as_bytes(), &method);
        self.client_keys.insert(key.clone(), client);
        self.clients.insert(
            client,
            ClientTxn {
                key,
                machine,
                server: id,
                branch: Some(branch_index),
                dest,
            },
        );
        if is_invite {
            self.timers.push(timer_c, (client, Tag::C));
            if let Some(r) = ring {
                self.timers.push(r, (client, Tag::Ring));
            }
        }
        self.stats.requests_forwarded += 1;
        if is_invite {
            self.touch_urgent(id);
        }
        self.apply_client_actions(now, client);
    }

    fn on_ack(&mut self, now: Millis, msg: Message, peer: Peer, local: Option<LocalAddr>) {
        let key = ServerKey::of(&msg);
        if let Some(&id) = self.server_keys.get(&key) {
            let mut out = std::mem::take(&mut self.actions);
            let mut absorbed = false;
            if let Some(ServerTxn {
                machine: ServerMachine::Invite(m),
                ..
            }) = self.servers.get_mut(&id)
            {
                if matches!(
                    m.state(),
                    cairn_transaction::server::InviteState::Completed
                        | cairn_transaction::server::InviteState::Confirmed
                ) {
                    m.on_ack(now, &mut out);
                    absorbed = true;
                }
            }
            self.actions = out;
            self.apply_server_actions(now, id);
            if absorbed {
                return;
            }
        }
        // An ACK for a 2xx is its own end-to-end request: route it
        // statelessly by its Route set (16.11).
        self.forward_stateless(now, msg, peer, local);
    }

    /// Forward a request without a transaction (an ACK for a 2xx): only
    /// along a route set that names this proxy.
    fn forward_stateless(
        &mut self,
        _now: Millis,
        msg: Message,
        peer: Peer,
        local: Option<LocalAddr>,
    ) {
        if msg.max_forwards() == Some(0) {
            return;
        }
        let routes: SmallVec<[(Bytes, bool); 4]> = msg
            .routes()
            .map(|r| {
                let local = Uri::parse(r.uri)
                    .map(|u| self.cfg.is_local(u.host, u.port))
                    .unwrap_or(false);
                (Bytes::copy_from_slice(r.uri), local)
            })
            .collect();
        let Some(((_, true), rest)) = routes.split_first() else {
            if !(msg.method() == Method::Ack && self.find_owner(&msg, peer, local, false)) {
                debug!(source = %peer.addr, "ACK without a route through this proxy dropped");
            }
            return;
        };
        let next = match rest.first() {
            Some((uri, _)) => uri.clone(),
            None => Bytes::copy_from_slice(msg.request_uri_bytes()),
        };
        let Some(target) = target_from_uri(&next) else {
            return;
        };
        self.send_stateless(&msg, peer, &target, true, None);
    }

    /// A CANCEL that matched nothing, forwarded statelessly where the
    /// rules send its Request-URI (RFC 3261 16.10, when configured).
    fn forward_cancel_by_rules(&mut self, now: Millis, req: &Message, peer: Peer) {
        let target = req.request_uri().and_then(|u| {
            let decision = self.policy.route(&RouteInput {
                method: "CANCEL",
                ruri_user: u.user.and_then(|x| std::str::from_utf8(x).ok()),
                ruri_host: std::str::from_utf8(u.host_unbracketed()).unwrap_or(""),
                ruri_port: u.port,
                source: peer.addr,
                call_id: req.call_id(),
                now_unix_ms: now,
                transport: peer.transport,
                request: Some(req),
            });
            match decision {
                Decision::Forward(plan) => plan
                    .targets
                    .into_iter()
                    .next()
                    .map(|t| (t, plan.manipulation)),
                _ => None,
            }
        });
        match target {
            Some((t, manipulation)) => {
                let pop = self.first_route_is_local(req);
                // The same Request-URI as the INVITE got from the same rule.
                let ruri = branch_ruri(req, None, manipulation.as_deref(), &t);
                self.send_stateless(req, peer, &t, pop, ruri.as_deref())
            }
            None => self.reply_stateless(req, peer, 481, "Call/Transaction Does Not Exist"),
        }
    }

    /// Forward a request without a transaction to `target` (16.11).
    fn send_stateless(
        &mut self,
        msg: &Message,
        peer: Peer,
        target: &cairn_routing::Target,
        pop_route: bool,
        ruri: Option<&[u8]>,
    ) {
        let Some(out_local) = self.cfg.local_for(target.transport, target.addr) else {
            return;
        };
        // A stateless proxy's branch must be the same for retransmissions
        // (16.11): derive it from the request's key.
        let key = ServerKey::of(msg);
        let branch_id = branch::make(
            self.cfg.node,
            branch::loop_hash(msg),
            branch::key_hash(key.as_bytes()),
            0,
        );
        let via = format!(
            "SIP/2.0/{} {};branch={}",
            target.transport.via_token(),
            self.cfg.hostport(&out_local),
            branch_id
        );
        let mut e = Editor::new(msg);
        if let Some(r) = ruri {
            e.set_request_uri(r);
        }
        if pop_route {
            e.pop_route();
        }
        e.decrement_max_forwards();
        let top = msg.top_via();
        let src_ip = peer.addr.ip().to_string();
        let received = (ip_text(top.host) != src_ip.as_str()).then_some(src_ip.as_bytes());
        let rport = top.rport().and(Some(peer.addr.port()));
        e.set_via_received(received, rport);
        e.push_via(via.as_bytes());
        if target.transport.is_reliable() {
            e.ensure_content_length();
        }
        let bytes = e.finish();
        self.stats.requests_forwarded += 1;
        self.transmit(Peer::new(target.addr, target.transport), bytes, 0);
    }

    fn on_cancel(&mut self, now: Millis, msg: Message, peer: Peer, local: Option<LocalAddr>) {
        self.stats.cancels_in += 1;
        let key = ServerKey::of(&msg);
        if let Some(&id) = self.server_keys.get(&key) {
            // A retransmitted CANCEL: its transaction answers again.
            self.server_retransmission(now, id);
            return;
        }
        let invite = self
            .server_keys
            .get(&ServerKey::cancelled_invite(&msg))
            .copied();
        let reasons: SmallVec<[Bytes; 2]> = msg
            .headers_named(HeaderName::Reason)
            .map(|h| Bytes::copy_from_slice(msg.slice(h.value)))
            .collect();
        match invite {
            Some(inv) => {
                self.stats.cancels_matched += 1;
                let id = self.new_server(now, key, msg, peer, local);
                self.respond(now, id, 200, "OK", &[]);
                self.cancel_invite(now, inv, CancelReason::Caller(reasons));
            }
            None if self.find_owner(&msg, peer, local, true) => {}
            None => {
                // No transaction for it: a flood of these costs a bounded
                // memory entry each and a stateless answer, nothing more.
                self.stats.cancels_unmatched += 1;
                self.remember_cancel(now, ServerKey::cancelled_invite(&msg));
                match self.cfg.cancel.unmatched {
                    UnmatchedCancel::Reply481 => {
                        self.reply_stateless(&msg, peer, 481, "Call/Transaction Does Not Exist")
                    }
                    UnmatchedCancel::Forward => self.forward_cancel_by_rules(now, &msg, peer),
                }
            }
        }
    }

    // ------------------------------------------------------------------
    // Cluster: what belongs to another node (docs/cluster.md)
    // ------------------------------------------------------------------

    /// A CANCEL (or an ACK) whose INVITE no local transaction has: in a
    /// cluster, ask the driver which node holds the INVITE's record. Not for
    /// what another node relayed here (no ping-pong). True if asked.
    fn find_owner(
        &mut self,
        msg: &Message,
        peer: Peer,
        local: Option<LocalAddr>,
        cancel: bool,
    ) -> bool {
        if !self.cfg.clustered() || self.cfg.is_peer(peer.addr) {
            return false;
        }
        let invite = if cancel {
            ServerKey::cancelled_invite(msg)
        } else {
            ServerKey::of(msg)
        };
        self.stats.owner_lookups += 1;
        self.out.push_back(Output::FindOwner {
            key: branch::key_hash(invite.as_bytes()).to_be_bytes(),
            request: msg.clone(),
            peer,
            local,
        });
        true
    }

    /// The answer to [`Output::FindOwner`]: `owner` is the node that holds
    /// the INVITE's record (`None`: no node, or the lookup failed). A
    /// CANCEL for another live node's INVITE is answered 200 here and
    /// relayed to that node as received, which cancels its branches; the
    /// 487 then comes from that node. An ACK is relayed as received.
    /// Otherwise the request is handled as one that matches nothing.
    pub fn owner_found(
        &mut self,
        now: Millis,
        request: Message,
        peer: Peer,
        local: Option<LocalAddr>,
        owner: Option<u16>,
    ) {
        let to = owner.and_then(|n| self.cfg.peer_addr(n));
        let cancel = request.method() == Method::Cancel;
        match (to, cancel) {
            (Some(addr), _) => {
                debug!(node = owner, %addr, method = ?request.method(), "relayed to the node that owns the INVITE");
                if cancel {
                    self.stats.cancels_matched += 1;
                    self.reply_stateless(&request, peer, 200, "OK");
                }
                self.stats.relayed_to_nodes += 1;
                self.transmit(Peer::new(addr, Transport::Udp), request.buffer().clone(), 0);
            }
            (None, true) => {
                self.stats.cancels_unmatched += 1;
                self.remember_cancel(now, ServerKey::cancelled_invite(&request));
                match self.cfg.cancel.unmatched {
                    UnmatchedCancel::Reply481 => {
                        self.reply_stateless(&request, peer, 481, "Call/Transaction Does Not Exist")
                    }
                    UnmatchedCancel::Forward => self.forward_cancel_by_rules(now, &request, peer),
                }
            }
            (None, false) => {
                debug!(source = %peer.addr, "ACK for no transaction of the cluster dropped")
            }
        }
        let _ = local;
        self.flush_records(now);
    }

    /// A response for a branch another node of the cluster made: relayed
    /// to that node as received. False if it is not one.
    fn relay_response(&mut self, msg: &Message) -> bool {
        if !self.cfg.clustered() {
            return false;
        }
        let Some(node) = msg.top_via().branch().and_then(branch::node_of) else {
            return false;
        };
        let Some(addr) = self.cfg.peer_addr(node) else {
            return false;
        };
        self.stats.relayed_to_nodes += 1;
        self.transmit(Peer::new(addr, Transport::Udp), msg.buffer().clone(), 0);
        true
    }

    /// Writes the record of every transaction and dialog again (the store
    /// lost records: Redis was down or restarted empty).
    pub fn persist_all(&mut self, now: Millis) {
        if !self.cfg.persist {
            return;
        }
        let ids: Vec<TxnId> = self.servers.keys().copied().collect();
        for id in ids {
            // The large record too, not only the state (the store may
            // have lost both).
            if let Some(s) = self.servers.get_mut(&id) {
                s.base_branches = 0;
            }
            self.touch(id);
        }
        let keys: Vec<[u8; 8]> = self.dialogs.dialogs.keys().copied().collect();
        for k in keys {
            self.persist_dialog(k);
        }
        self.flush_records(now);
    }

    /// Answer a request without a transaction.
    fn reply_stateless(&mut self, req: &Message, peer: Peer, code: u16, reason: &str) {
        let tag = branch::local_tag(branch::key_hash(ServerKey::of(req).as_bytes()));
        let resp = build::response(req, code, reason, Some(tag.as_bytes()), &[]);
        self.stats.local_finals += 1;
        self.transmit(peer, resp, 0);
    }

    /// The caller cancelled (16.10): CANCEL every pending branch that may
    /// be cancelled, remember the others until they answer 1xx.
    fn cancel_invite(&mut self, now: Millis, id: TxnId, reason: CancelReason) {
        let Some(s) = self.servers.get_mut(&id) else {
            return;
        };
        if !matches!(&s.machine, ServerMachine::Invite(m) if m.state() == cairn_transaction::server::InviteState::Proceeding)
        {
            return;
        }
        match s.ctx.as_mut() {
            Some(ctx) => {
                if ctx.cancelled.is_none() {
                    ctx.cancelled = Some(reason.clone());
                }
                self.touch_urgent(id);
            }
            None => {
                // Still being routed (or not routable): nothing went out,
                // answer 487 now; the routing result will be dropped.
                self.stats.cancelled_while_routing += u64::from(s.routing);
                return self.respond(now, id, 487, "Request Terminated", &[]);
            }
        }
        self.cancel_branches(now, id, reason, None);
        self.check_completion(now, id);
    }

    /// Send (or schedule) CANCEL on every pending branch except `except`.
    fn cancel_branches(
        &mut self,
        now: Millis,
        id: TxnId,
        reason: CancelReason,
        except: Option<usize>,
    ) {
        let Some(ctx) = self.servers.get_mut(&id).and_then(|s| s.ctx.as_mut()) else {
            return;
        };
        let mut to_send: SmallVec<[usize; 4]> = SmallVec::new();
        for (i, b) in ctx.branches.iter_mut().enumerate() {
            if Some(i) == except || b.done || b.cancel != CancelState::None {
                continue;
            }
            if b.provisional || b.unsure {
                to_send.push(i);
            } else {
                b.cancel = CancelState::Pending(reason.clone());
            }
        }
        for i in to_send {
            self.send_cancel(now, id, i, reason.clone());
        }
    }

    /// Send a CANCEL for branch `i` of server transaction `id` (9.1).
    fn send_cancel(&mut self, now: Millis, id: TxnId, i: usize, reason: CancelReason) {
        let Some(b) = self
            .servers
            .get_mut(&id)
            .and_then(|s| s.ctx.as_mut())
            .and_then(|c| c.branches.get_mut(i))
        else {
            return;
        };
        b.cancel = CancelState::Sent;
        let client_id = b.client;
        let first = *b.cancel_sent_at.get_or_insert(now);
        self.timers
            .push(first + self.cfg.timers.t64(), (client_id, Tag::CancelWait));
        self.touch_urgent(id);
        let Some(c) = self.clients.get(&client_id) else {
            return;
        };
        let ClientMachine::Invite(m) = &c.machine else {
            return;
        };
        let Ok(invite) = Message::parse(m.request().clone()) else {
            return;
        };
        let dest = c.dest;
        let rule_reason = self
            .servers
            .get(&id)
            .and_then(|s| s.ctx.as_ref())
            .and_then(|c| c.cancel_reason.clone());
        let reasons = reason.values(&self.cfg.cancel.reasons, rule_reason.as_ref());
        let refs: SmallVec<[&[u8]; 2]> = reasons.iter().map(|r| &r[..]).collect();
        let bytes = build::cancel(&invite, &refs);
        let Some(branch_id) = invite.branch() else {
            return;
        };
        let key = ClientKey::new(branch_id, b"CANCEL");
        let cid = self.next_id;
        self.next_id += 1;
        let mut out = std::mem::take(&mut self.actions);
        let machine = ClientNonInvite::start(
            bytes,
            dest.transport.is_reliable(),
            self.cfg.timers,
            now,
            &mut out,
        );
        self.actions = out;
        self.client_keys.insert(key.clone(), cid);
        self.clients.insert(
            cid,
            ClientTxn {
                key,
                machine: ClientMachine::NonInvite(machine),
                server: id,
                branch: None,
                dest,
            },
        );
        self.stats.cancels_out += 1;
        self.apply_client_actions(now, cid);
    }

    // ------------------------------------------------------------------
    // Responses
    // ------------------------------------------------------------------

    fn on_response(&mut self, now: Millis, msg: Message, _peer: Peer) {
        let Some(cid) =
            ClientKey::of_response(&msg).and_then(|k| self.client_keys.get(&k).copied())
        else {
            if let Some((run, token)) = msg.top_via().branch().and_then(probe::parse_branch) {
                // An answer to a probe of cairn's own ends here.
                if msg.vias().nth(1).is_none() {
                    let code = msg.status().unwrap_or(0);
                    self.out
                        .push_back(Output::ProbeResponse { run, token, code });
                }
                return;
            }
            // Another node's branch (cluster): relay it there. Else no
            // transaction (a restart, a late 2xx): forward by Via (16.11).
            if self.relay_response(&msg) {
                return;
            }
            return self.forward_response_stateless(msg);
        };
        let code = msg.status().unwrap_or(500);
        let Some(c) = self.clients.get_mut(&cid) else {
            return;
        };
        let mut out = std::mem::take(&mut self.actions);
        let disposition = match &mut c.machine {
            ClientMachine::Invite(m) => {
                let sent = m.request().clone();
                m.on_response(
                    code,
                    || match Message::parse(sent) {
                        Ok(inv) => build::ack(&inv, &msg),
                        Err(_) => Bytes::new(),
                    },
                    now,
                    &mut out,
                )
            }
            ClientMachine::NonInvite(m) => m.on_response(code, now, &mut out),
        };
        let (server, branch) = (c.server, c.branch);
        self.actions = out;
        self.apply_client_actions(now, cid);
        if disposition == Disposition::Absorb {
            return;
        }
        let Some(bi) = branch else {
            return; // The response to a CANCEL of ours ends here.
        };
        if !self.servers.contains_key(&server) {
            if (200..300).contains(&code) {
                return self.forward_response_stateless(msg);
            }
            return;
        }
        self.branch_response(now, server, bi, msg, code);
    }

    /// A response to branch `bi` of server transaction `id` (16.7).
    fn branch_response(&mut self, now: Millis, id: TxnId, bi: usize, msg: Message, code: u16) {
        if code > 100 {
            self.touch(id);
            if self.cfg.dialogs {
                self.track_dialog(now, id, bi, &msg, code);
            }
        }
        let Some(ctx) = self.servers.get_mut(&id).and_then(|s| s.ctx.as_mut()) else {
            return;
        };
        let Some(b) = ctx.branches.get_mut(bi) else {
            return;
        };
        if code < 200 {
            b.provisional = true;
            // 16.7 item 2: a provisional resets timer C.
            if code > 100 && !b.timed_out {
                b.timer_c = now + self.cfg.timer_c;
                self.timers.push(b.timer_c, (b.client, Tag::C));
            }
            if let CancelState::Pending(reason) = b.cancel.clone() {
                self.send_cancel(now, id, bi, reason);
            }
            if code > 100 {
                self.forward_response(now, id, &msg, code);
            }
            return;
        }
        b.done = true;
        let timed_out = b.timed_out;
        if (200..300).contains(&code) {
            ctx.got_2xx = true;
            ctx.final_sent = true;
            let invite = self
                .servers
                .get(&id)
                .is_some_and(|s| matches!(s.machine, ServerMachine::Invite(_)));
            self.forward_response(now, id, &msg, code);
            if invite {
                self.cancel_branches(now, id, CancelReason::CompletedElsewhere, Some(bi));
            }
            return self.check_completion(now, id);
        }
        // 3xx-6xx: keep the best (16.7 item 5, 6).
        let eff = if timed_out { 408 } else { code };
        if code == 401 || code == 407 {
            ctx.challenges.push(msg.clone());
        }
        let better = match &ctx.best {
            None => true,
            Some(b) => better_response(code, b.status().unwrap_or(500)),
        };
        if better && !timed_out {
            ctx.best = Some(msg);
        } else if timed_out {
            ctx.synthetic.get_or_insert(408);
        }
        if (600..700).contains(&code) {
            // 16.7 item 5: a 6xx ends the search.
            ctx.next_target = ctx.targets.len();
            let reason = CancelReason::Final(code);
            self.cancel_branches(now, id, reason, Some(bi));
        } else if self.serial_failover(id, eff) {
            self.try_next_target(now, id);
        }
        self.check_completion(now, id);
    }

    fn serial_failover(&self, id: TxnId, code: u16) -> bool {
        self.servers
            .get(&id)
            .and_then(|s| s.ctx.as_ref())
            .is_some_and(|c| {
                c.mode == ForkMode::Serial
                    && c.cancelled.is_none()
                    && !c.got_2xx
                    && if code == 408 {
                        c.failover.on_timeout()
                    } else {
                        c.failover.should_failover(code)
                    }
            })
    }

    /// A branch ended without a response (timeout, transport error).
    fn branch_failed(&mut self, now: Millis, id: TxnId, bi: usize, failure: Failure) {
        self.touch(id);
        let Some(ctx) = self.servers.get_mut(&id).and_then(|s| s.ctx.as_mut()) else {
            return;
        };
        let Some(b) = ctx.branches.get_mut(bi) else {
            return;
        };
        if b.done {
            return;
        }
        b.done = true;
        let code = failure.status();
        debug!(target = %b.target.name, code, "branch failed");
        if ctx.best.is_none() {
            ctx.synthetic = Some(ctx.synthetic.map_or(code, |c| c.min(code)));
        }
        if self.serial_failover(id, code) {
            self.try_next_target(now, id);
        }
        self.check_completion(now, id);
    }

    /// When no branch is pending, send the best final response (16.7
    /// item 6), or 487 when the caller cancelled.
    fn check_completion(&mut self, now: Millis, id: TxnId) {
        let Some(ctx) = self.servers.get_mut(&id).and_then(|s| s.ctx.as_mut()) else {
            return;
        };
        if ctx.final_sent || ctx.branches.iter().any(|b| !b.done) {
            return;
        }
        ctx.final_sent = true;
        if ctx.cancelled.is_some() {
            return self.respond(now, id, 487, "Request Terminated", &[]);
        }
        match ctx.best.take() {
            Some(best) => {
                let code = best.status().unwrap_or(500);
                let challenges = std::mem::take(&mut ctx.challenges);
                self.forward_final(now, id, best, code, &challenges);
            }
            None => {
                let code = ctx.synthetic.unwrap_or(408);
                let reason = build::reason_phrase(code);
                self.respond(now, id, code, reason, &[]);
            }
        }
    }

    /// Forward the chosen final: a 503 becomes 500 (16.7 item 6), the
    /// challenges of every 401/407 are gathered (item 7).
    fn forward_final(
        &mut self,
        now: Millis,
        id: TxnId,
        best: Message,
        code: u16,
        challenges: &[Message],
    ) {
        if code == 503 {
            return self.respond(now, id, 500, "Server Internal Error", &[]);
        }
        if (code == 401 || code == 407) && challenges.len() > 1 {
            let mut e = Editor::new(&best);
            e.pop_via();
            for other in challenges {
                if std::ptr::eq(other.as_bytes().as_ptr(), best.as_bytes().as_ptr()) {
                    continue;
                }
                for name in [HeaderName::WwwAuthenticate, HeaderName::ProxyAuthenticate] {
                    for h in other.headers_named(name) {
                        e.append_header(name.as_str().as_bytes(), other.slice(h.value));
                    }
                }
            }
            let bytes = e.finish();
            return self.send_upstream(now, id, code, bytes);
        }
        self.forward_response(now, id, &best, code);
    }

    /// Forward a response to the caller through the server transaction.
    fn forward_response(&mut self, now: Millis, id: TxnId, msg: &Message, code: u16) {
        let mut e = Editor::new(msg);
        e.pop_via();
        if self
            .servers
            .get(&id)
            .is_some_and(|s| s.peer.transport.is_reliable())
        {
            e.ensure_content_length();
        }
        let bytes = e.finish();
        self.stats.responses_forwarded += 1;
        self.send_upstream(now, id, code, bytes);
    }

    fn send_upstream(&mut self, now: Millis, id: TxnId, code: u16, bytes: Bytes) {
        let Some(s) = self.servers.get_mut(&id) else {
            return;
        };
        let mut out = std::mem::take(&mut self.actions);
        let sent = match &mut s.machine {
            ServerMachine::Invite(m) => m.send_response(code, bytes.clone(), now, &mut out),
            ServerMachine::NonInvite(m) => m.send_response(code, bytes.clone(), now, &mut out),
        };
        let peer = s.peer;
        self.actions = out;
        if sent && code >= 200 {
            self.touch(id);
        }
        self.apply_server_actions(now, id);
        if !sent && (200..300).contains(&code) {
            // A 2xx that crossed a CANCEL after the 487 went out: every 2xx
            // is relayed upstream (RFC 3261 16.7 item 4).
            self.transmit(peer, bytes, 0);
        }
    }

    /// Forward a response that matches no transaction by its Via: only
    /// when the top Via is this proxy's, never to a broadcast address.
    fn forward_response_stateless(&mut self, msg: Message) {
        let top = msg.top_via();
        if !top.branch().is_some_and(branch::is_ours) || !self.cfg.is_local(top.host, top.port) {
            debug!("response not for this proxy dropped");
            return;
        }
        let Some(next) = msg.vias().nth(1) else {
            return;
        };
        let host = next.received().unwrap_or(next.host);
        let Some(ip) = parse_ip(host) else { return };
        if ip.is_unspecified()
            || ip.is_multicast()
            || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
        {
            return;
        }
        let transport = next.transport().unwrap_or(Transport::Udp);
        let port = match next.rport() {
            Some(Some(p)) => p,
            _ => next.port.unwrap_or(transport.default_port()),
        };
        let mut e = Editor::new(&msg);
        e.pop_via();
        let bytes = e.finish();
        self.stats.responses_forwarded += 1;
        self.transmit(Peer::new(SocketAddr::new(ip, port), transport), bytes, 0);
    }

    // ------------------------------------------------------------------
    // Timers
    // ------------------------------------------------------------------

    fn server_timer(&mut self, now: Millis, id: TxnId, t: Timer, deadline: Millis) {
        let Some(s) = self.servers.get_mut(&id) else {
            return;
        };
        let mut out = std::mem::take(&mut self.actions);
        match &mut s.machine {
            ServerMachine::Invite(m) => {
                if m.on_timer(t, deadline, now, &mut out).is_some() {
                    debug!("no ACK for a final response (timer H)");
                }
            }
            ServerMachine::NonInvite(m) => {
                m.on_timer(t, deadline, now, &mut out);
            }
        }
        self.actions = out;
        self.apply_server_actions(now, id);
    }

    fn client_timer(&mut self, now: Millis, id: TxnId, t: Timer, deadline: Millis) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let mut out = std::mem::take(&mut self.actions);
        let failure = match &mut c.machine {
            ClientMachine::Invite(m) => m.on_timer(t, deadline, now, &mut out),
            ClientMachine::NonInvite(m) => m.on_timer(t, deadline, now, &mut out),
        };
        let owner = (c.server, c.branch);
        self.actions = out;
        self.apply_client_actions(now, id);
        if let (Some(f), (server, Some(bi))) = (failure, owner) {
            self.branch_failed(now, server, bi, f);
        }
    }

    /// A CANCELed branch gave no final within 64*T1 (RFC 3261 9.1): it is
    /// over, the caller is not kept waiting for a 487 that never comes.
    fn on_cancel_wait(&mut self, now: Millis, cid: TxnId) {
        debug!(cid, "cancelled branch gave no final response: ended");
        self.end_branch(now, cid, Failure::Timeout);
    }

    /// End the INVITE client transaction of a branch and count the branch
    /// as failed.
    fn end_branch(&mut self, now: Millis, cid: TxnId, failure: Failure) {
        let Some(ClientTxn {
            machine: ClientMachine::Invite(m),
            server,
            branch,
            ..
        }) = self.clients.get_mut(&cid)
        else {
            return;
        };
        let owner = (*server, *branch);
        let mut out = std::mem::take(&mut self.actions);
        m.terminate(&mut out);
        self.actions = out;
        self.apply_client_actions(now, cid);
        if let (server, Some(bi)) = owner {
            self.branch_failed(now, server, bi, failure);
        }
    }

    /// A request of an existing server transaction came again.
    fn server_retransmission(&mut self, now: Millis, id: TxnId) {
        let mut out = std::mem::take(&mut self.actions);
        if let Some(s) = self.servers.get_mut(&id) {
            match &mut s.machine {
                ServerMachine::Invite(m) => m.on_retransmission(&mut out),
                ServerMachine::NonInvite(m) => m.on_retransmission(&mut out),
            }
        }
        self.actions = out;
        self.apply_server_actions(now, id);
    }

    /// Timer C (16.8): CANCEL a branch that rang too long; a branch that
    /// never answered is ended as a timeout.
    fn on_timer_c(&mut self, now: Millis, cid: TxnId, deadline: Millis, ring: bool) {
        let Some(c) = self.clients.get(&cid) else {
            return;
        };
        let (id, Some(bi)) = (c.server, c.branch) else {
            return;
        };
        self.touch(id);
        let Some(b) = self
            .servers
            .get_mut(&id)
            .and_then(|s| s.ctx.as_mut())
            .and_then(|c| c.branches.get_mut(bi))
        else {
            return;
        };
        let current = if ring {
            b.ring_deadline
        } else {
            Some(b.timer_c)
        };
        if b.done || current != Some(deadline) {
            return;
        }
        b.timed_out = true;
        if b.provisional || b.unsure {
            if b.cancel == CancelState::None {
                self.send_cancel(now, id, bi, CancelReason::NoAnswer);
            }
        } else {
            self.end_branch(now, cid, Failure::Timeout);
        }
    }

    // ------------------------------------------------------------------
    // Plumbing
    // ------------------------------------------------------------------

    /// Answer a server transaction with a response cairn makes.
    fn respond(
        &mut self,
        now: Millis,
        id: TxnId,
        code: u16,
        reason: &str,
        extra: &[(&str, &[u8])],
    ) {
        let Some(s) = self.servers.get(&id) else {
            return;
        };
        let tag = branch::local_tag(s.key_hash);
        let bytes = build::response(&s.request, code, reason, Some(tag.as_bytes()), extra);
        if code >= 200 {
            if let Some(ctx) = self.servers.get_mut(&id).and_then(|s| s.ctx.as_mut()) {
                ctx.final_sent = true;
            }
            self.stats.local_finals += 1;
        }
        self.send_upstream(now, id, code, bytes);
    }

    fn transmit(&mut self, peer: Peer, data: Bytes, token: u64) {
        self.out.push_back(Output::Transmit(Transmit {
            dest: peer.addr,
            transport: peer.transport,
            conn: peer.conn,
            data,
            token,
        }));
    }

    fn apply_server_actions(&mut self, _now: Millis, id: TxnId) {
        let mut actions = std::mem::take(&mut self.actions);
        for a in actions.drain(..) {
            match a {
                Action::Send(b) => {
                    if let Some(s) = self.servers.get(&id) {
                        let peer = s.peer;
                        self.transmit(peer, b, id);
                    }
                }
                Action::Arm(t, at) => self.timers.push(at, (id, Tag::Txn(t))),
                Action::Terminated => {
                    if let Some(s) = self.servers.remove(&id) {
                        self.server_keys.remove(&s.key);
                        if s.persisted {
                            self.out.push_back(Output::Forget {
                                space: Space::Transactions,
                                key: s.key_hash.to_be_bytes(),
                            });
                            if s.state_written {
                                self.out.push_back(Output::Forget {
                                    space: Space::Transactions,
                                    key: (s.key_hash ^ persist::STATE_KEY_MARK).to_be_bytes(),
                                });
                            }
                        }
                        if let Some(ctx) = &s.ctx {
                            // Branches still running lose their server:
                            // their late responses are forwarded by Via.
                            debug!(branches = ctx.branches.len(), "server transaction ended");
                        }
                    }
                }
            }
        }
        self.actions = actions;
    }

    fn apply_client_actions(&mut self, _now: Millis, id: TxnId) {
        let mut actions = std::mem::take(&mut self.actions);
        for a in actions.drain(..) {
            match a {
                Action::Send(b) => {
                    if let Some(c) = self.clients.get(&id) {
                        let dest = c.dest;
                        if !b.is_empty() {
                            self.transmit(dest, b, id);
                        }
                    }
                }
                Action::Arm(t, at) => self.timers.push(at, (id, Tag::Txn(t))),
                Action::Terminated => {
                    if let Some(c) = self.clients.remove(&id) {
                        self.client_keys.remove(&c.key);
                    }
                }
            }
        }
        self.actions = actions;
    }
    // ------------------------------------------------------------------
    // Persistence (see persist.rs)
    // ------------------------------------------------------------------

    /// Note that the record of server transaction `id` must be written; it
    /// may wait to be grouped with later ones (see [`Output::Persist`]).
    fn touch(&mut self, id: TxnId) {
        if !self.cfg.persist {
            return;
        }
        if let Some(s) = self.servers.get_mut(&id) {
            if !s.dirty && matches!(s.machine, ServerMachine::Invite(_)) {
                s.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// Note that the record of server transaction `id` must be written
    /// before the messages of this poll cycle go out.
    fn touch_urgent(&mut self, id: TxnId) {
        self.touch(id);
        if let Some(s) = self.servers.get_mut(&id) {
            s.urgent = s.dirty;
        }
    }

    /// Queue the records of every changed transaction: its base when a
    /// branch was added since the last one (or the state outlives it), and
    /// its state.
    fn flush_records(&mut self, now: Millis) {
        if self.dirty.is_empty() {
            return;
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        for id in &dirty {
            let Some(s) = self.servers.get_mut(id) else {
                continue;
            };
            s.dirty = false;
            let urgent = std::mem::take(&mut s.urgent);
            // Only what was forwarded needs a record: an INVITE that never
            // left can be routed afresh after a restart.
            if s.ctx.as_ref().is_none_or(|c| c.branches.is_empty()) {
                continue;
            }
            let Some(state) = self.state_record(*id, now) else {
                continue;
            };
            let expires_at = state.expires_at;
            let s = &self.servers[id];
            let nbranches = s.ctx.as_ref().map_or(0, |c| c.branches.len());
            let key_hash = s.key_hash;
            let state_written = s.state_written;
            let (base, state) = if s.base_branches < nbranches || s.base_expires < expires_at {
                // Kept past every deadline the state can reach meanwhile:
                // a ring can go on (timer C reset by each 1xx) for a while.
                let base_expires = expires_at + self.cfg.timer_c;
                if state_written {
                    // A state record exists: it must be replaced, or it
                    // would stand for this newer one at restore.
                    let b = self.base_record(*id, base_expires, None);
                    (
                        b.map(|b| (b, base_expires)),
                        Some(persist::encode_state(&state)),
                    )
                } else {
                    let b = self.base_record(*id, base_expires, Some(state));
                    (b.map(|b| (b, base_expires)), None)
                }
            } else {
                (None, Some(persist::encode_state(&state)))
            };
            let s = self.servers.get_mut(id).expect("checked above");
            let base_fresh = !s.persisted;
            let state_fresh = !s.state_written;
            s.persisted = true;
            self.stats.records_written += 1;
            if let Some((b, base_expires)) = base {
                s.base_branches = nbranches;
                s.base_expires = base_expires;
                self.out.push_back(Output::Persist {
                    space: Space::Transactions,
                    key: key_hash.to_be_bytes(),
                    expires_at: base_expires,
                    value: b,
                    urgent,
                    fresh: base_fresh,
                });
            }
            if let Some(state) = state {
                s.state_written = true;
                self.out.push_back(Output::Persist {
                    space: Space::Transactions,
                    key: (key_hash ^ persist::STATE_KEY_MARK).to_be_bytes(),
                    expires_at,
                    value: state,
                    urgent,
                    fresh: state_fresh,
                });
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }

    fn target_record(t: &Target) -> persist::TargetRecord {
        persist::TargetRecord {
            addr: t.addr,
            transport: persist::transport_code(t.transport),
            rewrite_ruri_host: t.rewrite_ruri_host,
            name: t.name.to_string(),
            index: t.index as u32,
        }
    }

    /// The encoded base record of server transaction `id`, with its first
    /// state when that has no record of its own.
    fn base_record(
        &self,
        id: TxnId,
        expires_at: Millis,
        state: Option<persist::StateRecord<'_>>,
    ) -> Option<Vec<u8>> {
        use std::borrow::Cow;
        let s = self.servers.get(&id)?;
        let ctx = s.ctx.as_ref()?;
        let branches = ctx
            .branches
            .iter()
            .map(|b| {
                let request = match self.clients.get(&b.client).map(|c| &c.machine) {
                    Some(ClientMachine::Invite(ci)) => {
                        Cow::Owned(persist::pack_request(ci.request(), s.request.as_bytes()))
                    }
                    _ => Cow::Borrowed(&[][..]),
                };
                persist::BranchBase {
                    target: Self::target_record(&b.target),
                    request,
                    sent_at: b.sent_at,
                }
            })
            .collect();
        let r = persist::BaseRecord {
            key: Cow::Borrowed(s.key.as_bytes()),
            request: Cow::Borrowed(s.request.as_bytes()),
            peer: s.peer.addr,
            peer_transport: persist::transport_code(s.peer.transport),
            local: s
                .local
                .map(|l| (persist::transport_code(l.transport), l.addr)),
            parallel: ctx.mode == ForkMode::Parallel,
            failover_codes: ctx
                .failover
                .codes
                .ranges()
                .into_iter()
                .flat_map(|(a, b)| [a, b])
                .collect(),
            failover_on_timeout: ctx.failover.on_timeout(),
            targets: ctx.targets.iter().map(Self::target_record).collect(),
            pop_route: ctx.edits.pop_route,
            strict_ruri: ctx.edits.strict_ruri.as_deref().map(Cow::Borrowed),
            record_route: ctx.edits.record_route,
            cancel_reason: ctx.cancel_reason.as_ref().map(|r| r.to_string()),
            ring_timeout: ctx.ring_timeout,
            rule: ctx.rule.as_ref().map(|r| r.to_string()),
            set: ctx.set.as_ref().map(|r| r.to_string()),
            manipulation: ctx
                .manipulation
                .as_deref()
                .map(persist::ManipulationRecord::of),
            branches,
            expires_at,
            state,
            version: persist::VERSION,
        };
        Some(persist::encode_base(&r))
    }

    /// The state record of server transaction `id`.
    fn state_record(&self, id: TxnId, now: Millis) -> Option<persist::StateRecord<'_>> {
        use std::borrow::Cow;
        let s = self.servers.get(&id)?;
        let ServerMachine::Invite(m) = &s.machine else {
            return None;
        };
        let ctx = s.ctx.as_ref()?;
        let t64 = self.cfg.timers.t64();
        let mut expires_at = now + t64 + self.cfg.timers.t4;
        let branches = ctx
            .branches
            .iter()
            .map(|b| {
                if !b.done {
                    expires_at = expires_at.max(b.timer_c.max(b.ring_deadline.unwrap_or(0)) + t64);
                }
                persist::BranchState {
                    provisional: b.provisional,
                    done: b.done,
                    cancel: match b.cancel {
                        CancelState::None => 0,
                        CancelState::Pending(_) => 1,
                        CancelState::Sent => 2,
                    },
                    cancel_reason: match &b.cancel {
                        CancelState::Pending(r) => Some(reason_record(r)),
                        _ => None,
                    },
                    timed_out: b.timed_out,
                    timer_c: b.timer_c,
                    ring_deadline: b.ring_deadline,
                    cancel_sent_at: b.cancel_sent_at,
                }
            })
            .collect();
        let r = persist::StateRecord {
            key_hash: s.key_hash,
            state: match m.state() {
                InviteState::Proceeding => 0,
                InviteState::Accepted => 1,
                InviteState::Completed => 2,
                InviteState::Confirmed => 3,
                InviteState::Terminated => 4,
            },
            last_status: m.last_status(),
            // Not kept: our 100 Trying (made again from the request at
            // restore) and a 2xx (the Accepted state re-sends nothing).
            last_response: match m.last_status() {
                100 | 200..=299 => None,
                _ => m.last_response().map(|b| Cow::Borrowed(&b[..])),
            },
            next_target: ctx.next_target as u32,
            branches,
            best: ctx.best.as_ref().map(|m| Cow::Borrowed(m.as_bytes())),
            challenges: ctx
                .challenges
                .iter()
                .map(|m| Cow::Borrowed(m.as_bytes()))
                .collect(),
            synthetic: ctx.synthetic,
            cancelled: ctx.cancelled.as_ref().map(reason_record),
            final_sent: ctx.final_sent,
            got_2xx: ctx.got_2xx,
            expires_at,
        };
        Some(r)
    }

    /// Rebuild the transactions of a previous run from their records,
    /// before any message is read. Timers resume from their stored
    /// deadlines (those already past fire at the next `handle_timeout`);
    /// CANCELs that were sent but not answered are sent again.
    pub fn restore<'a>(
        &mut self,
        now: Millis,
        records: impl IntoIterator<Item = &'a [u8]>,
    ) -> RestoreReport {
        let mut report = RestoreReport::default();
        let (merged, bad) = persist::merge_all(records);
        report.skipped = bad;
        for r in merged {
            if r.expires_at <= now {
                report.expired += 1;
                continue;
            }
            match self.restore_one(now, r) {
                Some(()) => report.restored += 1,
                None => report.skipped += 1,
            }
        }
        self.stats.records_restored += report.restored as u64;
        self.flush_records(now);
        report
    }

    fn restore_one(&mut self, now: Millis, r: persist::TxnRecord) -> Option<()> {
        if r.expires_at <= now {
            return None;
        }
        let request = Message::parse(Bytes::from(r.request)).ok()?;
        let key = ServerKey::of(&request);
        if key.as_bytes() != r.key.as_slice() || self.server_keys.contains_key(&key) {
            return None;
        }
        let mut peer = Peer::new(r.peer, persist::transport_of(r.peer_transport));
        let reliable = peer.transport.is_reliable();
        if reliable {
            // The caller's connection died with the old process: responses
            // go to a new connection to the received address and the
            // sent-by port (RFC 3261 18.2.2).
            let via = request.top_via();
            peer.addr
                .set_port(via.port.unwrap_or(peer.transport.default_port()));
        }
        let state = match r.state {
            0 => InviteState::Proceeding,
            1 => InviteState::Accepted,
            2 => InviteState::Completed,
            3 => InviteState::Confirmed,
            _ => return None,
        };
        let last_response = match (r.last_response, r.last_status) {
            (Some(b), _) => Some(Bytes::from(b)),
            (None, 100) => Some(build::response(&request, 100, "Trying", None, &[])),
            (None, _) => None,
        };
        let mut machine = ServerInvite::restore(
            reliable,
            self.cfg.timers,
            state,
            last_response,
            r.last_status,
        );
        let id = self.next_id;
        self.next_id += 1;
        let t64 = self.cfg.timers.t64();
        let mut out = std::mem::take(&mut self.actions);
        machine.resume(now, &mut out);
        for a in out.drain(..) {
            if let Action::Arm(t, at) = a {
                self.timers.push(at, (id, Tag::Txn(t)));
            }
        }
        self.actions = out;
        let target_of = |t: persist::TargetRecord| Target {
            addr: t.addr,
            transport: persist::transport_of(t.transport),
            rewrite_ruri_host: t.rewrite_ruri_host,
            name: Arc::from(t.name),
            index: t.index as usize,
        };
        let mut ctx_out = None;
        let mut clients = Vec::new();
        let mut resend_cancels = Vec::new();
        if let Some(c) = r.ctx {
            let mut codes = cairn_routing::CodeSet::empty();
            for (first, last) in c.failover_ranges {
                codes.insert_range(first, last);
            }
            let failover = Failover {
                codes,
                on_timeout: c.failover_on_timeout,
            };
            let edits = RouteEdits {
                pop_route: c.pop_route,
                strict_ruri: c.strict_ruri.map(Bytes::from),
                record_route: c.record_route,
            };
            let mode = if c.parallel {
                ForkMode::Parallel
            } else {
                ForkMode::Serial
            };
            let mut ctx = Context::new(
                mode,
                failover,
                c.targets.into_iter().map(target_of).collect(),
                edits,
            );
            ctx.next_target = c.next_target as usize;
            ctx.best = c.best.and_then(|b| Message::parse(Bytes::from(b)).ok());
            ctx.challenges = c
                .challenges
                .into_iter()
                .filter_map(|b| Message::parse(Bytes::from(b)).ok())
                .collect();
            ctx.synthetic = c.synthetic;
            ctx.cancelled = c.cancelled.map(reason_of);
            ctx.final_sent = c.final_sent;
            ctx.got_2xx = c.got_2xx;
            ctx.cancel_reason = c.cancel_reason.map(Arc::from);
            ctx.ring_timeout = c.ring_timeout;
            ctx.rule = c.rule.map(Arc::from);
            ctx.set = c.set.map(Arc::from);
            ctx.manipulation = c.manipulation.map(|m| Arc::new(m.into_manipulation()));
            for (bi, b) in c.branches.into_iter().enumerate() {
                let client = self.next_id;
                self.next_id += 1;
                let st = b.state;
                // A state that never made it to the store: timer C from
                // when the branch was sent.
                let timer_c = match st.timer_c {
                    0 => b.sent_at + self.cfg.timer_c,
                    t => t,
                };
                let mut branch = Branch::new(client, target_of(b.target), timer_c);
                branch.sent_at = b.sent_at;
                branch.provisional = st.provisional;
                // Its 1xx may have come in just before the stop without
                // reaching the record (state records may wait a few ms,
                // and a 100 Trying is not recorded): a CANCEL goes out at
                // once rather than waiting for a 1xx that may never come.
                branch.unsure = !st.provisional;
                branch.done = st.done;
                branch.timed_out = st.timed_out;
                branch.ring_deadline = st.ring_deadline;
                branch.cancel_sent_at = st.cancel_sent_at;
                branch.cancel = match (st.cancel, st.cancel_reason) {
                    (1, Some(reason)) => CancelState::Pending(reason_of(reason)),
                    (2, _) => CancelState::Sent,
                    _ => CancelState::None,
                };
                if !branch.done && !b.request.is_empty() {
                    let sent = Message::parse(Bytes::from(b.request)).ok()?;
                    let branch_id = sent.branch()?.to_vec();
                    let dest = Peer::new(branch.target.addr, branch.target.transport);
                    let cstate = if st.provisional {
                        ClientInviteState::Proceeding
                    } else {
                        ClientInviteState::Calling
                    };
                    let cm = ClientInvite::restore(
                        sent.buffer().clone(),
                        dest.transport.is_reliable(),
                        self.cfg.timers,
                        cstate,
                    );
                    clients.push((
                        client,
                        ClientKey::new(&branch_id, b"INVITE"),
                        cm,
                        dest,
                        bi,
                        b.sent_at + t64,
                    ));
                    self.timers.push(branch.timer_c, (client, Tag::C));
                    if let Some(rd) = branch.ring_deadline {
                        self.timers.push(rd, (client, Tag::Ring));
                    }
                    if branch.cancel == CancelState::Sent {
                        resend_cancels.push(bi);
                    }
                }
                ctx.branches.push(branch);
            }
            ctx_out = Some(Box::new(ctx));
        }
        let key_hash = branch::key_hash(key.as_bytes());
        let loop_hash = branch::loop_hash(&request);
        let nbranches = ctx_out.as_ref().map_or(0, |c| c.branches.len());
        self.server_keys.insert(key.clone(), id);
        self.servers.insert(
            id,
            ServerTxn {
                key,
                machine: ServerMachine::Invite(machine),
                request,
                peer,
                local: r.local.map(|(t, addr)| LocalAddr {
                    transport: persist::transport_of(t),
                    addr,
                }),
                key_hash,
                loop_hash,
                ctx: ctx_out,
                routing: false,
                dirty: false,
                urgent: false,
                persisted: true,
                base_branches: nbranches,
                base_expires: r.expires_at,
                state_written: true,
            },
        );
        for (client, ckey, mut cm, dest, bi, timer_b) in clients {
            // Timer B from when the INVITE was first sent.
            let mut out = std::mem::take(&mut self.actions);
            cm.resume(now, timer_b, &mut out);
            self.actions = out;
            self.client_keys.insert(ckey.clone(), client);
            self.clients.insert(
                client,
                ClientTxn {
                    key: ckey,
                    machine: ClientMachine::Invite(cm),
                    server: id,
                    branch: Some(bi),
                    dest,
                },
            );
            self.apply_client_actions(now, client);
        }
        for bi in resend_cancels {
            let reason = self
                .servers
                .get(&id)
                .and_then(|s| s.ctx.as_ref())
                .and_then(|c| c.cancelled.clone())
                .unwrap_or(CancelReason::NoAnswer);
            self.send_cancel(now, id, bi, reason);
        }
        Some(())
    }
    // ------------------------------------------------------------------
    // Dialogs (see dialog.rs)
    // ------------------------------------------------------------------

    /// The dialogs cairn tracks.
    pub fn dialogs(&self) -> &DialogTable {
        &self.dialogs
    }

    /// A 1xx/2xx/final from branch `bi` of an INVITE: start, confirm or
    /// end its dialog.
    fn track_dialog(&mut self, now: Millis, id: TxnId, bi: usize, msg: &Message, code: u16) {
        if msg.method() != Method::Invite {
            return;
        }
        let (Some(ft), Some(tt)) = (msg.from_tag(), msg.to_tag()) else {
            return;
        };
        let Some(s) = self.servers.get(&id) else {
            return;
        };
        let Some(ctx) = s.ctx.as_ref() else { return };
        if !ctx.edits.record_route {
            // Without Record-Route no BYE would come through here.
            return;
        }
        let Some(b) = ctx.branches.get(bi) else {
            return;
        };
        let key = dialog::key(msg.call_id(), ft, tt);
        if code >= 300 {
            if self
                .dialogs
                .get(&key)
                .is_some_and(|d| d.state == DialogState::Early)
            {
                self.end_dialog(key, "final response");
            }
            return;
        }
        let state = if code >= 200 {
            DialogState::Confirmed
        } else {
            DialogState::Early
        };
        let expires_at = now
            + if state == DialogState::Confirmed {
                self.cfg.dialog_timeout
            } else {
                self.cfg.timer_c + self.cfg.timers.t64()
            };
        if let Some(d) = self.dialogs.get_mut(&key) {
            if d.state == DialogState::Confirmed && state == DialogState::Early {
                return;
            }
            d.state = state;
            d.updated = now;
            d.expires_at = expires_at;
        } else {
            let d = Dialog {
                call_id: String::from_utf8_lossy(msg.call_id()).into_owned(),
                from_tag: String::from_utf8_lossy(ft).into_owned(),
                to_tag: String::from_utf8_lossy(tt).into_owned(),
                state,
                destination: b.target.name.to_string(),
                destination_addr: b.target.addr,
                destination_index: b.target.index as u32,
                set: ctx.set.as_deref().unwrap_or("").to_owned(),
                rule: ctx.rule.as_deref().unwrap_or("").to_owned(),
                created: now,
                updated: now,
                expires_at,
            };
            if self.dialogs.insert(key, d) {
                self.stats.dialogs_started += 1;
                self.destination_dialogs(&key, true);
            }
        }
        self.timers
            .push(expires_at, (u64::from_be_bytes(key), Tag::Dialog));
        self.persist_dialog(key);
    }

    fn persist_dialog(&mut self, key: [u8; 8]) {
        if !self.cfg.persist {
            return;
        }
        if let Some(d) = self.dialogs.get(&key) {
            self.out.push_back(Output::Persist {
                space: Space::Dialogs,
                key,
                value: dialog::encode(d),
                expires_at: d.expires_at,
                urgent: false,
                // Not tracked for dialogs: a Forget always reaches the store.
                fresh: false,
            });
        }
    }

    /// Count a dialog in (or out of) its destination, for the limit.
    fn destination_dialogs(&self, key: &[u8; 8], started: bool) {
        let Some(d) = self.dialogs.get(key) else {
            return;
        };
        if let Some(dest) = dialog_destination(&self.policy, d) {
            dest.state().dialog_changed(started);
        }
    }

    fn end_dialog(&mut self, key: [u8; 8], why: &str) {
        self.destination_dialogs(&key, false);
        if let Some(d) = self.dialogs.remove(&key) {
            debug!(call_id = %d.call_id, why, "dialog ended");
            self.stats.dialogs_ended += 1;
            if self.cfg.persist {
                self.out.push_back(Output::Forget {
                    space: Space::Dialogs,
                    key,
                });
            }
        }
    }

    fn on_dialog_timeout(&mut self, _now: Millis, key: [u8; 8], deadline: Millis) {
        if self
            .dialogs
            .get(&key)
            .is_some_and(|d| d.expires_at == deadline)
        {
            self.end_dialog(key, "timeout");
        }
    }

    /// Rebuild dialogs from their records (before reading any message).
    pub fn restore_dialogs<'a>(
        &mut self,
        now: Millis,
        records: impl IntoIterator<Item = &'a [u8]>,
    ) -> RestoreReport {
        let mut report = RestoreReport::default();
        for raw in records {
            match dialog::decode(raw) {
                Some(d) if d.expires_at <= now => report.expired += 1,
                Some(d) => {
                    let key = dialog::key(
                        d.call_id.as_bytes(),
                        d.from_tag.as_bytes(),
                        d.to_tag.as_bytes(),
                    );
                    let expires_at = d.expires_at;
                    if self.dialogs.insert(key, d) {
                        self.destination_dialogs(&key, true);
                        self.timers
                            .push(expires_at, (u64::from_be_bytes(key), Tag::Dialog));
                        report.restored += 1;
                    } else {
                        report.skipped += 1;
                    }
                }
                None => report.skipped += 1,
            }
        }
        self.stats.dialogs_restored += report.restored as u64;
        report
    }
    // ------------------------------------------------------------------
    // Introspection (the admin API)
    // ------------------------------------------------------------------

    /// What is in flight: one entry per server transaction that is being
    /// proxied (the caller's side and every branch).
    pub fn transactions_snapshot(&self, now: Millis) -> Vec<TxnInfo> {
        let mut v: Vec<TxnInfo> = self
            .servers
            .values()
            .map(|s| {
                let state = match &s.machine {
                    ServerMachine::Invite(m) => format!("{:?}", m.state()),
                    ServerMachine::NonInvite(m) => format!("{:?}", m.state()),
                };
                let branches = s
                    .ctx
                    .iter()
                    .flat_map(|c| c.branches.iter())
                    .map(|b| BranchInfo {
                        destination: b.target.name.to_string(),
                        address: b.target.addr.to_string(),
                        transport: b.target.transport.name(),
                        state: if b.done {
                            "done"
                        } else if b.provisional {
                            "ringing"
                        } else {
                            "calling"
                        },
                        cancel: match b.cancel {
                            CancelState::None => "none",
                            CancelState::Pending(_) => "pending",
                            CancelState::Sent => "sent",
                        },
                        age_ms: now.saturating_sub(b.sent_at),
                    })
                    .collect();
                TxnInfo {
                    call_id: String::from_utf8_lossy(s.request.call_id()).into_owned(),
                    method: String::from_utf8_lossy(s.request.method_bytes()).into_owned(),
                    request_uri: String::from_utf8_lossy(s.request.request_uri_bytes())
                        .into_owned(),
                    source: s.peer.addr.to_string(),
                    transport: s.peer.transport.name(),
                    state,
                    last_status: match &s.machine {
                        ServerMachine::Invite(m) => m.last_status(),
                        ServerMachine::NonInvite(m) => m.last_status(),
                    },
                    routing: s.routing,
                    cancelled: s.ctx.as_ref().is_some_and(|c| c.cancelled.is_some()),
                    persisted: s.persisted,
                    branches,
                }
            })
            .collect();
        v.sort_by(|a, b| a.call_id.cmp(&b.call_id));
        v
    }
}

impl Branch {
    fn new(client: TxnId, target: Target, timer_c: Millis) -> Branch {
        Branch {
            client,
            target,
            provisional: false,
            done: false,
            cancel: CancelState::None,
            timed_out: false,
            timer_c,
            ring_deadline: None,
            sent_at: timer_c,
            cancel_sent_at: None,
            unsure: false,
        }
    }
}

impl Context {
    fn new(mode: ForkMode, failover: Failover, targets: Vec<Target>, edits: RouteEdits) -> Context {
        Context {
            mode,
            failover,
            targets,
            next_target: 0,
            branches: SmallVec::new(),
            edits,
            best: None,
            challenges: SmallVec::new(),
            synthetic: None,
            cancelled: None,
            final_sent: false,
            got_2xx: false,
            cancel_reason: None,
            ring_timeout: None,
            rule: None,
            set: None,
            manipulation: None,
        }
    }
}

/// Whether a new final `code` beats the best so far (16.7 item 6): 6xx
/// first, then the lowest class; within 4xx the codes that a caller can
/// act on (401, 407, 415, 420, 484) win; otherwise the first one stays.
fn better_response(code: u16, best: u16) -> bool {
    let class = |c: u16| match c / 100 {
        6 => 0,
        n => n,
    };
    let (a, b) = (class(code), class(best));
    if a != b {
        return a < b;
    }
    let actionable = |c: u16| matches!(c, 401 | 407 | 415 | 420 | 484);
    actionable(code) && !actionable(best)
}

/// The Record-Route value for a listener.
fn record_route_value(cfg: &CoreConfig, l: &LocalAddr) -> String {
    match l.transport {
        Transport::Udp => format!("<sip:{};lr>", cfg.hostport(l)),
        t => format!("<sip:{};transport={};lr>", cfg.hostport(l), t.name()),
    }
}

/// The destination of `policy` a dialog was set up with: by its index when
/// that still names the same gateway, else by address and URI (the policy
/// was reloaded since); `None` when the policy no longer has it.
fn dialog_destination<'p>(
    policy: &'p Policy,
    d: &Dialog,
) -> Option<&'p cairn_routing::Destination> {
    let dests = policy.destination_set(&d.set)?.destinations();
    let same = |x: &&cairn_routing::Destination| {
        x.addr() == d.destination_addr && **x.uri() == *d.destination
    };
    dests
        .get(d.destination_index as usize)
        .filter(same)
        .or_else(|| dests.iter().find(same))
}

fn parse_ip(host: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(cairn_sip::uri::strip_brackets(host))
        .ok()?
        .parse()
        .ok()
}

fn ip_text(host: &[u8]) -> &str {
    std::str::from_utf8(cairn_sip::uri::strip_brackets(host)).unwrap_or("")
}

/// A target from a Route or Request-URI: numeric hosts only (no DNS yet).
fn target_from_uri(uri: &[u8]) -> Option<Target> {
    let u = Uri::parse(uri).ok()?;
    if !matches!(u.scheme, Scheme::Sip) {
        return None;
    }
    let host = u.maddr().unwrap_or(u.host);
    let ip = parse_ip(host)?;
    let transport = u
        .param("transport")
        .flatten()
        .and_then(Transport::from_token)
        .unwrap_or(Transport::Udp);
    if !matches!(transport, Transport::Udp | Transport::Tcp) {
        return None;
    }
    let port = u.port.unwrap_or(transport.default_port());
    Some(Target {
        addr: SocketAddr::new(ip, port),
        transport,
        rewrite_ruri_host: false,
        name: Arc::from(String::from_utf8_lossy(uri).as_ref()),
        index: 0,
    })
}

trait UriExt<'a> {
    fn maddr(&self) -> Option<&'a [u8]>;
}

impl<'a> UriExt<'a> for Uri<'a> {
    fn maddr(&self) -> Option<&'a [u8]> {
        self.param("maddr").flatten()
    }
}

/// The Request-URI of a branch to `target`, if it differs from the request's: the
/// strict-router fix (16.4), then the rule's manipulation, then the destination's
/// `rewrite_ruri_host` (the gateway's address as host:port).
fn branch_ruri(
    req: &Message,
    strict_ruri: Option<&Bytes>,
    manipulation: Option<&Manipulation>,
    target: &Target,
) -> Option<Bytes> {
    let mut ruri = strict_ruri.cloned();
    if let Some(m) = manipulation {
        let base = ruri.as_deref().unwrap_or(req.request_uri_bytes());
        if let Some(r) = m.rewrite_ruri(base) {
            ruri = Some(Bytes::from(r));
        }
    }
    if target.rewrite_ruri_host {
        let base = ruri.as_deref().unwrap_or(req.request_uri_bytes());
        if let Some(r) = rewrite_host(base, target.addr) {
            ruri = Some(r);
        }
    }
    ruri
}

/// The Request-URI with its host:port replaced by `addr`.
fn rewrite_host(ruri: &[u8], addr: SocketAddr) -> Option<Bytes> {
    let u = Uri::parse(ruri).ok()?;
    if !matches!(u.scheme, Scheme::Sip | Scheme::Sips) {
        return None;
    }
    let scheme_end = ruri.iter().position(|&c| c == b':')? + 1;
    let mut s = Vec::with_capacity(ruri.len() + 24);
    s.extend_from_slice(&ruri[..scheme_end]);
    if let Some(user) = u.user {
        s.extend_from_slice(user);
        if let Some(p) = u.password {
            s.push(b':');
            s.extend_from_slice(p);
        }
        s.push(b'@');
    }
    s.extend_from_slice(addr.to_string().as_bytes());
    s.extend_from_slice(u.params.as_bytes());
    Some(Bytes::from(s))
}
