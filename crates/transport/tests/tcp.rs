//! TCP transport on loopback.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use cairn_transport::{ConnId, Event, FramingError, Incoming, Outgoing, Transport, Transports};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::Receiver;

async fn tcp_transports(bind: &str) -> (Transports, Receiver<Event>, SocketAddr) {
    let (t, rx) = start(config(vec![listener(Transport::Tcp, bind)])).await;
    let addr = t.listeners()[0].addr;
    (t, rx, addr)
}

async fn expect_message(rx: &mut Receiver<Event>) -> Incoming {
    match next_event(rx).await {
        Event::Message(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Read exactly `n` bytes from `stream` within the step limit.
async fn read_exact(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(STEP, stream.read_exact(&mut buf))
        .await
        .expect("data in time")
        .expect("read");
    buf
}

/// Assert the peer closes the stream (EOF or reset), possibly after some bytes.
async fn expect_eof(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(STEP, stream.read(&mut buf))
            .await
            .expect("close in time")
        {
            Ok(0) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

async fn inbound_framing_and_reply(bind: &str) {
    let (transports, mut rx, addr) = tcp_transports(bind).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let client_addr = client.local_addr().unwrap();

    let a = sip("INVITE", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n\r\n");
    let b = sip("ACK", "");
    let c = sip("MESSAGE", "hello\r\n\r\nworld");
    // Two messages in one write.
    client
        .write_all(&[a.clone(), b.clone()].concat())
        .await
        .unwrap();
    // One message in three writes, cut inside the headers and inside the body.
    let cuts = [20, c.len() - 5];
    client.write_all(&c[..cuts[0]]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    client.write_all(&c[cuts[0]..cuts[1]]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    client.write_all(&c[cuts[1]..]).await.unwrap();

    let mut conn = None;
    for expected in [&a, &b, &c] {
        let m = expect_message(&mut rx).await;
        assert_eq!(&m.data[..], &expected[..]);
        assert_eq!(m.source, client_addr);
        assert_eq!(m.local, addr);
        assert_eq!(m.transport, Transport::Tcp);
        assert!(m.conn.is_some());
        if let Some(c) = conn {
            assert_eq!(m.conn, Some(c), "same connection");
        }
        conn = m.conn;
    }

    // A reply on the request's connection.
    let reply = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    transports.send(Outgoing {
        conn,
        ..outgoing(Transport::Tcp, client_addr, &reply[..], 5)
    });
    assert_eq!(read_exact(&mut client, reply.len()).await, reply);
    assert_eq!(transports.connection_count(), 1);

    // The client goes away: Closed for that connection.
    drop(client);
    match next_event(&mut rx).await {
        Event::Closed { conn: c, remote } => {
            assert_eq!(Some(c), conn);
            assert_eq!(remote, client_addr);
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    assert_eq!(transports.connection_count(), 0);
    transports.shutdown().await;
}

#[tokio::test]
async fn tcp_inbound_framing_and_reply_v4() {
    bounded(inbound_framing_and_reply("127.0.0.1:0")).await;
}

#[tokio::test]
async fn tcp_inbound_framing_and_reply_v6() {
    if !ipv6_loopback() {
        return;
    }
    bounded(inbound_framing_and_reply("[::1]:0")).await;
}

#[tokio::test]
async fn tcp_send_without_connection_connects_and_reuses() {
    bounded(async {
        let (transports, mut rx, _) = tcp_transports("127.0.0.1:0").await;
        let ua = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ua_addr = ua.local_addr().unwrap();

        let first = sip("OPTIONS", "");
        let second = sip("MESSAGE", "second");
        // Both are queued while the connection is being made.
        transports.send(outgoing(Transport::Tcp, ua_addr, first.clone(), 1));
        transports.send(outgoing(Transport::Tcp, ua_addr, second.clone(), 2));
        let (mut stream, proxy_addr) = tokio::time::timeout(STEP, ua.accept())
            .await
            .expect("connect in time")
            .unwrap();
        assert_eq!(
            proxy_addr.ip(),
            "127.0.0.1".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(
            read_exact(&mut stream, first.len() + second.len()).await,
            [first, second].concat()
        );

        // The UA answers on the same connection; the event names the outbound connection.
        let reply = b"SIP/2.0 200 OK\r\nl: 2\r\n\r\nok";
        stream.write_all(reply).await.unwrap();
        let m = expect_message(&mut rx).await;
        assert_eq!(&m.data[..], &reply[..]);
        assert_eq!(m.source, ua_addr);
        let conn = m.conn.expect("conn id");

        // A further send to the same address reuses the connection: no new accept.
        let third = sip("BYE", "");
        transports.send(outgoing(Transport::Tcp, ua_addr, third.clone(), 3));
        assert_eq!(read_exact(&mut stream, third.len()).await, third);
        assert_eq!(transports.connection_count(), 1);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), ua.accept())
                .await
                .is_err(),
            "no second connection"
        );

        // Shutdown closes the connection and reports it.
        transports.shutdown().await;
        expect_eof(&mut stream).await;
        match next_event(&mut rx).await {
            Event::Closed { conn: c, .. } => assert_eq!(c, conn),
            other => panic!("expected Closed, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn tcp_send_to_closed_port_fails_with_token() {
    bounded(async {
        let (transports, mut rx, _) = tcp_transports("127.0.0.1:0").await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        transports.send(outgoing(Transport::Tcp, closed, &b"one"[..], 41));
        transports.send(outgoing(Transport::Tcp, closed, &b"two"[..], 42));
        let mut tokens = Vec::new();
        for _ in 0..2 {
            match next_event(&mut rx).await {
                Event::SendFailed {
                    token,
                    dest,
                    transport,
                    error,
                } => {
                    assert_eq!(dest, closed);
                    assert_eq!(transport, Transport::Tcp);
                    assert!(error.contains(&closed.to_string()), "{error}");
                    tokens.push(token);
                }
                other => panic!("expected SendFailed, got {other:?}"),
            }
        }
        assert_eq!(tokens, vec![41, 42]);
        assert_eq!(transports.connection_count(), 0);
        // No Closed for a connection that never was.
        no_event(&mut rx, Duration::from_millis(100)).await;
        transports.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn tcp_send_on_unknown_connection_falls_back_to_dest() {
    bounded(async {
        let (transports, mut rx, addr) = tcp_transports("127.0.0.1:0").await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        let client_addr = client.local_addr().unwrap();
        client.write_all(&sip("REGISTER", "")).await.unwrap();
        let m = expect_message(&mut rx).await;
        // A stale ConnId (from an earlier connection) with the right dest still arrives.
        let stale = ConnIdSource::stale(&transports, &mut rx).await;
        assert_ne!(Some(stale), m.conn);
        let reply = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        transports.send(Outgoing {
            conn: Some(stale),
            ..outgoing(Transport::Tcp, client_addr, &reply[..], 9)
        });
        assert_eq!(read_exact(&mut client, reply.len()).await, reply);
        transports.shutdown().await;
    })
    .await;
}

/// Makes a `ConnId` that is no longer open, by opening and closing a connection.
struct ConnIdSource;

impl ConnIdSource {
    async fn stale(transports: &Transports, rx: &mut Receiver<Event>) -> ConnId {
        let addr = transports.listeners()[0].addr;
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(&sip("OPTIONS", "")).await.unwrap();
        let id = expect_message(rx).await.conn.unwrap();
        drop(c);
        match next_event(rx).await {
            Event::Closed { conn, .. } => assert_eq!(conn, id),
            other => panic!("expected Closed, got {other:?}"),
        }
        id
    }
}

#[tokio::test]
async fn tcp_keepalive_ping_gets_pong() {
    bounded(async {
        let (transports, mut rx, addr) = tcp_transports("127.0.0.1:0").await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"\r\n\r\n").await.unwrap();
        assert_eq!(read_exact(&mut client, 2).await, b"\r\n");
        // A ping, a lone CRLF and a message in one write: one pong, one message.
        let msg = sip("OPTIONS", "");
        client
            .write_all(&[&b"\r\n\r\n\r\n"[..], &msg].concat())
            .await
            .unwrap();
        assert_eq!(read_exact(&mut client, 2).await, b"\r\n");
        assert_eq!(&expect_message(&mut rx).await.data[..], &msg[..]);
        no_event(&mut rx, Duration::from_millis(50)).await;
        transports.shutdown().await;
    })
    .await;
}

async fn framing_error_closes(max: usize, input: Vec<u8>, check: fn(&FramingError) -> bool) {
    let mut cfg = config(vec![listener(Transport::Tcp, "127.0.0.1:0")]);
    cfg.max_message_size = max;
    let (transports, mut rx) = start(cfg).await;
    let addr = transports.listeners()[0].addr;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let client_addr = client.local_addr().unwrap();
    // The write may fail if the proxy has already reset the connection.
    let _ = client.write_all(&input).await;
    let conn = match next_event(&mut rx).await {
        Event::FramingError {
            source,
            conn,
            error,
        } => {
            assert_eq!(source, client_addr);
            assert!(check(&error), "unexpected error {error:?}");
            conn
        }
        other => panic!("expected FramingError, got {other:?}"),
    };
    match next_event(&mut rx).await {
        Event::Closed { conn: c, .. } => assert_eq!(c, conn),
        other => panic!("expected Closed, got {other:?}"),
    }
    expect_eof(&mut client).await;
    assert_eq!(transports.connection_count(), 0);
    transports.shutdown().await;
}

#[tokio::test]
async fn tcp_oversize_message_is_a_framing_error() {
    bounded(async {
        // The Content-Length announces more than the limit.
        framing_error_closes(512, sip("MESSAGE", &"x".repeat(600)), |e| {
            matches!(e, FramingError::MessageTooLarge { limit: 512, .. })
        })
        .await;
        // Headers that never end.
        framing_error_closes(512, vec![b'a'; 600], |e| {
            matches!(e, FramingError::HeadersTooLong { limit: 512 })
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn tcp_missing_content_length_is_a_framing_error() {
    bounded(framing_error_closes(
        65535,
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP x\r\n\r\n".to_vec(),
        |e| *e == FramingError::MissingContentLength,
    ))
    .await;
}

#[tokio::test]
async fn tcp_idle_connection_is_closed() {
    bounded(async {
        let mut cfg = config(vec![listener(Transport::Tcp, "127.0.0.1:0")]);
        cfg.tcp_idle_timeout = Duration::from_millis(300);
        let (transports, mut rx) = start(cfg).await;
        let addr = transports.listeners()[0].addr;
        let mut client = TcpStream::connect(addr).await.unwrap();
        // Activity keeps it open past one timeout.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            client.write_all(b"\r\n\r\n").await.unwrap();
            assert_eq!(read_exact(&mut client, 2).await, b"\r\n");
        }
        assert_eq!(transports.connection_count(), 1);
        let started = tokio::time::Instant::now();
        match next_event(&mut rx).await {
            Event::Closed { .. } => {}
            other => panic!("expected Closed, got {other:?}"),
        }
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
            "closed after {waited:?}"
        );
        expect_eof(&mut client).await;
        transports.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn tcp_many_messages_both_ways() {
    bounded(async {
        // The write queue (channel_capacity) must hold the burst of 200 replies.
        let mut cfg = config(vec![listener(Transport::Tcp, "127.0.0.1:0")]);
        cfg.channel_capacity = 256;
        let (transports, mut rx) = start(cfg).await;
        let addr = transports.listeners()[0].addr;
        let mut client = TcpStream::connect(addr).await.unwrap();
        let client_addr = client.local_addr().unwrap();
        let msgs: Vec<Vec<u8>> = (0..200)
            .map(|i| sip("MESSAGE", &format!("message {i}")))
            .collect();
        let all = msgs.concat();
        // Written in odd-sized chunks.
        let writer = {
            let all = all.clone();
            let (_, mut w) = client.split();
            async move {
                for chunk in all.chunks(997) {
                    w.write_all(chunk).await.unwrap();
                }
            }
        };
        writer.await;
        let mut conn = None;
        for expected in &msgs {
            let m = expect_message(&mut rx).await;
            assert_eq!(&m.data[..], &expected[..]);
            conn = m.conn;
        }
        for (i, m) in msgs.iter().enumerate() {
            transports.send(Outgoing {
                conn,
                ..outgoing(Transport::Tcp, client_addr, m.clone(), i as u64)
            });
        }
        assert_eq!(read_exact(&mut client, all.len()).await, all);
        no_event(&mut rx, Duration::from_millis(50)).await;
        transports.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn tcp_full_write_queue_fails_with_token() {
    bounded(async {
        let mut cfg = config(vec![listener(Transport::Tcp, "127.0.0.1:0")]);
        cfg.channel_capacity = 4;
        let (transports, mut rx) = start(cfg).await;
        let addr = transports.listeners()[0].addr;
        let mut client = TcpStream::connect(addr).await.unwrap();
        let client_addr = client.local_addr().unwrap();
        client.write_all(&sip("OPTIONS", "")).await.unwrap();
        let conn = expect_message(&mut rx).await.conn;
        // Sent in one go from this task: the writer cannot drain the queue in between.
        for token in 0..10u64 {
            transports.send(Outgoing {
                conn,
                ..outgoing(Transport::Tcp, client_addr, sip("MESSAGE", "x"), token)
            });
        }
        let mut failed = Vec::new();
        let mut delivered = 0;
        while failed.len() + delivered < 10 {
            match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
                Ok(Some(Event::SendFailed { token, error, .. })) => {
                    assert!(error.contains("full"), "{error}");
                    failed.push(token);
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(_) => {
                    // The rest went out.
                    delivered = 10 - failed.len();
                }
            }
        }
        assert!(!failed.is_empty(), "a queue of 4 cannot take 10 at once");
        assert!(failed.len() <= 6, "at least 4 fit: {failed:?}");
        let one = sip("MESSAGE", "x").len();
        assert_eq!(
            read_exact(&mut client, one * delivered).await.len(),
            one * delivered
        );
        transports.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn tcp_close_by_driver() {
    bounded(async {
        let (transports, mut rx, addr) = tcp_transports("127.0.0.1:0").await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(&sip("OPTIONS", "")).await.unwrap();
        let conn = expect_message(&mut rx).await.conn.unwrap();
        assert!(transports.close(conn));
        match next_event(&mut rx).await {
            Event::Closed { conn: c, .. } => assert_eq!(c, conn),
            other => panic!("expected Closed, got {other:?}"),
        }
        expect_eof(&mut client).await;
        assert!(!transports.close(conn), "already closed");
        transports.shutdown().await;
    })
    .await;
}
