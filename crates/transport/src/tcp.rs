//! SIP over TCP (RFC 3261 section 18, 18.3): listeners, connections and the connection table.
//!
//! Each connection has a reader task (framing, keep-alive answers, idle timeout) and a writer
//! task fed by a bounded queue. The reader owns the connection's lifetime: when it ends, for
//! whatever reason, it removes the connection from the table, tells the writer to stop and
//! reports [`Event::Closed`]. The writer stops the reader through the same [`Closer`] when a
//! write fails. An outbound connection's writer task connects first; messages queued while it
//! connects go out once connected, or fail one by one if the connect fails.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, trace, warn};

use crate::framing::{Frame, Framer};
use crate::{context, Closer, ConnId, Event, Incoming, Inner, Outgoing, Transport};

/// How much room the reader makes in its buffer before each read.
const READ_CHUNK: usize = 8 * 1024;
const LISTEN_BACKLOG: i32 = 1024;
static PONG: &[u8] = b"\r\n";

/// Create, bind and listen with socket2: SO_REUSEADDR, IPV6_V6ONLY for IPv6.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let what = format!("cannot bind tcp {addr}");
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| context(e, &what))?;
    socket
        .set_reuse_address(true)
        .map_err(|e| context(e, &what))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(|e| context(e, &what))?;
    }
    socket
        .set_nonblocking(true)
        .map_err(|e| context(e, &what))?;
    socket.bind(&addr.into()).map_err(|e| context(e, &what))?;
    socket
        .listen(LISTEN_BACKLOG)
        .map_err(|e| context(e, format!("cannot listen on tcp {addr}")))?;
    TcpListener::from_std(socket.into()).map_err(|e| context(e, &what))
}

/// What a connection's writer task is asked to write.
pub(crate) enum WriteCmd {
    Send(Outgoing),
    /// Bytes of our own, such as a keep-alive pong; no failure report.
    Raw(Bytes),
}

/// State shared by a connection's reader and writer.
pub(crate) struct ConnShared {
    closer: Closer,
    /// `Inner::now_ms` at the last read or write.
    last_activity: AtomicU64,
}

impl ConnShared {
    fn touch(&self, inner: &Inner) {
        self.last_activity.store(inner.now_ms(), Ordering::Relaxed);
    }
}

struct NewConn {
    id: ConnId,
    shared: Arc<ConnShared>,
    tx: mpsc::Sender<WriteCmd>,
    rx: mpsc::Receiver<WriteCmd>,
}

pub(crate) struct ConnEntry {
    remote: SocketAddr,
    tx: mpsc::Sender<WriteCmd>,
    shared: Arc<ConnShared>,
}

/// All TCP connections, established or connecting.
#[derive(Default)]
pub(crate) struct ConnTable {
    by_id: HashMap<ConnId, ConnEntry>,
    /// The most recent connection to each remote address. If two connections share a remote
    /// address (rare: several local listeners), only the newest is found by address.
    by_remote: HashMap<SocketAddr, ConnId>,
}

impl ConnTable {
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn closers(&self) -> Vec<Closer> {
        self.by_id
            .values()
            .map(|e| e.shared.closer.clone())
            .collect()
    }

    fn insert(&mut self, id: ConnId, entry: ConnEntry) {
        self.by_remote.insert(entry.remote, id);
        self.by_id.insert(id, entry);
    }

    fn remove(&mut self, id: ConnId) -> Option<ConnEntry> {
        let entry = self.by_id.remove(&id)?;
        if self.by_remote.get(&entry.remote) == Some(&id) {
            self.by_remote.remove(&entry.remote);
        }
        Some(entry)
    }
}

impl Inner {
    /// Add a connection to the table. Returns its id, its shared state, and both ends of
    /// its write queue.
    fn new_conn(&self, conns: &mut ConnTable, remote: SocketAddr) -> NewConn {
        let id = self.new_conn_id();
        let shared = Arc::new(ConnShared {
            closer: Closer::new(),
            last_activity: AtomicU64::new(self.now_ms()),
        });
        let (tx, rx) = mpsc::channel(self.queue_capacity);
        conns.insert(
            id,
            ConnEntry {
                remote,
                tx: tx.clone(),
                shared: shared.clone(),
            },
        );
        NewConn { id, shared, tx, rx }
    }

    /// Ask a connection to close; its reader then removes it and reports `Closed`.
    /// Returns false if there is no such connection.
    pub(crate) fn request_close(&self, id: ConnId) -> bool {
        match self.conns().by_id.get(&id) {
            Some(entry) => {
                entry.shared.closer.close();
                true
            }
            None => false,
        }
    }

    /// Remove a connection from the table and stop its tasks.
    fn close_conn(&self, id: ConnId, shared: &ConnShared) {
        self.conns().remove(id);
        shared.closer.close();
    }

    pub(crate) fn send_tcp(self: &Arc<Self>, out: Outgoing) {
        let mut conns = self.conns();
        let id = out
            .conn
            .filter(|id| conns.by_id.contains_key(id))
            .or_else(|| conns.by_remote.get(&out.dest).copied());
        if let Some(id) = id {
            let entry = &conns.by_id[&id];
            if entry.remote != out.dest {
                trace!(%id, remote = %entry.remote, dest = %out.dest, "sending on the requested connection");
            }
            let result = entry.tx.try_send(WriteCmd::Send(out));
            drop(conns);
            match result {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(WriteCmd::Send(out))) => {
                    self.fail_now(&out, format!("write queue of {id} is full"))
                }
                Err(mpsc::error::TrySendError::Closed(WriteCmd::Send(out))) => {
                    self.fail_now(&out, format!("{id} is closed"))
                }
                Err(_) => unreachable!("a Send command comes back as sent"),
            }
            return;
        }
        // No connection: open one from the address of a TCP listener of the same family.
        let Some(from) = self
            .tcp_locals
            .iter()
            .find(|a| a.is_ipv4() == out.dest.is_ipv4())
            .map(|a| a.ip())
        else {
            drop(conns);
            let family = if out.dest.is_ipv4() { "IPv4" } else { "IPv6" };
            self.fail_now(&out, format!("no TCP listener for {family}"));
            return;
        };
        let dest = out.dest;
        let NewConn { id, shared, tx, rx } = self.new_conn(&mut conns, dest);
        drop(conns);
        // The queue is new and at least one message long: this cannot fail.
        let _ = tx.try_send(WriteCmd::Send(out));
        debug!(%id, %dest, "tcp connecting");
        self.spawn(connect_and_write(
            self.clone(),
            id,
            dest,
            from,
            shared,
            rx,
            tx,
        ));
    }

    /// Start the reader task of an accepted or connected stream.
    fn start_reader(
        self: &Arc<Self>,
        id: ConnId,
        remote: SocketAddr,
        local: SocketAddr,
        read: OwnedReadHalf,
        shared: Arc<ConnShared>,
        pong: mpsc::Sender<WriteCmd>,
    ) {
        self.spawn(read_loop(
            self.clone(),
            id,
            remote,
            local,
            read,
            shared,
            pong,
        ));
    }
}

/// Accepts connections on one listener until shutdown.
pub(crate) async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    let local = listener.local_addr().ok();
    loop {
        let result = tokio::select! {
            biased;
            _ = inner.shutdown.closed() => break,
            r = listener.accept() => r,
        };
        match result {
            Ok((stream, remote)) => accept(&inner, stream, remote),
            Err(e) => {
                // Typically EMFILE: back off rather than spin.
                warn!(?local, "tcp accept failed: {e}");
                tokio::select! {
                    _ = inner.shutdown.closed() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
    info!(?local, "tcp listener stopped");
}

fn accept(inner: &Arc<Inner>, stream: TcpStream, remote: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(e) => {
            warn!(%remote, "accepted tcp connection has no local address: {e}");
            return;
        }
    };
    let NewConn { id, shared, tx, rx } = inner.new_conn(&mut inner.conns(), remote);
    info!(%id, %remote, %local, "tcp connection accepted");
    let (read, write) = stream.into_split();
    inner.start_reader(id, remote, local, read, shared.clone(), tx);
    inner.spawn(write_loop(inner.clone(), id, shared, rx, write));
}

async fn connect(dest: SocketAddr, from: IpAddr) -> io::Result<TcpStream> {
    let socket = if dest.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if !from.is_unspecified() {
        // Leave from the listener's address, so that the peer sees the address we advertise.
        socket.bind(SocketAddr::new(from, 0))?;
    }
    socket.connect(dest).await
}

/// An outbound connection's writer: connect, then write like any other connection.
async fn connect_and_write(
    inner: Arc<Inner>,
    id: ConnId,
    dest: SocketAddr,
    from: IpAddr,
    shared: Arc<ConnShared>,
    mut rx: mpsc::Receiver<WriteCmd>,
    pong: mpsc::Sender<WriteCmd>,
) {
    let timeout = inner.tcp_connect_timeout;
    let result = tokio::select! {
        biased;
        _ = inner.shutdown.closed() => Err(io::Error::other("transport is shut down")),
        _ = shared.closer.closed() => Err(io::Error::other("closed before it was connected")),
        r = tokio::time::timeout(timeout, connect(dest, from)) => match r {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, format!("timed out after {timeout:?}"))),
        },
    };
    let stream = match result {
        Ok(stream) => stream,
        Err(e) => {
            drop(pong);
            inner.close_conn(id, &shared);
            warn!(%id, %dest, "tcp connect failed: {e}");
            let error = format!("tcp connect to {dest} failed: {e}");
            rx.close();
            while let Some(cmd) = rx.recv().await {
                if let WriteCmd::Send(out) = cmd {
                    inner.emit(Inner::send_failed(&out, error.clone())).await;
                }
            }
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let local = stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::new(from, 0));
    info!(%id, remote = %dest, %local, "tcp connection established");
    shared.touch(&inner);
    let (read, write) = stream.into_split();
    inner.start_reader(id, dest, local, read, shared.clone(), pong);
    write_loop(inner, id, shared, rx, write).await;
}

/// Writes queued messages until the connection closes; then fails whatever is left.
async fn write_loop(
    inner: Arc<Inner>,
    id: ConnId,
    shared: Arc<ConnShared>,
    mut rx: mpsc::Receiver<WriteCmd>,
    mut write: OwnedWriteHalf,
) {
    // A later optimisation: drain several queued messages and write them with one
    // write_vectored call.
    loop {
        let cmd = tokio::select! {
            biased;
            _ = shared.closer.closed() => break,
            _ = inner.shutdown.closed() => break,
            cmd = rx.recv() => match cmd {
                Some(cmd) => cmd,
                None => break,
            },
        };
        let (data, out) = match cmd {
            WriteCmd::Send(out) => (out.data.clone(), Some(out)),
            WriteCmd::Raw(data) => (data, None),
        };
        let result = tokio::select! {
            biased;
            _ = shared.closer.closed() => Err(io::Error::other("connection closed")),
            _ = inner.shutdown.closed() => Err(io::Error::other("transport is shut down")),
            r = write.write_all(&data) => r,
        };
        match (result, out) {
            (Ok(()), out) => {
                shared.touch(&inner);
                match out {
                    Some(out) => {
                        debug!(%id, dest = %out.dest, len = data.len(), token = out.token, "tcp sent")
                    }
                    None => trace!(%id, len = data.len(), "tcp sent keep-alive"),
                }
            }
            (Err(e), out) => {
                warn!(%id, "tcp write failed: {e}");
                shared.closer.close();
                if let Some(out) = out {
                    inner.fail(&out, format!("tcp write on {id}: {e}")).await;
                }
                break;
            }
        }
    }
    rx.close();
    while let Some(cmd) = rx.recv().await {
        if let WriteCmd::Send(out) = cmd {
            inner
                .fail(&out, format!("{id} closed before the message was sent"))
                .await;
        }
    }
    // Dropping the write half sends FIN.
}

/// Reads and frames one connection until it closes, then reports `Closed`.
async fn read_loop(
    inner: Arc<Inner>,
    id: ConnId,
    remote: SocketAddr,
    local: SocketAddr,
    mut read: OwnedReadHalf,
    shared: Arc<ConnShared>,
    pong: mpsc::Sender<WriteCmd>,
) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut framer = Framer::new(inner.max_message_size);
    let idle = inner.tcp_idle_timeout;
    let idle_check = tokio::time::sleep(idle);
    tokio::pin!(idle_check);

    let reason: String = 'conn: loop {
        loop {
            match framer.next(&buf) {
                Ok(None) => break,
                Ok(Some(Frame::Message(len))) => {
                    // Zero-copy: the message shares the read buffer's allocation.
                    let data = buf.split_to(len).freeze();
                    debug!(%id, %remote, len, "tcp received");
                    inner
                        .emit(Event::Message(Incoming {
                            data,
                            source: remote,
                            local,
                            transport: Transport::Tcp,
                            conn: Some(id),
                        }))
                        .await;
                }
                Ok(Some(Frame::KeepAlive(len))) => {
                    buf.advance(len);
                    trace!(%id, %remote, "keep-alive ping, answering");
                    let _ = pong.try_send(WriteCmd::Raw(Bytes::from_static(PONG)));
                }
                Ok(Some(Frame::Pong(len))) => {
                    buf.advance(len);
                    trace!(%id, %remote, "keep-alive pong");
                }
                Err(error) => {
                    warn!(%id, %remote, "tcp framing error: {error}");
                    let reason = format!("framing error: {error}");
                    inner
                        .emit(Event::FramingError {
                            source: remote,
                            conn: id,
                            error,
                        })
                        .await;
                    break 'conn reason;
                }
            }
        }
        buf.reserve(READ_CHUNK);
        tokio::select! {
            biased;
            _ = inner.shutdown.closed() => break "shutdown".into(),
            _ = shared.closer.closed() => break "closed locally".into(),
            r = read.read_buf(&mut buf) => match r {
                Ok(0) if buf.is_empty() => break "closed by peer".into(),
                Ok(0) => break format!("closed by peer inside a message ({} bytes pending)", buf.len()),
                Ok(_) => shared.touch(&inner),
                Err(e) => break format!("read error: {e}"),
            },
            _ = &mut idle_check, if !idle.is_zero() => {
                let last = shared.last_activity.load(Ordering::Relaxed);
                let due = inner.epoch + Duration::from_millis(last) + idle;
                if Instant::now() >= due {
                    break format!("idle for {idle:?}");
                }
                idle_check.as_mut().reset(due);
            }
        }
    };
    drop(pong);
    inner.close_conn(id, &shared);
    info!(%id, %remote, "tcp connection closed: {reason}");
    inner.emit(Event::Closed { conn: id, remote }).await;
}
