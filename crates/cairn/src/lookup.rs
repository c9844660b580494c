//! HTTP routing lookups: the I/O half of a `[[rule]]` with `lookup = { url = ... }`.
//!
//! The proxy core asks for a lookup ([`cairn_proxy::Output::Lookup`]) with the server
//! transaction already created, so that a CANCEL arriving meanwhile is answered at once.
//! [`Lookups::start`] spawns one tokio task per lookup (any number run at once; a slow
//! service never holds up the driver's loop): the task POSTs a JSON description of the
//! request ([`LookupRequest`]) to the rule's URL, waits at most the rule's `timeout_ms` for a
//! JSON [`LookupAnswer`], turns it into a [`Decision`] with the routing policy (or, on any
//! failure, into the rule's fallback set or failure response) and sends it back through a
//! channel. The driver feeds what comes out of the channel to
//! [`Proxy::lookup_done`](cairn_proxy::Proxy::lookup_done).
//!
//! The HTTP client is hyper's HTTP/1.1 client (connection pooling from hyper-util), plain
//! HTTP without TLS: routing services are expected next to the proxy.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_proxy::TxnId;
use cairn_routing::{Decision, Lookup, LookupAnswer, Policy};
use cairn_sip::{Message, NameAddr, Transport};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// The largest answer body read, in bytes.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Lookups allowed in flight at once; beyond that a new one fails at once (the rule's
/// fallback or failure response), so a flood of calls cannot pile up unbounded work.
pub const MAX_IN_FLIGHT: usize = 10_000;

/// What cairn POSTs to the routing service (`Content-Type: application/json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LookupRequest {
    pub call_id: String,
    pub method: String,
    pub request_uri: String,
    /// The From URI (without display name or parameters).
    pub from: String,
    /// The To URI.
    pub to: String,
    /// The From tag, if any.
    pub from_tag: Option<String>,
    /// Where the request came from: the packet's source `ip:port` (`[v6]:port`).
    pub source: String,
    /// `udp` or `tcp`.
    pub transport: String,
}

impl LookupRequest {
    /// The request's key fields, as text (invalid UTF-8 replaced).
    pub fn new(msg: &Message, source: SocketAddr, transport: Transport) -> LookupRequest {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let uri_of = |value: &[u8]| match NameAddr::parse(value) {
            Ok(a) => text(a.uri),
            Err(_) => text(value),
        };
        LookupRequest {
            call_id: text(msg.call_id()),
            method: text(msg.method_bytes()),
            request_uri: text(msg.request_uri_bytes()),
            from: uri_of(msg.from_value()),
            to: uri_of(msg.to_value()),
            from_tag: msg.from_tag().map(text),
            source: source.to_string(),
            transport: transport.name().to_ascii_lowercase(),
        }
    }
}

/// A finished lookup: the decision for server transaction `txn`.
#[derive(Debug)]
pub struct Done {
    pub txn: TxnId,
    pub decision: Decision,
}

/// Why a lookup gave no usable answer.
#[derive(Debug)]
pub enum LookupFailure {
    /// No answer within the rule's `timeout_ms`.
    Timeout(u64),
    /// The URL does not parse as an HTTP URI.
    BadUrl(String),
    /// Connection refused, reset, HTTP protocol error.
    Http(String),
    /// The service answered with a status other than 2xx.
    Status(u16),
    /// The answer body is larger than [`MAX_ANSWER_BYTES`] or could not be read.
    Body(String),
    /// The body is not a valid answer (JSON, or the policy refused it).
    InvalidAnswer(String),
    /// Too many lookups in flight.
    Overloaded,
}

impl fmt::Display for LookupFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupFailure::Timeout(ms) => write!(f, "no answer within {ms} ms"),
            LookupFailure::BadUrl(m) => write!(f, "bad URL: {m}"),
            LookupFailure::Http(m) => write!(f, "HTTP error: {m}"),
            LookupFailure::Status(s) => write!(f, "HTTP status {s}"),
            LookupFailure::Body(m) => write!(f, "cannot read the answer: {m}"),
            LookupFailure::InvalidAnswer(m) => write!(f, "invalid answer: {m}"),
            LookupFailure::Overloaded => {
                write!(f, "{MAX_IN_FLIGHT} lookups already in flight")
            }
        }
    }
}

/// Lookup counters (monotonic).
#[derive(Debug, Default)]
pub struct LookupStats {
    pub started: AtomicU64,
    /// Answers turned into a decision.
    pub answered: AtomicU64,
    /// Lookups that failed, for any reason (the sum of the following).
    pub failed: AtomicU64,
    pub timeouts: AtomicU64,
    pub http_errors: AtomicU64,
    pub invalid_answers: AtomicU64,
    pub overloaded: AtomicU64,
}

impl LookupStats {
    fn count_failure(&self, f: &LookupFailure) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let c = match f {
            LookupFailure::Timeout(_) => &self.timeouts,
            LookupFailure::InvalidAnswer(_) => &self.invalid_answers,
            LookupFailure::Overloaded => &self.overloaded,
            LookupFailure::BadUrl(_)
            | LookupFailure::Http(_)
            | LookupFailure::Status(_)
            | LookupFailure::Body(_) => &self.http_errors,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// (started, answered, failed).
    pub fn totals(&self) -> (u64, u64, u64) {
        (
            self.started.load(Ordering::Relaxed),
            self.answered.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The lookups of one driver: the HTTP client (with its connection pool), the policy that
/// interprets answers, and the channel the results come back on.
pub struct Lookups {
    client: HttpClient,
    policy: Arc<Policy>,
    tx: mpsc::UnboundedSender<Done>,
    stats: Arc<LookupStats>,
    in_flight: usize,
    /// The transports cairn listens on: a target over another one cannot be reached.
    transports: Arc<[Transport]>,
}

impl Lookups {
    /// `transports`: those cairn listens on. Must be called inside a tokio runtime (the
    /// client's pool spawns tasks).
    pub fn new(
        policy: Arc<Policy>,
        transports: &[Transport],
    ) -> (Lookups, mpsc::UnboundedReceiver<Done>) {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector);
        let (tx, rx) = mpsc::unbounded_channel();
        let lookups = Lookups {
            client,
            policy,
            tx,
            stats: Arc::new(LookupStats::default()),
            in_flight: 0,
            transports: transports.into(),
        };
        (lookups, rx)
    }

    /// Start a lookup for server transaction `txn`. Its [`Done`] always comes back through
    /// the channel (an answer, the fallback, or the failure response), exactly once; call
    /// [`finished`](Lookups::finished) for each one received.
    pub fn start(&mut self, txn: TxnId, lookup: Lookup, request: LookupRequest) {
        self.in_flight += 1;
        self.stats.started.fetch_add(1, Ordering::Relaxed);
        if self.in_flight > MAX_IN_FLIGHT {
            let failure = LookupFailure::Overloaded;
            let decision = failed(&self.policy, &self.stats, &lookup, &request, &failure);
            let _ = self.tx.send(Done { txn, decision });
            return;
        }
        let client = self.client.clone();
        let policy = self.policy.clone();
        let stats = self.stats.clone();
        let tx = self.tx.clone();
        let transports = self.transports.clone();
        tokio::spawn(async move {
            let decision = match fetch(&client, &lookup, &request).await {
                Ok(answer) => match policy
                    .try_lookup_answer(&lookup, &answer)
                    .map_err(|e| e.to_string())
                    .and_then(|d| reachable(d, &transports))
                {
                    Ok(d) => {
                        stats.answered.fetch_add(1, Ordering::Relaxed);
                        debug!(rule = %lookup.rule, call_id = %request.call_id, ?answer, "routing lookup answered");
                        d
                    }
                    Err(e) => {
                        let f = LookupFailure::InvalidAnswer(e);
                        failed(&policy, &stats, &lookup, &request, &f)
                    }
                },
                Err(f) => failed(&policy, &stats, &lookup, &request, &f),
            };
            // The driver may be gone (shutting down): nothing left to route.
            let _ = tx.send(Done { txn, decision });
        });
    }

    /// Interpret the answers of lookups started from now on with `policy`
    /// (a reload); those in flight finish with the policy they started with.
    pub fn set_policy(&mut self, policy: Arc<Policy>) {
        self.policy = policy;
    }

    /// A [`Done`] was taken from the channel.
    pub fn finished(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Lookups started whose [`Done`] has not been received yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn stats(&self) -> &Arc<LookupStats> {
        &self.stats
    }
}

/// A plan whose every target is over a transport cairn listens on (as the configuration
/// requires of destination sets).
fn reachable(d: Decision, transports: &[Transport]) -> Result<Decision, String> {
    if let Decision::Forward(plan) = &d {
        if let Some((i, t)) = plan
            .targets
            .iter()
            .enumerate()
            .find(|(_, t)| !transports.contains(&t.transport))
        {
            return Err(format!(
                "targets[{i}]: {} is reached over {}, which cairn does not listen on",
                t.name, t.transport
            ));
        }
    }
    Ok(d)
}

/// Log and count a failed lookup, and decide with the rule's fallback.
fn failed(
    policy: &Policy,
    stats: &LookupStats,
    lookup: &Lookup,
    request: &LookupRequest,
    failure: &LookupFailure,
) -> Decision {
    stats.count_failure(failure);
    let decision = policy.lookup_failed(lookup, request.call_id.as_bytes());
    let outcome = match &decision {
        Decision::Forward(plan) => format!("fallback set {}", plan.set),
        Decision::Respond { code, .. } => format!("answered {code}"),
        Decision::Lookup(_) => "another lookup".to_owned(),
    };
    warn!(
        rule = %lookup.rule,
        url = %lookup.url,
        call_id = %request.call_id,
        error = %failure,
        outcome = %outcome,
        "routing lookup failed"
    );
    decision
}

/// POST the request, read and parse the answer, all within the lookup's timeout.
async fn fetch(
    client: &HttpClient,
    lookup: &Lookup,
    request: &LookupRequest,
) -> Result<LookupAnswer, LookupFailure> {
    let uri: Uri = lookup
        .url
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| LookupFailure::BadUrl(e.to_string()))?;
    let body = serde_json::to_vec(request).map_err(|e| LookupFailure::Http(e.to_string()))?;
    let req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(
            USER_AGENT,
            HeaderValue::from_static(concat!("cairn/", env!("CARGO_PKG_VERSION"))),
        )
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| LookupFailure::BadUrl(e.to_string()))?;
    let exchange = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| LookupFailure::Http(error_chain(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(LookupFailure::Status(status.as_u16()));
        }
        let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| LookupFailure::Body(e.to_string()))?
            .to_bytes();
        serde_json::from_slice::<LookupAnswer>(&body)
            .map_err(|e| LookupFailure::InvalidAnswer(format!("{e}")))
    };
    match tokio::time::timeout(Duration::from_millis(lookup.timeout_ms), exchange).await {
        Ok(r) => r,
        Err(_) => Err(LookupFailure::Timeout(lookup.timeout_ms)),
    }
}

/// An error and its sources, `a: b: c` (hyper's top-level errors say little alone).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_routing::{
        DestinationSetConfig, LookupConfig, RoutingConfig, RoutingSection, RuleConfig,
    };

    #[test]
    fn targets_need_a_listener() {
        let cfg = RoutingConfig {
            destination_sets: vec![DestinationSetConfig::new(
                "gw",
                cairn_routing::Algorithm::RoundRobin,
                &["sip:10.0.0.1"],
            )],
            rules: vec![RuleConfig {
                name: "r".into(),
                lookup: Some(LookupConfig::new("http://127.0.0.1:1/")),
                ..Default::default()
            }],
            routing: RoutingSection::default(),
            ..Default::default()
        };
        let p = Policy::build(&cfg).unwrap();
        let lookup = Lookup {
            rule: "r".into(),
            rule_index: 0,
            url: "http://127.0.0.1:1/".into(),
            timeout_ms: 100,
        };
        let answer = LookupAnswer {
            targets: Some(vec![
                "sip:10.0.0.2".into(),
                "sip:10.0.0.3;transport=tcp".into(),
            ]),
            ..Default::default()
        };
        let d = p.try_lookup_answer(&lookup, &answer).unwrap();
        let e = reachable(d.clone(), &[Transport::Udp]).unwrap_err();
        assert!(e.contains("targets[1]") && e.contains("tcp"), "{e}");
        assert!(reachable(d, &[Transport::Udp, Transport::Tcp]).is_ok());
    }

    #[test]
    fn request_fields() {
        let msg = Message::parse(Bytes::from_static(
            b"INVITE sip:+15551234@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.2:5061;branch=z9hG4bK-1\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@example.org>;tag=a1\r\n\
To: sip:+15551234@example.com\r\n\
Call-ID: c1@host\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n",
        ))
        .unwrap();
        let r = LookupRequest::new(&msg, "[::1]:5061".parse().unwrap(), Transport::Tcp);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({
                "call_id": "c1@host",
                "method": "INVITE",
                "request_uri": "sip:+15551234@example.com",
                "from": "sip:alice@example.org",
                "to": "sip:+15551234@example.com",
                "from_tag": "a1",
                "source": "[::1]:5061",
                "transport": "tcp",
            })
        );
    }
}
