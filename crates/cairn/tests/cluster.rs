//! Cluster mode (issue 6), end to end: real cairn nodes sharing their records in a real
//! redis-server (a child process of the test, on the test's loopback address), real SIPp
//! callers and gateways.
//!
//! * Failover: node 1 routes 50 INVITEs that ring, and is SIGKILLed; node 2 starts on
//!   node 1's address, takes node 1's records over, and the callers' CANCELs reach the
//!   gateway of each INVITE with its Request-URI and branch; 50 callers get 487.
//! * Active/active: the CANCEL (and the ACK for the 487) reach node 2 for INVITEs node 1
//!   routed, both alive: node 2 answers the CANCEL and relays it to node 1, which cancels
//!   its branches; the 487 comes from node 1.
//! * A gateway's response sent to node 2 for a branch of node 1 is relayed to node 1,
//!   which handles it (ACKs it, forwards it to the caller).
//! * Redis killed and started again (empty) while calls ring and new calls come in: the
//!   node keeps proxying, reports the outage (`cairn_store_up 0`, errors), writes every
//!   live record again when Redis is back, and a crash after that loses no call.
//!
//! Over UDP: the node-to-node relay is UDP, and a SIPp call cannot move to another TCP
//! connection (see restart.rs).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Admin API ports of the nodes on the test's address.
const ADMIN_1: u16 = 8081;
const ADMIN_2: u16 = 8082;
/// Node 2's own SIP port in the active/active tests.
const NODE_2_PORT: u16 = 5062;
/// How long the callers let the gateways ring before they CANCEL.
const RING_MS: u64 = 5000;

/// `[[listen]]` for UDP and TCP on `addr`.
fn listen_toml(addr: SocketAddr) -> String {
    format!(
        "[[listen]]\ntransport = \"udp\"\naddress = \"{addr}\"\n\n\
         [[listen]]\ntransport = \"tcp\"\naddress = \"{addr}\"\n\n"
    )
}

/// A node's config: listening on `listen`, the round-robin set over the two gateways,
/// the Redis store, `[cluster]` with `node` and `nodes`, the admin API on `admin`.
fn node_config(
    net: &TestNet,
    node: u16,
    listen: SocketAddr,
    nodes: &[(u16, SocketAddr)],
    admin: u16,
    redis: &RedisServer,
    store_extra: &str,
) -> String {
    let routing = gateway_set(
        net,
        Transport::Udp,
        "gateways",
        "round_robin",
        &["5xx", "408"],
        &[(ports::UAS1, ""), (ports::UAS2, "")],
    );
    let nodes: Vec<String> = nodes
        .iter()
        .map(|(id, a)| format!("{{ id = {id}, address = \"{a}\" }}"))
        .collect();
    cairn_config(net, DEFAULT_TIMERS, &routing).replace(&net.listen_toml(), &listen_toml(listen))
        + &format!(
            "\n[store]\nbackend = \"redis\"\nurl = \"{url}\"\n{store_extra}\n\
             [cluster]\nnode_id = {node}\nnodes = [{nodes}]\n\n\
             [dialogs]\nenabled = true\n\n[admin]\nlisten = \"{admin}\"\n",
            url = redis.url(),
            nodes = nodes.join(", "),
            admin = net.addr(admin)
        )
}

fn admin_json(net: &TestNet, port: u16, path: &str) -> Value {
    let (status, body) = http_get(net.addr(port), path)
        .unwrap_or_else(|| panic!("GET {path} on :{port}: the admin API does not answer"));
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

fn metrics(net: &TestNet, port: u16) -> String {
    let (status, body) =
        http_get(net.addr(port), "/metrics").unwrap_or_else(|| panic!("GET /metrics on :{port}"));
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until the node has every record it staged in Redis: none staged (the records
/// of a 1xx may wait `state_delay_ms` to be grouped) and none queued for the writer.
fn wait_records_in_redis(net: &TestNet, port: u16) {
    wait_for("records committed to Redis", Duration::from_secs(5), || {
        let m = metrics(net, port);
        metric(&m, "cairn_store_staged_records") == 0.0 && metric(&m, "cairn_store_pending") == 0.0
    });
}

fn invite_count(net: &TestNet, port: u16) -> usize {
    admin_json(net, port, "/transactions")["transactions"]
        .as_array()
        .map_or(0, |t| t.iter().filter(|t| t["method"] == "INVITE").count())
}

/// Each gateway cancels exactly its own calls, every CANCEL matching its INVITE, and
/// every call reached one gateway: `calls` in all.
#[track_caller]
fn assert_every_call_cancelled_right(gws: &[&SippResult], calls: usize) {
    let mut cancelled = std::collections::BTreeSet::new();
    for gw in gws {
        let c = assert_cancels_match_invites(gw);
        assert_eq!(
            c.len(),
            gw.received_requests("INVITE")
                .iter()
                .map(|m| m.call_id())
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            "every call of {} is cancelled there:\n{gw}",
            gw.name
        );
        cancelled.extend(c);
    }
    assert_eq!(cancelled.len(), calls, "CANCELs for every call");
    assert_eq!(assert_one_gateway_per_call(gws), calls);
}

// ---------------------------------------------------------------------------------------
// Failover: node 1 dies with 50 calls ringing, node 2 takes its address over
// ---------------------------------------------------------------------------------------

#[test]
fn failover_fifty_ringing_calls_cancelled_through_the_node_that_took_over_udp() {
    const CALLS: u64 = 50;
    let t = Transport::Udp;
    let net = TestNet::new();
    let redis = start_redis(&net);
    let addr_1 = net.cairn();
    let nodes = [(1, addr_1), (2, net.addr(NODE_2_PORT))];
    let mut node1 = Cairn::start(&node_config(&net, 1, addr_1, &nodes, ADMIN_1, &redis, ""));
    let ring = scenario("uas_ring_then_cancel.xml");
    let gw1 = Sipp::uas(&ring, net.addr(ports::UAS1), SippOpts::new(t));
    let gw2 = Sipp::uas(&ring, net.addr(ports::UAS2), SippOpts::new(t));
    let uac = Sipp::uac(
        &scenario("restart_uac_cancel.xml"),
        net.addr(ports::UAC),
        addr_1,
        SippOpts::new(t)
            .calls(CALLS)
            .rate(50.0)
            .pause_ms(RING_MS)
            .timeout(Duration::from_secs(90)),
    );
    wait_for("50 callers hear ringing", Duration::from_secs(30), || {
        uac.count_so_far(received_180) >= CALLS as usize
    });
    assert_eq!(invite_count(&net, ADMIN_1), CALLS as usize);
    // The records are in Redis under node 1 (two per call: the call's record and its
    // state, see docs/durability.md), and the branches name node 1.
    wait_records_in_redis(&net, ADMIN_1);
    assert_eq!(
        redis.keys("cairn:n1:t:*").unwrap().len(),
        2 * CALLS as usize
    );
    let invite = gw1
        .messages_so_far()
        .into_iter()
        .find(|m| m.received && m.method() == Some("INVITE"))
        .expect("an INVITE at gateway 1");
    let branch = invite.top_via_branch().unwrap_or_default();
    assert!(
        branch.starts_with("z9hG4bKcn") && branch.ends_with(".1"),
        "a branch of node 1: {branch}"
    );

    node1.kill9();
    // Node 2 starts on node 1's address: it takes node 1's records over.
    let node2 = Cairn::start(&node_config(&net, 2, addr_1, &nodes, ADMIN_2, &redis, ""));
    assert_eq!(
        uac.count_so_far(sent_request("CANCEL")),
        0,
        "test timing: a caller hung up before node 2 was up (raise RING_MS)"
    );
    let m = metrics(&net, ADMIN_2);
    assert_eq!(
        metric(&m, "cairn_records_restored{space=\"transactions\"}"),
        CALLS as f64,
        "{}",
        node2.log()
    );
    assert_eq!(
        metric(&m, "cairn_records_restored{space=\"dialogs\"}"),
        CALLS as f64
    );
    assert_eq!(invite_count(&net, ADMIN_2), CALLS as usize);
    assert!(
        redis.keys("cairn:n1:*").unwrap().is_empty(),
        "node 1's records are node 2's now"
    );
    assert_eq!(
        redis.keys("cairn:n2:t:*").unwrap().len(),
        2 * CALLS as usize
    );

    let uac = uac.wait();
    let (gw1, gw2) = (gw1.stop(), gw2.stop());
    uac.assert_all_ok(CALLS);
    assert_eq!(responses_to(&uac, 200, "CANCEL"), CALLS as usize, "{uac}");
    assert_eq!(responses_to(&uac, 487, "INVITE"), CALLS as usize, "{uac}");
    gw1.assert_all_ok(CALLS / 2);
    gw2.assert_all_ok(CALLS / 2);
    assert_every_call_cancelled_right(&[&gw1, &gw2], CALLS as usize);
    // Ended: the records go from Redis too.
    wait_for(
        "node 2's records are deleted",
        Duration::from_secs(20),
        || redis.keys("cairn:n2:t:*").unwrap().is_empty(),
    );
}

// ---------------------------------------------------------------------------------------
// Active/active: the CANCEL reaches the other node
// ---------------------------------------------------------------------------------------

#[test]
fn cancel_at_the_other_node_while_the_owner_is_alive_udp() {
    const CALLS: u64 = 10;
    let t = Transport::Udp;
    let net = TestNet::new();
    let redis = start_redis(&net);
    let (addr_1, addr_2) = (net.cairn(), net.addr(NODE_2_PORT));
    let nodes = [(1, addr_1), (2, addr_2)];
    let node1 = Cairn::start(&node_config(&net, 1, addr_1, &nodes, ADMIN_1, &redis, ""));
    let node2 = Cairn::start(&node_config(&net, 2, addr_2, &nodes, ADMIN_2, &redis, ""));
    let ring = scenario("uas_ring_then_cancel.xml");
    let gw1 = Sipp::uas(&ring, net.addr(ports::UAS1), SippOpts::new(t));
    let gw2 = Sipp::uas(&ring, net.addr(ports::UAS2), SippOpts::new(t));
    let uac = Sipp::uac(
        &scenario("cluster_uac_cancel_elsewhere.xml"),
        net.addr(ports::UAC),
        addr_1,
        SippOpts::new(t)
            .calls(CALLS)
            .rate(20.0)
            .pause_ms(500)
            .key("other_host", &net.ip.to_string())
            .key("other_port", &NODE_2_PORT.to_string())
            .timeout(Duration::from_secs(60)),
    )
    .wait();
    let (gw1, gw2) = (gw1.stop(), gw2.stop());
    uac.assert_all_ok(CALLS);
    assert_eq!(responses_to(&uac, 200, "CANCEL"), CALLS as usize, "{uac}");
    assert_eq!(responses_to(&uac, 487, "INVITE"), CALLS as usize, "{uac}");
    assert_every_call_cancelled_right(&[&gw1, &gw2], CALLS as usize);
    // The CANCEL was answered by node 2 and the 487 came from node 1.
    let m2 = metrics(&net, ADMIN_2);
    let relayed = metric(&m2, "cairn_cluster_total{kind=\"relayed\"}");
    assert!(
        relayed >= 2.0 * CALLS as f64,
        "node 2 relayed each CANCEL and each ACK: {relayed}\n{}",
        node2.log()
    );
    assert_eq!(
        metric(&m2, "cairn_requests_forwarded_total"),
        0.0,
        "node 2 sent nothing to the gateways"
    );
    let m1 = metrics(&net, ADMIN_1);
    assert_eq!(
        metric(&m1, "cairn_cancels_total{kind=\"matched\"}"),
        CALLS as f64,
        "{}",
        node1.log()
    );
    // The ACKs reached node 1 through node 2: its INVITE transactions end after
    // timer I (T4, 5 s), not timer H (64*T1, 32 s).
    wait_for(
        "node 1's INVITE transactions end",
        Duration::from_secs(15),
        || invite_count(&net, ADMIN_1) == 0,
    );
}

// ---------------------------------------------------------------------------------------
// A response for node 1's branch reaches node 2
// ---------------------------------------------------------------------------------------

#[test]
fn response_at_the_other_node_is_relayed_to_the_owner_udp() {
    let net = TestNet::new();
    let redis = start_redis(&net);
    let (addr_1, addr_2) = (net.cairn(), net.addr(NODE_2_PORT));
    let nodes = [(1, addr_1), (2, addr_2)];
    let _node1 = Cairn::start(&node_config(&net, 1, addr_1, &nodes, ADMIN_1, &redis, ""));
    let node2 = Cairn::start(&node_config(&net, 2, addr_2, &nodes, ADMIN_2, &redis, ""));
    let caller = RawUdp::bind(net.addr(ports::UAC));
    let gateway = RawUdp::bind(net.addr(ports::UAS1));
    let from = caller.local;
    let invite = format!(
        "INVITE sip:service@{addr_1} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};rport;branch=z9hG4bK-relay-1\r\n\
         From: <sip:raw@{from}>;tag=raw1\r\n\
         To: <sip:service@{addr_1}>\r\n\
         Call-ID: relay-1@test\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:raw@{from}>\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    caller.send(addr_1, &invite);
    let fwd = gateway
        .recv_matching(Duration::from_secs(5), |m| m.method() == Some("INVITE"))
        .expect("node 1 forwards the INVITE to gateway 1");
    let branch = fwd.top_via_branch().unwrap_or_default();
    assert!(branch.ends_with(".1"), "node 1's branch: {branch}");
    // The gateway answers 486 to node 2 instead of node 1 (as with an anycast address).
    let mut resp = String::from("SIP/2.0 486 Busy Here\r\n");
    for v in fwd.vias() {
        resp.push_str(&format!("Via: {v}\r\n"));
    }
    for h in ["From", "Call-ID", "CSeq"] {
        resp.push_str(&format!("{h}: {}\r\n", fwd.header(h).unwrap()));
    }
    resp.push_str(&format!(
        "To: {};tag=gw1\r\nContent-Length: 0\r\n\r\n",
        fwd.header("To").unwrap()
    ));
    gateway.send(addr_2, &resp);
    // Node 1 got it: it ACKs the gateway (hop by hop) and the caller gets the 486.
    let ack = gateway
        .recv_matching(Duration::from_secs(5), |m| m.method() == Some("ACK"))
        .expect("node 1 ACKs the 486 that reached node 2");
    assert_eq!(ack.top_via_branch().as_deref(), Some(branch.as_str()));
    let final_ = caller
        .recv_matching(Duration::from_secs(5), |m| {
            m.status().is_some_and(|c| c >= 200)
        })
        .expect("the caller gets the final response");
    assert_eq!(final_.status(), Some(486));
    let m2 = metrics(&net, ADMIN_2);
    assert_eq!(
        metric(&m2, "cairn_cluster_total{kind=\"relayed\"}"),
        1.0,
        "{}",
        node2.log()
    );
}

// ---------------------------------------------------------------------------------------
// Redis killed and started again in the middle of calls
// ---------------------------------------------------------------------------------------

#[test]
fn redis_down_and_back_while_calls_ring_loses_no_call_udp() {
    const BATCH: u64 = 10;
    let t = Transport::Udp;
    let net = TestNet::new();
    let mut redis = start_redis(&net);
    let addr = net.cairn();
    let nodes = [(1, addr)];
    let mut node = Cairn::start(&node_config(
        &net,
        1,
        addr,
        &nodes,
        ADMIN_1,
        &redis,
        "io_timeout_ms = 300\n",
    ));
    let ring = scenario("uas_ring_then_cancel.xml");
    let gw1 = Sipp::uas(&ring, net.addr(ports::UAS1), SippOpts::new(t));
    let gw2 = Sipp::uas(&ring, net.addr(ports::UAS2), SippOpts::new(t));
    let caller = |port: u16, ring_ms: u64| {
        Sipp::uac(
            &scenario("restart_uac_cancel.xml"),
            net.addr(port),
            addr,
            SippOpts::new(t)
                .calls(BATCH)
                .rate(50.0)
                .pause_ms(ring_ms)
                .timeout(Duration::from_secs(90)),
        )
    };
    // Batch 1 rings with Redis up.
    let uac1 = caller(ports::UAC, 14_000);
    wait_for("batch 1 rings", Duration::from_secs(20), || {
        uac1.count_so_far(received_180) >= BATCH as usize
    });
    wait_records_in_redis(&net, ADMIN_1);
    assert_eq!(
        redis.keys("cairn:n1:t:*").unwrap().len(),
        2 * BATCH as usize
    );
    // Redis dies (its data with it); batch 2 comes in meanwhile.
    redis.stop();
    let uac2 = caller(ports::RAW, 9_000);
    wait_for(
        "batch 2 rings without Redis",
        Duration::from_secs(20),
        || uac2.count_so_far(received_180) >= BATCH as usize,
    );
    let m = metrics(&net, ADMIN_1);
    assert_eq!(metric(&m, "cairn_store_up"), 0.0, "{m}");
    assert!(
        metric(&m, "cairn_store_errors_total{kind=\"commit\"}") >= 1.0,
        "{m}"
    );
    assert!(node.log().contains("Redis"), "the outage is logged");
    // Redis is back, empty: every live record is written again.
    redis.restart().unwrap();
    wait_for("the store is up again", Duration::from_secs(10), || {
        metric(&metrics(&net, ADMIN_1), "cairn_store_up") == 1.0
    });
    wait_for(
        "every ringing call is on record again (two records each)",
        Duration::from_secs(5),
        || redis.keys("cairn:n1:t:*").unwrap().len() == 2 * 2 * BATCH as usize,
    );
    assert!(metric(&metrics(&net, ADMIN_1), "cairn_store_resyncs_total") >= 1.0);
    // A crash now loses nothing: the node comes back with all 20 calls.
    wait_records_in_redis(&net, ADMIN_1);
    node.kill9();
    node.restart().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        metric(
            &metrics(&net, ADMIN_1),
            "cairn_records_restored{space=\"transactions\"}"
        ),
        2.0 * BATCH as f64
    );
    assert_eq!(
        uac2.count_so_far(sent_request("CANCEL")),
        0,
        "test timing: batch 2 hung up before the restart"
    );
    let (uac1, uac2) = (uac1.wait(), uac2.wait());
    let (gw1, gw2) = (gw1.stop(), gw2.stop());
    for uac in [&uac1, &uac2] {
        uac.assert_all_ok(BATCH);
        assert_eq!(responses_to(uac, 487, "INVITE"), BATCH as usize, "{uac}");
    }
    assert_every_call_cancelled_right(&[&gw1, &gw2], 2 * BATCH as usize);
}
