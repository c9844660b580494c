//! SIP over UDP (RFC 3261 section 18.1.1/18.2.1): one socket per listener.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, trace, warn};

use crate::{context, Event, Incoming, Inner, Outgoing, Transport};

/// Largest UDP payload there is (65535 minus the IPv6 UDP header; IPv4's limit is lower).
const MAX_DATAGRAM: usize = 65527;

/// Create and bind a UDP socket with socket2: SO_REUSEADDR, IPV6_V6ONLY for IPv6 (so that
/// `[::]` and `0.0.0.0` can both be bound), and the receive buffer if configured.
pub(crate) fn bind(
    addr: SocketAddr,
    recv_buffer: Option<usize>,
) -> io::Result<std::net::UdpSocket> {
    let what = format!("cannot bind udp {addr}");
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| context(e, &what))?;
    socket
        .set_reuse_address(true)
        .map_err(|e| context(e, &what))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(|e| context(e, &what))?;
    }
    if let Some(size) = recv_buffer {
        socket
            .set_recv_buffer_size(size)
            .map_err(|e| context(e, format!("cannot set SO_RCVBUF={size} on udp {addr}")))?;
        match socket.recv_buffer_size() {
            Ok(got) if got < size => warn!(
                %addr,
                requested = size,
                got,
                "UDP receive buffer is smaller than configured (raise net.core.rmem_max)"
            ),
            _ => {}
        }
    }
    socket
        .set_nonblocking(true)
        .map_err(|e| context(e, &what))?;
    socket.bind(&addr.into()).map_err(|e| context(e, &what))?;
    Ok(socket.into())
}

/// A bound UDP listener socket and its overflow sender.
pub(crate) struct Endpoint {
    pub(crate) local: SocketAddr,
    socket: Arc<UdpSocket>,
    /// Messages that met a full socket buffer, for `send_loop`.
    overflow: mpsc::Sender<Outgoing>,
    /// Messages in `overflow` not yet sent. While non-zero, new sends queue behind them so
    /// that datagrams leave in the order they were handed over.
    queued: AtomicUsize,
}

impl Endpoint {
    /// Register the socket with tokio. Must run inside the runtime.
    pub(crate) fn new(
        socket: std::net::UdpSocket,
        queue_capacity: usize,
    ) -> io::Result<(Endpoint, mpsc::Receiver<Outgoing>)> {
        let socket = UdpSocket::from_std(socket)?;
        let local = socket.local_addr()?;
        let (overflow, queue) = mpsc::channel(queue_capacity);
        Ok((
            Endpoint {
                local,
                socket: Arc::new(socket),
                overflow,
                queued: AtomicUsize::new(0),
            },
            queue,
        ))
    }
}

impl Inner {
    pub(crate) fn send_udp(&self, out: Outgoing) {
        let Some(ep) = self
            .udp
            .iter()
            .find(|ep| ep.local.is_ipv4() == out.dest.is_ipv4())
        else {
            let family = if out.dest.is_ipv4() { "IPv4" } else { "IPv6" };
            self.fail_now(&out, format!("no UDP listener for {family}"));
            return;
        };
        if ep.queued.load(Ordering::Acquire) == 0 {
            match ep.socket.try_send_to(&out.data, out.dest) {
                Ok(_) => {
                    debug!(local = %ep.local, dest = %out.dest, len = out.data.len(), token = out.token, "udp sent");
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    self.fail_now(&out, format!("udp send from {}: {e}", ep.local));
                    return;
                }
            }
        }
        ep.queued.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = ep.overflow.try_send(out) {
            ep.queued.fetch_sub(1, Ordering::AcqRel);
            let out = match e {
                mpsc::error::TrySendError::Full(out) | mpsc::error::TrySendError::Closed(out) => {
                    out
                }
            };
            self.fail_now(&out, format!("udp send queue of {} is full", ep.local));
        }
    }
}

/// Sends the messages that did not fit into the socket buffer, waiting for it to drain.
pub(crate) async fn send_loop(
    inner: Arc<Inner>,
    index: usize,
    mut queue: mpsc::Receiver<Outgoing>,
) {
    let ep = &inner.udp[index];
    loop {
        let out = tokio::select! {
            biased;
            _ = inner.shutdown.closed() => break,
            out = queue.recv() => match out {
                Some(out) => out,
                None => break,
            },
        };
        let result = tokio::select! {
            biased;
            _ = inner.shutdown.closed() => Err(io::Error::other("transport is shut down")),
            r = ep.socket.send_to(&out.data, out.dest) => r,
        };
        ep.queued.fetch_sub(1, Ordering::AcqRel);
        match result {
            Ok(_) => {
                debug!(local = %ep.local, dest = %out.dest, len = out.data.len(), token = out.token, "udp sent (queued)")
            }
            Err(e) => {
                inner
                    .fail(&out, format!("udp send from {}: {e}", ep.local))
                    .await
            }
        }
    }
    queue.close();
    while let Ok(out) = queue.try_recv() {
        inner.emit_now(Inner::send_failed(&out, "transport is shut down".into()));
    }
}

/// Receives datagrams on one socket until shutdown.
///
/// Each datagram is copied into its own `Bytes` (one allocation per message). A later
/// optimisation can receive in batches with recvmmsg (quinn-udp) into a slab and hand out
/// slices, and read IP_PKTINFO for the real local address of wildcard sockets.
pub(crate) async fn recv_loop(inner: Arc<Inner>, index: usize) {
    let ep = &inner.udp[index];
    // One byte more than the limit, so that a larger datagram shows as too large rather than
    // being silently truncated to the limit.
    let mut buf = vec![0u8; (inner.max_message_size + 1).min(MAX_DATAGRAM + 1)];
    loop {
        let result = tokio::select! {
            biased;
            _ = inner.shutdown.closed() => break,
            r = ep.socket.recv_from(&mut buf) => r,
        };
        let (len, source) = match result {
            Ok(r) => r,
            Err(e) => {
                // Errors here are transient (e.g. ICMP-reported ones); do not spin on them.
                warn!(local = %ep.local, "udp receive error: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if len > inner.max_message_size {
            warn!(local = %ep.local, %source, len, limit = inner.max_message_size, "udp datagram too large, dropped");
            continue;
        }
        let datagram = &buf[..len];
        if datagram.iter().all(|&b| b == b'\r' || b == b'\n') {
            // Empty datagrams and CRLF NAT keep-alives need no answer on UDP.
            trace!(local = %ep.local, %source, len, "udp keep-alive ignored");
            continue;
        }
        debug!(local = %ep.local, %source, len, "udp received");
        inner
            .emit(Event::Message(Incoming {
                data: Bytes::copy_from_slice(datagram),
                source,
                local: ep.local,
                transport: Transport::Udp,
                conn: None,
            }))
            .await;
    }
    info!(local = %ep.local, "udp receiver stopped");
}
