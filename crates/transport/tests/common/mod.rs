//! Helpers shared by the integration tests. Everything runs on loopback with ephemeral ports.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use cairn_transport::{Config, Event, Listener, Outgoing, Transport, Transports};
use tokio::sync::mpsc::Receiver;

/// Upper bound for any single wait in a test.
pub const STEP: Duration = Duration::from_secs(5);
/// Upper bound for a whole test.
pub const WHOLE: Duration = Duration::from_secs(20);

/// Run a test body with an overall time limit.
pub async fn bounded<F: Future<Output = ()>>(body: F) {
    tokio::time::timeout(WHOLE, body)
        .await
        .expect("test took too long");
}

pub fn listener(transport: Transport, addr: &str) -> Listener {
    Listener {
        transport,
        addr: addr.parse().unwrap(),
    }
}

pub fn config(listeners: Vec<Listener>) -> Config {
    Config {
        listeners,
        channel_capacity: 64,
        ..Config::default()
    }
}

pub async fn start(config: Config) -> (Transports, Receiver<Event>) {
    Transports::bind(config).await.expect("bind")
}

pub async fn next_event(rx: &mut Receiver<Event>) -> Event {
    tokio::time::timeout(STEP, rx.recv())
        .await
        .expect("no event in time")
        .expect("event channel closed")
}

/// Assert that no event arrives for a short while.
pub async fn no_event(rx: &mut Receiver<Event>, wait: Duration) {
    if let Ok(ev) = tokio::time::timeout(wait, rx.recv()).await {
        panic!("unexpected event: {ev:?}");
    }
}

pub fn outgoing(
    transport: Transport,
    dest: SocketAddr,
    data: impl Into<Bytes>,
    token: u64,
) -> Outgoing {
    Outgoing {
        dest,
        transport,
        conn: None,
        data: data.into(),
        token,
    }
}

/// Whether `::1` can be bound here; prints why not.
pub fn ipv6_loopback() -> bool {
    match std::net::UdpSocket::bind("[::1]:0") {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipping IPv6 part: cannot bind [::1]: {e}");
            false
        }
    }
}

pub fn sip(method: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-{method}\r\n\
         Call-ID: {method}@test\r\n\
         CSeq: 1 {method}\r\n\
         Content-Length: {}\r\n\
         \r\n\
         {body}",
        body.len()
    )
    .into_bytes()
}
