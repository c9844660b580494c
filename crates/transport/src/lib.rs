//! cairn-transport: the SIP transport layer (RFC 3261 section 18) for UDP and TCP, on tokio.
//!
//! A thin I/O shell that knows nothing about transactions. [`Transports::bind`] opens the
//! configured listeners and returns a cheap, cloneable handle plus one channel of [`Event`]s:
//! every message received on any socket or connection, every send that failed, and every
//! TCP connection that closed. [`Transports::send`] never blocks and never awaits: it is meant
//! to be called from the proxy's single driver task.
//!
//! * UDP: one socket per listener, a receive task per socket; a datagram is one message.
//!   Sends go straight out with `try_send_to`, or through a small per-socket sender task
//!   when the socket buffer is full.
//! * TCP: an accept task per listener; per connection a reader task (stream framing, see
//!   [`framing`]) and a writer task fed by a queue. Responses are sent back on the
//!   connection their request came on (RFC 3261 section 18.2.2); a send to an address with
//!   no connection reuses any connection to that address, inbound or outbound, or opens one.
//!
//! Call [`Transports::shutdown`] to stop: the tasks hold the shared state, so dropping the
//! handles alone does not stop them.
//!
//! ```
//! use cairn_transport::{Config, Event, Listener, Outgoing, Transport, Transports};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let config = Config {
//!     listeners: vec![Listener { transport: Transport::Udp, addr: "127.0.0.1:0".parse().unwrap() }],
//!     ..Config::default()
//! };
//! let (transports, mut events) = Transports::bind(config).await?;
//! let me = transports.listeners()[0].addr;
//! transports.send(Outgoing {
//!     dest: me,
//!     transport: Transport::Udp,
//!     conn: None,
//!     data: "OPTIONS sip:me SIP/2.0\r\nContent-Length: 0\r\n\r\n".into(),
//!     token: 1,
//! });
//! match events.recv().await {
//!     Some(Event::Message(m)) => assert_eq!(m.source, me),
//!     other => panic!("{other:?}"),
//! }
//! transports.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod framing;
mod tcp;
mod udp;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::warn;

pub use cairn_sip::Transport;
pub use framing::{Frame, Framer, FramingError};

/// A socket to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Listener {
    /// [`Transport::Udp`] or [`Transport::Tcp`].
    pub transport: Transport,
    /// The address to bind. Port 0 picks a free port; [`Transports::listeners`] tells which.
    pub addr: SocketAddr,
}

/// Transport configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listeners: Vec<Listener>,
    /// Largest message accepted, in bytes: UDP datagrams above it are dropped, TCP streams
    /// that announce a larger message are closed. Default 65535.
    pub max_message_size: usize,
    /// How long an outbound TCP connect may take. Default 10 s.
    pub tcp_connect_timeout: Duration,
    /// A TCP connection with no traffic either way for this long is closed.
    /// `Duration::ZERO` disables the check. Default 300 s.
    pub tcp_idle_timeout: Duration,
    /// SO_RCVBUF for UDP sockets; `None` keeps the system default.
    pub udp_recv_buffer: Option<usize>,
    /// Capacity of the event channel, and also of each per-connection write queue and
    /// each per-socket UDP overflow queue. Default 4096.
    pub channel_capacity: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listeners: Vec::new(),
            max_message_size: 65535,
            tcp_connect_timeout: Duration::from_secs(10),
            tcp_idle_timeout: Duration::from_secs(300),
            udp_recv_buffer: None,
            channel_capacity: 4096,
        }
    }
}

/// Identifies one TCP connection for its lifetime. Never reused within a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    /// The number behind the id, for logs and metrics.
    /// The id a connection was given (as returned by [`ConnId::as_u64`]).
    pub fn from_u64(id: u64) -> ConnId {
        ConnId(id)
    }

    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Exactly one message (for UDP: the whole datagram).
    pub data: Bytes,
    /// The peer's address.
    pub source: SocketAddr,
    /// The local address it arrived on. For a UDP socket bound to a wildcard address this is
    /// the wildcard (the real destination would need IP_PKTINFO).
    pub local: SocketAddr,
    pub transport: Transport,
    /// The TCP connection it came on.
    pub conn: Option<ConnId>,
}

/// What the transports report to the driver.
#[derive(Debug, Clone)]
pub enum Event {
    Message(Incoming),
    /// A message handed to [`Transports::send`] could not be sent.
    SendFailed {
        token: u64,
        dest: SocketAddr,
        transport: Transport,
        error: String,
    },
    /// A TCP connection closed (by either side, on error, idle timeout or shutdown). Sent once
    /// for every connection that was established; an outbound connect that fails reports
    /// only `SendFailed` for its queued messages.
    Closed {
        conn: ConnId,
        remote: SocketAddr,
    },
    /// A TCP stream could not be framed; the connection is closed right after this event.
    FramingError {
        source: SocketAddr,
        conn: ConnId,
        error: FramingError,
    },
}

/// One message to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub dest: SocketAddr,
    pub transport: Transport,
    /// For TCP, send on this connection if it is still open (responses go back on the
    /// request's connection, RFC 3261 section 18.2.2); otherwise fall back to `dest`.
    pub conn: Option<ConnId>,
    pub data: Bytes,
    /// Echoed in [`Event::SendFailed`].
    pub token: u64,
}

/// Handle to the running transports. Cheap to clone.
#[derive(Clone)]
pub struct Transports {
    inner: Arc<Inner>,
}

impl fmt::Debug for Transports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transports")
            .field("listeners", &self.inner.listeners)
            .finish_non_exhaustive()
    }
}

impl Transports {
    /// Bind every listener and start the receive and accept tasks. Must be called within a
    /// tokio runtime. An error names the listener that failed; nothing is left running then.
    pub async fn bind(config: Config) -> io::Result<(Transports, mpsc::Receiver<Event>)> {
        if config.max_message_size == 0 || config.channel_capacity == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "max_message_size and channel_capacity must be positive",
            ));
        }
        let mut listeners = Vec::with_capacity(config.listeners.len());
        let mut udp_sockets = Vec::new();
        let mut tcp_listeners = Vec::new();
        for l in &config.listeners {
            let bound = match l.transport {
                Transport::Udp => {
                    let socket = udp::bind(l.addr, config.udp_recv_buffer)?;
                    let addr = socket.local_addr()?;
                    udp_sockets.push(socket);
                    addr
                }
                Transport::Tcp => {
                    let listener = tcp::bind(l.addr)?;
                    let addr = listener.local_addr()?;
                    tcp_listeners.push(listener);
                    addr
                }
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!(
                            "cannot listen on {other} {}: transport not supported",
                            l.addr
                        ),
                    ))
                }
            };
            listeners.push(Listener {
                transport: l.transport,
                addr: bound,
            });
        }

        let (events, events_rx) = mpsc::channel(config.channel_capacity);
        let (alive, alive_rx) = mpsc::channel(1);
        let mut udp_endpoints = Vec::new();
        let mut udp_queues = Vec::new();
        for socket in udp_sockets {
            let (endpoint, queue) = udp::Endpoint::new(socket, config.channel_capacity)?;
            udp_endpoints.push(endpoint);
            udp_queues.push(queue);
        }
        let inner = Arc::new(Inner {
            tcp_locals: listeners
                .iter()
                .filter(|l| l.transport == Transport::Tcp)
                .map(|l| l.addr)
                .collect(),
            listeners,
            max_message_size: config.max_message_size,
            tcp_connect_timeout: config.tcp_connect_timeout,
            tcp_idle_timeout: config.tcp_idle_timeout,
            queue_capacity: config.channel_capacity,
            udp: udp_endpoints,
            conns: Mutex::new(tcp::ConnTable::default()),
            next_conn: AtomicU64::new(1),
            events,
            shutdown: Closer::new(),
            alive: Mutex::new(Some(alive)),
            alive_rx: Mutex::new(Some(alive_rx)),
            handle: tokio::runtime::Handle::current(),
            epoch: Instant::now(),
        });
        for (index, queue) in udp_queues.into_iter().enumerate() {
            inner.spawn(udp::recv_loop(inner.clone(), index));
            inner.spawn(udp::send_loop(inner.clone(), index, queue));
        }
        for listener in tcp_listeners {
            inner.spawn(tcp::accept_loop(inner.clone(), listener));
        }
        for l in &inner.listeners {
            tracing::info!(transport = %l.transport, addr = %l.addr, "listening");
        }
        Ok((Transports { inner }, events_rx))
    }

    /// Send one message. Never blocks and never awaits; any failure, now or later, is
    /// reported as [`Event::SendFailed`] with the message's token.
    pub fn send(&self, out: Outgoing) {
        let inner = &self.inner;
        if inner.shutdown.is_closed() {
            inner.fail_now(&out, "transport is shut down");
            return;
        }
        match out.transport {
            Transport::Udp => inner.send_udp(out),
            Transport::Tcp => inner.send_tcp(out),
            other => inner.fail_now(&out, format!("transport {other} is not supported")),
        }
    }

    /// The listener address to advertise (Via, Record-Route) when sending to `family_of`
    /// with `transport`: the first listener of that transport and address family.
    pub fn local_addr(&self, transport: Transport, family_of: SocketAddr) -> Option<SocketAddr> {
        self.inner
            .listeners
            .iter()
            .find(|l| l.transport == transport && l.addr.is_ipv4() == family_of.is_ipv4())
            .map(|l| l.addr)
    }

    /// The listeners as bound (with the ports chosen for port 0).
    pub fn listeners(&self) -> &[Listener] {
        &self.inner.listeners
    }

    /// Close a TCP connection. Messages still queued on it fail with [`Event::SendFailed`],
    /// and [`Event::Closed`] follows (for a connection still connecting, only the failures).
    /// Returns false if the connection is unknown (already closed).
    pub fn close(&self, conn: ConnId) -> bool {
        self.inner.request_close(conn)
    }

    /// The number of open (or connecting) TCP connections.
    pub fn connection_count(&self) -> usize {
        self.inner.conns().len()
    }

    /// Stop receiving and accepting, close every TCP connection and wait for the transport
    /// tasks to end. Messages still queued fail with [`Event::SendFailed`] as far as the
    /// event channel has room. Later sends fail at once.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.shutdown.close();
        for closer in inner.conns().closers() {
            closer.close();
        }
        drop(lock(&inner.alive).take());
        let waiter = lock(&inner.alive_rx).take();
        if let Some(mut rx) = waiter {
            // Resolves once every task has dropped its guard.
            let _ = rx.recv().await;
        }
        tracing::info!("transports shut down");
    }
}

/// State shared by the handle and every task.
pub(crate) struct Inner {
    listeners: Vec<Listener>,
    tcp_locals: Vec<SocketAddr>,
    max_message_size: usize,
    tcp_connect_timeout: Duration,
    tcp_idle_timeout: Duration,
    queue_capacity: usize,
    udp: Vec<udp::Endpoint>,
    conns: Mutex<tcp::ConnTable>,
    next_conn: AtomicU64,
    events: mpsc::Sender<Event>,
    shutdown: Closer,
    /// Every task holds a clone; `shutdown` waits until all are dropped.
    alive: Mutex<Option<mpsc::Sender<()>>>,
    alive_rx: Mutex<Option<mpsc::Receiver<()>>>,
    handle: tokio::runtime::Handle,
    /// Base of the millisecond activity stamps of connections.
    epoch: Instant,
}

impl Inner {
    /// Spawn a transport task that `shutdown` waits for.
    fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let guard = lock(&self.alive).clone();
        self.handle.spawn(async move {
            task.await;
            drop(guard);
        });
    }

    fn conns(&self) -> MutexGuard<'_, tcp::ConnTable> {
        lock(&self.conns)
    }

    fn new_conn_id(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }

    /// Milliseconds since `epoch`, for activity stamps.
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Report an event from a task. Waits for room in the channel (back-pressure on the
    /// receive paths) unless the transports are shutting down.
    async fn emit(&self, event: Event) {
        tokio::select! {
            biased;
            _ = self.events.send(event) => {}
            _ = self.shutdown.closed() => {}
        }
    }

    /// Report an event without waiting: if the channel is full, a task delivers it later.
    fn emit_now(&self, event: Event) {
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                let events = self.events.clone();
                self.handle.spawn(async move {
                    let _ = events.send(event).await;
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn send_failed(out: &Outgoing, error: String) -> Event {
        Event::SendFailed {
            token: out.token,
            dest: out.dest,
            transport: out.transport,
            error,
        }
    }

    /// Report a failed send from `send` itself.
    fn fail_now(&self, out: &Outgoing, error: impl Into<String>) {
        let error = error.into();
        warn!(dest = %out.dest, transport = %out.transport, token = out.token, "send failed: {error}");
        self.emit_now(Self::send_failed(out, error));
    }

    /// Report a failed send from a task.
    async fn fail(&self, out: &Outgoing, error: impl Into<String>) {
        let error = error.into();
        warn!(dest = %out.dest, transport = %out.transport, token = out.token, "send failed: {error}");
        self.emit(Self::send_failed(out, error)).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The protected state stays consistent even if a holder panicked.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A one-way "closed" flag that tasks can wait on.
#[derive(Clone)]
pub(crate) struct Closer(Arc<watch::Sender<bool>>);

impl Closer {
    fn new() -> Closer {
        Closer(Arc::new(watch::Sender::new(false)))
    }

    fn close(&self) {
        self.0.send_replace(true);
    }

    fn is_closed(&self) -> bool {
        *self.0.borrow()
    }

    async fn closed(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so this only returns once closed.
        let _ = rx.wait_for(|closed| *closed).await;
    }
}

/// Map an I/O error to one that names what failed.
fn context(e: io::Error, what: impl fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}
