//! The admin API: a small HTTP server (JSON) that lists what is in flight,
//! and the Prometheus metrics endpoint.
//!
//! The proxy core lives in the driver's event loop and is never shared:
//! the HTTP handlers send a query into the loop and get the answer back,
//! so the SIP path takes no lock for the admin API.
//!
//! * `GET /health` — `ok`
//! * `GET /transactions` — every transaction being proxied, with branches
//! * `GET /dialogs` — every tracked dialog, with counts per destination and rule
//! * `GET /metrics` — Prometheus text format

use std::fmt::Write;
use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cairn_proxy::{Millis, Proxy};
use tokio::sync::{mpsc, oneshot};

/// What the admin API asks the event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    Transactions,
    Dialogs,
    Metrics,
}

/// A query and where to send its answer.
pub struct AdminRequest {
    pub query: Query,
    pub reply: oneshot::Sender<String>,
}

/// Counters the driver keeps itself (the core keeps its own).
#[derive(Debug, Clone, Default)]
pub struct DriverMetrics {
    /// "memory", "fjall" or "redis".
    pub store_backend: &'static str,
    /// The store takes writes (Redis: connected and keeping up).
    pub store_up: bool,
    /// Redis: batches and deletes waiting to be written.
    pub store_pending: u64,
    /// Redis: puts dropped while degraded and deletes forgotten.
    pub store_dropped: u64,
    /// Redis: failed pipelines and refused commands.
    pub store_write_errors: u64,
    /// Redis: times every live record was written again.
    pub store_resyncs: u64,
    /// Commits that Redis did not acknowledge within the commit timeout.
    pub store_commit_timeouts: u64,
    /// Loads that failed at start (Redis unreachable).
    pub store_load_errors: u64,
    /// Owner lookups that failed (Redis unreachable or slow).
    pub owner_lookup_failures: u64,
    pub store_commits: u64,
    pub store_commit_errors: u64,
    pub store_commit_seconds_sum: f64,
    pub store_commit_seconds_max: f64,
    pub store_records: u64,
    pub store_syncs: u64,
    /// Records waiting to be grouped with others (`state_delay_ms`).
    pub store_staged: u64,
    pub restored_transactions: u64,
    pub restored_dialogs: u64,
    pub restore_skipped: u64,
    pub restore_seconds: f64,
    pub send_failures: u64,
    pub lookup_failures: u64,
}

/// Start the admin server on `addr`. The error names the address.
pub async fn serve(addr: SocketAddr, tx: mpsc::Sender<AdminRequest>) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("admin.listen: cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/transactions", get(transactions))
        .route("/dialogs", get(dialogs))
        .route("/metrics", get(metrics))
        .with_state(tx);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "admin server stopped");
        }
    });
    tracing::info!(address = %bound, "admin API listening");
    Ok(bound)
}

async fn ask(tx: &mpsc::Sender<AdminRequest>, query: Query) -> Result<String, StatusCode> {
    let (reply, rx) = oneshot::channel();
    tx.send(AdminRequest { query, reply })
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    rx.await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)
}

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn transactions(
    State(tx): State<mpsc::Sender<AdminRequest>>,
) -> Result<Response, StatusCode> {
    ask(&tx, Query::Transactions).await.map(json)
}

async fn dialogs(State(tx): State<mpsc::Sender<AdminRequest>>) -> Result<Response, StatusCode> {
    ask(&tx, Query::Dialogs).await.map(json)
}

async fn metrics(State(tx): State<mpsc::Sender<AdminRequest>>) -> Result<Response, StatusCode> {
    let body = ask(&tx, Query::Metrics).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

/// Answer a query from the proxy's state (called in the event loop).
pub fn answer(proxy: &Proxy, now: Millis, query: Query, m: &DriverMetrics) -> String {
    match query {
        Query::Transactions => {
            let list = proxy.transactions_snapshot(now);
            serde_json::json!({ "count": list.len(), "transactions": list }).to_string()
        }
        Query::Dialogs => {
            let d = proxy.dialogs();
            let per_destination: serde_json::Map<String, serde_json::Value> = d
                .per_destination()
                .map(|(k, v)| (k.to_owned(), v.into()))
                .collect();
            let per_rule: serde_json::Map<String, serde_json::Value> = d
                .per_rule()
                .map(|(k, v)| (k.to_owned(), v.into()))
                .collect();
            let list: Vec<_> = d.iter().collect();
            serde_json::json!({
                "count": list.len(),
                "per_destination": per_destination,
                "per_rule": per_rule,
                "dialogs": list,
            })
            .to_string()
        }
        Query::Metrics => metrics_text(proxy, m),
    }
}

/// The Prometheus text exposition.
pub fn metrics_text(proxy: &Proxy, m: &DriverMetrics) -> String {
    let s = proxy.stats();
    let (servers, clients) = proxy.transaction_counts();
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(
            out,
            "# HELP cairn_{name} {help}\n# TYPE cairn_{name} {kind}"
        );
        for (labels, v) in samples {
            let _ = writeln!(out, "cairn_{name}{labels} {v}");
        }
    };
    metric(
        "transactions",
        "gauge",
        "Live transactions.",
        &[
            ("{side=\"server\"}", servers as f64),
            ("{side=\"client\"}", clients as f64),
        ],
    );
    metric(
        "dialogs",
        "gauge",
        "Tracked dialogs.",
        &[("", proxy.dialogs().len() as f64)],
    );
    metric(
        "requests_received_total",
        "counter",
        "Requests received.",
        &[("", s.requests_in as f64)],
    );
    metric(
        "responses_received_total",
        "counter",
        "Responses received.",
        &[("", s.responses_in as f64)],
    );
    metric(
        "requests_forwarded_total",
        "counter",
        "Requests forwarded.",
        &[("", s.requests_forwarded as f64)],
    );
    metric(
        "responses_forwarded_total",
        "counter",
        "Responses forwarded.",
        &[("", s.responses_forwarded as f64)],
    );
    metric(
        "parse_errors_total",
        "counter",
        "Malformed messages.",
        &[("", s.parse_errors as f64)],
    );
    metric(
        "retransmissions_received_total",
        "counter",
        "Requests absorbed as retransmissions.",
        &[("", s.retransmissions_in as f64)],
    );
    metric(
        "local_replies_total",
        "counter",
        "Final responses cairn made itself.",
        &[("", s.local_finals as f64)],
    );
    metric(
        "cancels_total",
        "counter",
        "CANCELs received, matched to their INVITE, unmatched, and sent to branches.",
        &[
            ("{kind=\"received\"}", s.cancels_in as f64),
            ("{kind=\"matched\"}", s.cancels_matched as f64),
            ("{kind=\"unmatched\"}", s.cancels_unmatched as f64),
            ("{kind=\"sent\"}", s.cancels_out as f64),
            ("{kind=\"before_invite\"}", s.cancelled_before_invite as f64),
            ("{kind=\"while_routing\"}", s.cancelled_while_routing as f64),
        ],
    );
    metric(
        "lookups_total",
        "counter",
        "Routing lookups started.",
        &[("", s.lookups as f64)],
    );
    metric(
        "lookup_failures_total",
        "counter",
        "Routing lookups that failed.",
        &[("", m.lookup_failures as f64)],
    );
    metric(
        "dialog_events_total",
        "counter",
        "Dialogs started and ended.",
        &[
            ("{event=\"started\"}", s.dialogs_started as f64),
            ("{event=\"ended\"}", s.dialogs_ended as f64),
        ],
    );
    metric(
        "records_written_total",
        "counter",
        "Transaction records written.",
        &[("", s.records_written as f64)],
    );
    metric(
        "records_restored",
        "gauge",
        "Records restored at start.",
        &[
            ("{space=\"transactions\"}", m.restored_transactions as f64),
            ("{space=\"dialogs\"}", m.restored_dialogs as f64),
            ("{space=\"skipped\"}", m.restore_skipped as f64),
        ],
    );
    metric(
        "restore_seconds",
        "gauge",
        "Time spent restoring at start.",
        &[("", m.restore_seconds)],
    );
    metric(
        "store_commits_total",
        "counter",
        "Store commits (group commits).",
        &[("", m.store_commits as f64)],
    );
    metric(
        "store_commit_errors_total",
        "counter",
        "Store commits that failed.",
        &[("", m.store_commit_errors as f64)],
    );
    metric(
        "store_commit_seconds",
        "summary",
        "Store commit latency.",
        &[
            ("_sum", m.store_commit_seconds_sum),
            ("_count", m.store_commits as f64),
        ],
    );
    metric(
        "store_commit_seconds_max",
        "gauge",
        "Slowest store commit.",
        &[("", m.store_commit_seconds_max)],
    );
    metric(
        "store_staged_records",
        "gauge",
        "Records waiting (at most state_delay_ms) to be committed with others.",
        &[("", m.store_staged as f64)],
    );
    metric(
        "store_syncs_total",
        "counter",
        "Store syncs to disk.",
        &[("", m.store_syncs as f64)],
    );
    metric(
        "store_up",
        "gauge",
        "1 while the store takes writes (Redis: connected and keeping up), 0 while degraded.",
        &[("", if m.store_up { 1.0 } else { 0.0 })],
    );
    metric(
        "store_errors_total",
        "counter",
        "Store errors: failed commits (timeouts included), failed loads, failed writes of the Redis writer, failed owner lookups.",
        &[
            ("{kind=\"commit\"}", m.store_commit_errors as f64),
            ("{kind=\"commit_timeout\"}", m.store_commit_timeouts as f64),
            ("{kind=\"load\"}", m.store_load_errors as f64),
            ("{kind=\"write\"}", m.store_write_errors as f64),
            ("{kind=\"owner_lookup\"}", m.owner_lookup_failures as f64),
        ],
    );
    metric(
        "store_pending",
        "gauge",
        "Redis: batches and deletes waiting to be written.",
        &[("", m.store_pending as f64)],
    );
    metric(
        "store_dropped_total",
        "counter",
        "Redis: record writes dropped while degraded (written again by the resync) and deletes forgotten.",
        &[("", m.store_dropped as f64)],
    );
    metric(
        "store_resyncs_total",
        "counter",
        "Redis: times every live record was written again after an outage.",
        &[("", m.store_resyncs as f64)],
    );
    metric(
        "cluster_total",
        "counter",
        "Cluster: CANCELs and ACKs whose INVITE's node was looked up, and messages relayed to the node that owns them.",
        &[
            ("{kind=\"owner_lookups\"}", s.owner_lookups as f64),
            ("{kind=\"relayed\"}", s.relayed_to_nodes as f64),
        ],
    );
    metric(
        "send_failures_total",
        "counter",
        "Messages the transport could not send.",
        &[("", m.send_failures as f64)],
    );
    out
}
