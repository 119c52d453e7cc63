//! The HTTP API of in-process daemons: bad input gets a 4xx JSON error and leaves the node working;
//! requests are answered through the API; `/metrics` is Prometheus text that counts what was sent; bans
//! are listed, added and lifted.

mod operator_common;

use kadmesh::Config;
use kadmesh::daemon::{Daemon, NodeSettings};
use operator_common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const FRAME: usize = 64 * 1024;

struct Node {
    daemon: Daemon,
    api: String,
    id: String,
}

impl Node {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }
}

/// A daemon on 127.0.0.1 port 0 with its API, frames of 64 KiB, joining `peers`.
async fn node(dir: &TempDir, name: &str, peers: &[&Node]) -> Node {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    config.net.max_frame_len = FRAME;
    config.net.exempt_local = true;
    config.bootstrap.nodes = peers
        .iter()
        .map(|p| p.daemon.local_node().to_string())
        .collect();
    let settings = NodeSettings {
        data_dir: dir.join(name),
        api: Some("127.0.0.1:0".parse().unwrap()),
        ..NodeSettings::default()
    };
    let daemon = Daemon::start(settings, config).await.unwrap();
    let api = format!("http://{}", daemon.api_addr().unwrap());
    let id = daemon.local_node().id.to_string();
    Node { daemon, api, id }
}

/// Two joined nodes.
async fn pair(dir: &TempDir) -> (Node, Node) {
    let x = node(dir, "x", &[]).await;
    let y = node(dir, "y", &[&x]).await;
    let y_id = y.id.clone();
    eventually("x knows y", || async {
        let (_, peers) = get(&x.url("/v1/peers")).await;
        peers["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == y_id.as_str())
            .then_some(())
    })
    .await;
    (x, y)
}

fn error_of(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_the_node_keeps_working() {
    let dir = TempDir::new("api-errors");
    let (x, y) = pair(&dir).await;
    let send = x.url("/v1/send");
    let ok_send = json!({"to": y.id, "protocol": "chat", "payload": b64(b"hi")});

    // Bad JSON syntax, wrong content type, wrong shape.
    let (s, b) = post_raw(&send, Some("application/json"), "{not json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&b).contains("bad JSON"), "{b}");
    let (s, b) = post_raw(&send, None, &ok_send.to_string()).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(error_of(&b).contains("Content-Type"), "{b}");
    let (s, b) = post(&send, json!({"to": y.id, "protocol": "chat"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&b).contains("missing field `payload`"), "{b}");
    let (s, b) = post(
        &send,
        json!({"to": y.id, "protocol": "chat", "payload": "", "x": 1}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&b).contains("unknown field `x`"), "{b}");

    // Bad base58 id, bad base64, bad protocol names.
    let (s, b) = post(
        &send,
        json!({"to": "not-base58-0OIl", "protocol": "chat", "payload": ""}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&b).contains("`to`: invalid node id"), "{b}");
    let (s, b) = post(&x.url("/v1/lookup"), json!({"id": "abc"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&b).contains("`id`: invalid node id"), "{b}");
    let (s, b) = post(
        &send,
        json!({"to": y.id, "protocol": "chat", "payload": "***"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&b).contains("base64"), "{b}");
    let (s, b) = post(
        &send,
        json!({"to": y.id, "protocol": "/kadmesh/findnode/1", "payload": ""}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&b).contains("reserved"), "{b}");
    let (s, _) = post(&send, json!({"to": y.id, "protocol": "", "payload": ""})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Oversize payload (over the frame), and a body over the HTTP limit.
    let big = b64(&vec![7u8; FRAME]);
    let (s, b) = post(
        &send,
        json!({"to": y.id, "protocol": "chat", "payload": big}),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error_of(&b).contains("limit"), "{b}");
    let huge = b64(&vec![7u8; 4 * FRAME]);
    let (s, b) = post(
        &send,
        json!({"to": y.id, "protocol": "chat", "payload": huge}),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error_of(&b).contains("too large"), "{b}");

    // Unknown protocol streams, duplicate and reserved registrations.
    let (s, b) = get(&x.url("/v1/protocols/nope/messages")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(error_of(&b).contains("not registered"), "{b}");
    let (s, _) = post(&y.url("/v1/protocols"), json!({"name": "chat"})).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, b) = post(&y.url("/v1/protocols"), json!({"name": "chat"})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(error_of(&b).contains("already registered"), "{b}");
    let (s, _) = post(&y.url("/v1/protocols"), json!({"name": "/kadmesh/mine"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Unknown node, request timeout, bad timeouts, unknown responses.
    let stranger = kadmesh::Keypair::random().node_id().to_string();
    let (s, b) = post(&x.url("/v1/lookup"), json!({"id": stranger})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(error_of(&b).contains("not found"), "{b}");
    let request = x.url("/v1/request");
    let (s, b) = post(
        &request,
        json!({"to": y.id, "protocol": "silent", "payload": "", "timeout_ms": 200}),
    )
    .await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    assert!(error_of(&b).contains("timed out"), "{b}");
    let (s, _) = post(
        &request,
        json!({"to": y.id, "protocol": "chat", "payload": "", "timeout_ms": 0}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = post(
        &x.url("/v1/respond"),
        json!({"req_id": "nope", "payload": ""}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = post(
        &x.url("/v1/respond"),
        json!({"req_id": "67e55044-10b1-426f-9247-bb680e5fe0c8", "payload": ""}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Broadcasts are checked like sends.
    let broadcast = x.url("/v1/broadcast");
    let (s, _) = post(&broadcast, json!({"protocol": "/kadmesh/x", "payload": ""})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = post(&broadcast, json!({"protocol": "chat", "payload": "%%"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = post(
        &broadcast,
        json!({"protocol": "chat", "payload": b64(&vec![1u8; FRAME])}),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);

    // Unknown routes and methods.
    let (s, b) = get(&x.url("/v1/nothing")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(error_of(&b).contains("no route"), "{b}");
    let (s, b) = post(&x.url("/v1/node"), json!({})).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert!(error_of(&b).contains("not allowed"), "{b}");

    // Still working: status, and a message that arrives.
    let (s, status) = get(&x.url("/v1/node")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(status["id"], x.id.as_str());
    let mut inbox = SseStream::open(&y.url("/v1/protocols/chat/messages")).await;
    let (s, b) = post(&send, ok_send).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let m = inbox.message().await;
    assert_eq!(m["from"], x.id.as_str());
    assert_eq!(unb64(m["payload"].as_str().unwrap()), b"hi");
    drop(inbox);
    x.daemon.shutdown().await;
    y.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_peers_table_request_respond_and_metrics() {
    let dir = TempDir::new("api-flow");
    let (x, y) = pair(&dir).await;

    let (_, status) = get(&x.url("/v1/node")).await;
    for key in [
        "id",
        "dht_id",
        "descriptor",
        "network_id",
        "client_version",
        "uptime_secs",
        "table_size",
        "connections",
    ] {
        assert!(!status[key].is_null(), "{key} missing in {status}");
    }
    assert_eq!(status["descriptor"], x.daemon.local_node().to_string());
    assert_eq!(status["table_size"], 1);
    let (_, table) = get(&x.url("/v1/table")).await;
    let entry = &table["buckets"][0]["entries"][0];
    assert_eq!(entry["id"], y.id.as_str());
    assert!(entry["last_seen_ms_ago"].as_u64().is_some(), "{table}");

    // Request through X's API, answered through Y's API.
    post(&y.url("/v1/protocols"), json!({"name": "echo"})).await;
    let mut inbox = SseStream::open(&y.url("/v1/protocols/echo/messages")).await;
    let req = tokio::spawn({
        let url = x.url("/v1/request");
        let body =
            json!({"to": y.id, "protocol": "echo", "payload": b64(b"ping?"), "timeout_ms": 20000});
        async move { post(&url, body).await }
    });
    let m = inbox.message().await;
    assert_eq!(unb64(m["payload"].as_str().unwrap()), b"ping?");
    let req_id = m["req_id"]
        .as_str()
        .expect("a request has a req_id")
        .to_owned();
    let (s, b) = post(
        &y.url("/v1/respond"),
        json!({"req_id": req_id, "payload": b64(b"pong!")}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = req.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["from"], y.id.as_str());
    assert_eq!(unb64(b["payload"].as_str().unwrap()), b"pong!");

    // Three sends on "chat": counted on both sides.
    post(&y.url("/v1/protocols"), json!({"name": "chat"})).await;
    let mut chat = SseStream::open(&y.url("/v1/protocols/chat/messages")).await;
    for i in 0..3u8 {
        let (s, b) = post(
            &x.url("/v1/send"),
            json!({"to": y.id, "protocol": "chat", "payload": b64(&[i; 10])}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        chat.message().await;
    }
    let (s, text) = get_text(&x.url("/metrics")).await;
    assert_eq!(s, StatusCode::OK);
    let xs = parse_prometheus(&text);
    assert_eq!(
        xs[r#"kadmesh_messages_total{direction="out",protocol="chat"}"#],
        3.0
    );
    assert_eq!(
        xs[r#"kadmesh_message_bytes_total{direction="out",protocol="chat"}"#],
        30.0
    );
    assert_eq!(xs["kadmesh_connections"], 1.0);
    assert_eq!(xs["kadmesh_routing_table_size"], 1.0);
    assert!(xs["kadmesh_handshakes_ok_total"] >= 1.0);
    let ys = parse_prometheus(&get_text(&y.url("/metrics")).await.1);
    assert!(
        ys["kadmesh_lookup_hops_count"] >= 1.0,
        "y's bootstrap ran lookups"
    );
    assert_eq!(
        ys[r#"kadmesh_messages_total{direction="in",protocol="chat"}"#],
        3.0
    );
    assert_eq!(
        ys[r#"kadmesh_messages_total{direction="in",protocol="echo"}"#],
        1.0
    );
    assert_eq!(
        ys[r#"kadmesh_messages_total{direction="out",protocol="echo"}"#],
        1.0
    );

    drop((inbox, chat));
    x.daemon.shutdown().await;
    y.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_without_a_subscriber_are_counted_not_silent() {
    let dir = TempDir::new("api-drops");
    let (x, y) = pair(&dir).await;
    post(&y.url("/v1/protocols"), json!({"name": "chat"})).await;
    let (s, _) = post(
        &x.url("/v1/send"),
        json!({"to": y.id, "protocol": "chat", "payload": ""}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    eventually("the drop is counted", || async {
        let ys = parse_prometheus(&get_text(&y.url("/metrics")).await.1);
        (ys.get(r#"kadmesh_api_messages_dropped_total{reason="no_subscriber"}"#) == Some(&1.0))
            .then_some(())
    })
    .await;
    x.daemon.shutdown().await;
    y.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_are_listed_added_and_lifted_and_bad_requests_get_a_400() {
    let dir = TempDir::new("api-bans");
    let (x, y) = pair(&dir).await;
    let bans = x.url("/v1/bans");
    let (s, b) = get(&bans).await;
    assert_eq!((s, b), (StatusCode::OK, json!({"bans": []})));

    // Ban the connected peer Y for 10 minutes: X drops it and refuses to send to it.
    let (s, b) = post(
        &bans,
        json!({"id": y.id, "duration": "10m", "reason": "testing"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["target"], y.id.as_str());
    assert_eq!(
        (b["kind"].as_str(), b["reason"].as_str()),
        (Some("id"), Some("manual"))
    );
    assert_eq!(b["note"], "testing");
    assert_eq!(
        b["until_ms"].as_i64().unwrap() - b["since_ms"].as_i64().unwrap(),
        600_000
    );
    let y_id = y.id.clone();
    eventually("x drops y", || async {
        let (_, peers) = get(&x.url("/v1/peers")).await;
        (!peers["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == y_id.as_str()))
        .then_some(())
    })
    .await;
    let (s, b) = post(
        &x.url("/v1/send"),
        json!({"to": y.id, "protocol": "chat", "payload": ""}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(error_of(&b).contains("is banned"), "{b}");

    // An IP with the default duration (bans.ban_duration, 1 h).
    let (s, b) = post(&bans, json!({"ip": "203.0.113.7"})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(
        b["until_ms"].as_i64().unwrap() - b["since_ms"].as_i64().unwrap(),
        3_600_000
    );
    let (_, b) = get(&bans).await;
    let targets: Vec<&str> = b["bans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, [y.id.as_str(), "203.0.113.7"]);
    let xs = parse_prometheus(&get_text(&x.url("/metrics")).await.1);
    assert_eq!(xs[r#"kadmesh_bans_active{kind="id"}"#], 1.0);
    assert_eq!(xs[r#"kadmesh_bans_active{kind="ip"}"#], 1.0);
    assert_eq!(xs[r#"kadmesh_bans_total{reason="manual"}"#], 2.0);
    assert!(xs[r#"kadmesh_banned_refusals_total{by="id"}"#] >= 1.0);

    // Bad input: a typed 400 (or 422 for the wrong shape), and nothing changes.
    for (body, says) in [
        (json!({}), "exactly one of `id` and `ip`"),
        (json!({"id": y.id, "ip": "203.0.113.8"}), "exactly one"),
        (json!({"ip": "300.1.1.1"}), "`ip`: invalid IP address"),
        (json!({"id": "0OIl"}), "`id`: invalid node id"),
        (
            json!({"ip": "203.0.113.8", "duration": "soon"}),
            "`duration`",
        ),
        (
            json!({"ip": "203.0.113.8", "duration": "0s"}),
            "ban duration",
        ),
        (json!({"ip": "127.0.0.1"}), "local address"),
        (json!({"id": x.id}), "its own id"),
    ] {
        let (s, b) = post(&bans, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} -> {b}");
        assert!(error_of(&b).contains(says), "{body} -> {b}");
    }
    let (s, b) = post(&bans, json!({"ip": "203.0.113.8", "bogus": 1})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, b) = delete(&x.url("/v1/bans/not-a-target")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(error_of(&b).contains("invalid ban target"), "{b}");
    assert_eq!(get(&bans).await.1["bans"].as_array().unwrap().len(), 2);

    // Lift both; a second lift is a 404.
    let (s, b) = delete(&x.url(&format!("/v1/bans/{}", y.id))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["target"], y.id.as_str());
    let (s, _) = delete(&x.url("/v1/bans/203.0.113.7")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = delete(&x.url(&format!("/v1/bans/{}", y.id))).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert_eq!(get(&bans).await.1, json!({"bans": []}));
    let (s, b) = post(
        &x.url("/v1/send"),
        json!({"to": y.id, "protocol": "chat", "payload": ""}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    x.daemon.shutdown().await;
    y.daemon.shutdown().await;
}
