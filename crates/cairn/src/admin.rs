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
//! * `GET /destinations` — every destination of the routing policy with its
//!   state (probes, administrative override, dialogs)
//! * `POST /destinations/{set}/{destination}/{up|down|auto}` — force a
//!   destination up or down (sticky), or hand it back to its probes;
//!   `destination` is its URI as configured (percent-encoded as needed) or
//!   its position in the set from 0
//! * `POST /reload` — re-read the configuration file and its tables and swap
//!   the routing policy; a bad configuration is refused (400, with the
//!   file, line and key) and the running one stays in force

use std::fmt::Write;
use std::net::SocketAddr;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use cairn_proxy::{Millis, Proxy};
use tokio::sync::{mpsc, oneshot};

use crate::health::Prober;

/// What the admin API asks the event loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Transactions,
    Dialogs,
    Metrics,
    Destinations,
    /// Set a destination's administrative state (`up`, `down`, `auto`).
    SetDestination {
        set: String,
        destination: String,
        state: String,
    },
    Reload,
}

/// The event loop's answer: an HTTP status and a body (JSON, or the
/// metrics text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn ok(body: String) -> Reply {
        Reply { status: 200, body }
    }

    /// `{"error": message}` with this status.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply {
            status,
            body: serde_json::json!({ "error": message }).to_string(),
        }
    }
}

/// A query and where to send its answer.
pub struct AdminRequest {
    pub query: Query,
    pub reply: oneshot::Sender<Reply>,
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
    /// Staged records never written: replaced or removed before their
    /// commit.
    pub store_records_folded: u64,
    pub store_syncs: u64,
    /// Records waiting to be grouped with others (`state_delay_ms`).
    pub store_staged: u64,
    pub restored_transactions: u64,
    pub restored_dialogs: u64,
    pub restore_skipped: u64,
    pub restore_seconds: f64,
    pub send_failures: u64,
    pub lookup_failures: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Time the last successful reload took (read, build, swap).
    pub reload_seconds: f64,
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
        .route("/destinations", get(destinations))
        .route(
            "/destinations/{set}/{destination}/{state}",
            post(set_destination),
        )
        .route("/reload", post(reload))
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
    let r = ask_reply(tx, query).await?;
    if r.status == 200 {
        Ok(r.body)
    } else {
        Err(StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
    }
}

async fn ask_reply(tx: &mpsc::Sender<AdminRequest>, query: Query) -> Result<Reply, StatusCode> {
    let (reply, rx) = oneshot::channel();
    tx.send(AdminRequest { query, reply })
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    rx.await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)
}

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A JSON reply with its status.
fn json_reply(r: Reply) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, json(r.body)).into_response()
}

async fn destinations(
    State(tx): State<mpsc::Sender<AdminRequest>>,
) -> Result<Response, StatusCode> {
    ask(&tx, Query::Destinations).await.map(json)
}

async fn set_destination(
    State(tx): State<mpsc::Sender<AdminRequest>>,
    Path((set, destination, state)): Path<(String, String, String)>,
) -> Result<Response, StatusCode> {
    let q = Query::SetDestination {
        set,
        destination,
        state,
    };
    ask_reply(&tx, q).await.map(json_reply)
}

async fn reload(State(tx): State<mpsc::Sender<AdminRequest>>) -> Result<Response, StatusCode> {
    ask_reply(&tx, Query::Reload).await.map(json_reply)
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

/// Answer a read query from the proxy's and the prober's state (called in
/// the event loop). The commands (`SetDestination`, `Reload`) change state
/// and are carried out by the driver itself.
pub fn answer(
    proxy: &Proxy,
    prober: &Prober,
    now: Millis,
    query: &Query,
    m: &DriverMetrics,
) -> Reply {
    Reply::ok(match query {
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
        Query::Metrics => {
            let mut text = metrics_text(proxy, m);
            prober.metrics(&mut text);
            text
        }
        Query::Destinations => {
            let list = prober.destinations_json(None);
            serde_json::json!({ "count": list.len(), "destinations": list }).to_string()
        }
        Query::SetDestination { .. } | Query::Reload => {
            return Reply::error(500, "a command, not a query: the driver carries it out")
        }
    })
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
        "store_records_total",
        "counter",
        "Records written or removed by store commits.",
        &[("", m.store_records as f64)],
    );
    metric(
        "store_records_folded_total",
        "counter",
        "Staged records never written: replaced by a newer one of the same key, or removed before any commit.",
        &[("", m.store_records_folded as f64)],
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
        "reloads_total",
        "counter",
        "Configuration reloads (SIGHUP or POST /reload) applied and refused.",
        &[
            ("{result=\"ok\"}", m.reloads_ok as f64),
            ("{result=\"failed\"}", m.reloads_failed as f64),
        ],
    );
    metric(
        "reload_seconds",
        "gauge",
        "Time the last successful reload took: read, build, swap.",
        &[("", m.reload_seconds)],
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
