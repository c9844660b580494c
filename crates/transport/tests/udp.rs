//! UDP transport on loopback.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use cairn_transport::{Event, Incoming, Transport};
use common::*;
use tokio::net::UdpSocket;

async fn round_trip(bind: &str) {
    let (transports, mut rx) = start(config(vec![listener(Transport::Udp, bind)])).await;
    let local = transports.listeners()[0].addr;
    assert_ne!(local.port(), 0, "the chosen port is reported");
    assert_eq!(
        transports.local_addr(Transport::Udp, local),
        Some(local),
        "advertised address for the same family"
    );

    let client = UdpSocket::bind(SocketAddr::new(local.ip(), 0))
        .await
        .unwrap();
    let request = sip("OPTIONS", "");
    client.send_to(&request, local).await.unwrap();
    match next_event(&mut rx).await {
        Event::Message(Incoming {
            data,
            source,
            local: at,
            transport,
            conn,
        }) => {
            assert_eq!(&data[..], &request[..]);
            assert_eq!(source, client.local_addr().unwrap());
            assert_eq!(at, local);
            assert_eq!(transport, Transport::Udp);
            assert_eq!(conn, None);
        }
        other => panic!("expected a message, got {other:?}"),
    }

    let response = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    transports.send(outgoing(
        Transport::Udp,
        client.local_addr().unwrap(),
        &response[..],
        1,
    ));
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(STEP, client.recv_from(&mut buf))
        .await
        .expect("reply in time")
        .unwrap();
    assert_eq!(&buf[..n], &response[..]);
    assert_eq!(from, local);

    transports.shutdown().await;
}

#[tokio::test]
async fn udp_round_trip_v4() {
    bounded(round_trip("127.0.0.1:0")).await;
}

#[tokio::test]
async fn udp_round_trip_v6() {
    if !ipv6_loopback() {
        return;
    }
    bounded(round_trip("[::1]:0")).await;
}

#[tokio::test]
async fn udp_many_datagrams_keep_their_bytes() {
    bounded(async {
        let (transports, mut rx) =
            start(config(vec![listener(Transport::Udp, "127.0.0.1:0")])).await;
        let local = transports.listeners()[0].addr;
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for i in 0..20 {
            let msg = sip("MESSAGE", &format!("body number {i}"));
            client.send_to(&msg, local).await.unwrap();
            match next_event(&mut rx).await {
                Event::Message(m) => assert_eq!(&m.data[..], &msg[..]),
                other => panic!("expected a message, got {other:?}"),
            }
        }
        transports.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn udp_oversize_and_keepalive_datagrams_are_dropped() {
    bounded(async {
        let mut cfg = config(vec![listener(Transport::Udp, "127.0.0.1:0")]);
        cfg.max_message_size = 300;
        let (transports, mut rx) = start(cfg).await;
        let local = transports.listeners()[0].addr;
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();

        client.send_to(&[b'x'; 301], local).await.unwrap();
        client.send_to(b"\r\n\r\n", local).await.unwrap();
        client.send_to(&[b'y'; 300], local).await.unwrap();
        match next_event(&mut rx).await {
            Event::Message(m) => assert_eq!(&m.data[..], &[b'y'; 300][..]),
            other => panic!("expected the in-limit datagram, got {other:?}"),
        }
        no_event(&mut rx, Duration::from_millis(100)).await;
        transports.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn udp_send_without_listener_of_family_fails() {
    bounded(async {
        let (transports, mut rx) =
            start(config(vec![listener(Transport::Udp, "127.0.0.1:0")])).await;
        transports.send(outgoing(
            Transport::Udp,
            "[::1]:5060".parse().unwrap(),
            &b"x"[..],
            77,
        ));
        match next_event(&mut rx).await {
            Event::SendFailed {
                token,
                transport,
                error,
                ..
            } => {
                assert_eq!(token, 77);
                assert_eq!(transport, Transport::Udp);
                assert!(error.contains("IPv6"), "{error}");
            }
            other => panic!("expected SendFailed, got {other:?}"),
        }
        assert_eq!(
            transports.local_addr(Transport::Udp, "[::1]:5060".parse().unwrap()),
            None
        );
        // Unsupported transports fail the same way.
        transports.send(outgoing(
            Transport::Tls,
            "127.0.0.1:5061".parse().unwrap(),
            &b"x"[..],
            78,
        ));
        match next_event(&mut rx).await {
            Event::SendFailed { token: 78, .. } => {}
            other => panic!("expected SendFailed, got {other:?}"),
        }
        transports.shutdown().await;
        // After shutdown every send fails.
        transports.send(outgoing(
            Transport::Udp,
            "127.0.0.1:5060".parse().unwrap(),
            &b"x"[..],
            79,
        ));
        match next_event(&mut rx).await {
            Event::SendFailed { token: 79, .. } => {}
            other => panic!("expected SendFailed, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn bind_error_names_the_address() {
    bounded(async {
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        // SO_REUSEADDR does not let a second UDP socket share a port bound without it.
        let err = cairn_transport::Transports::bind(config(vec![listener(
            Transport::Udp,
            &addr.to_string(),
        )]))
        .await
        .expect_err("port is taken");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        let err =
            cairn_transport::Transports::bind(config(vec![listener(Transport::Ws, "127.0.0.1:0")]))
                .await
                .expect_err("unsupported");
        assert!(err.to_string().contains("127.0.0.1:0"), "{err}");
    })
    .await;
}
