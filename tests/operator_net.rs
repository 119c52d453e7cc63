//! Five `kadmesh node` processes from one seed list, driven only through their HTTP APIs: a send to a
//! node the sender does not know, request/response, a broadcast, a SIGKILLed node, and its restart from
//! its data directory with the seed list gone.
#![cfg(unix)]

mod operator_common;

use std::path::Path;

use kadmesh::Keypair;
use operator_common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn ids_in_table(table: &Value) -> Vec<String> {
    table["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["entries"].as_array().unwrap().iter())
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

fn ids_of_peers(peers: &Value) -> Vec<String> {
    peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

fn write_key(dir: &Path, key: &Keypair) {
    key.write_key_file(&dir.join("identity.key")).unwrap();
}

async fn subscribe(node: &NodeProc, protocol: &str) -> SseStream {
    let (s, b) = post(&node.url("/v1/protocols"), json!({"name": protocol})).await;
    assert!(s == StatusCode::CREATED || s == StatusCode::CONFLICT, "{b}");
    SseStream::open(&node.url(&format!("/v1/protocols/{protocol}/messages"))).await
}

async fn send(from: &NodeProc, to: &NodeProc, protocol: &str, payload: &[u8]) -> Value {
    let body = json!({"to": to.id(), "protocol": protocol, "payload": b64(payload)});
    let (s, b) = post(&from.url("/v1/send"), body).await;
    assert_eq!(s, StatusCode::OK, "{} -> {}: {b}", from.name, to.name);
    b
}

async fn expect_message(inbox: &mut SseStream, from: &NodeProc, payload: &[u8]) {
    let m = inbox.message().await;
    assert_eq!(m["from"], from.id().as_str(), "{m}");
    assert_eq!(m["author"], from.id().as_str(), "{m}");
    assert_eq!(unb64(m["payload"].as_str().unwrap()), payload);
    assert_eq!(m["gossip"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_processes_one_seed_list_kill_and_restart() {
    let tmp = TempDir::new("net");
    let dir = |name: &str| tmp.join(name);
    for n in ["a", "b", "c", "d", "e"] {
        std::fs::create_dir_all(dir(n)).unwrap();
    }
    // C is the seed. A runs with k = 1 so that its bootstrap contacts only C; E is chosen among the
    // other keys as the farthest from A, so A cannot learn E while joining.
    let c_key = Keypair::random();
    let a_key = Keypair::random();
    let mut rest: Vec<Keypair> = (0..3).map(|_| Keypair::random()).collect();
    let a_dht = a_key.node_id().dht_id();
    rest.sort_by_key(|k| k.node_id().dht_id().distance(&a_dht));
    let (b_key, d_key, e_key) = (rest[0].clone(), rest[1].clone(), rest[2].clone());
    for (n, k) in [
        ("a", &a_key),
        ("b", &b_key),
        ("c", &c_key),
        ("d", &d_key),
        ("e", &e_key),
    ] {
        write_key(&dir(n), k);
    }
    let seeds = tmp.join("seeds.txt");
    let snapshot_every = ["--snapshot-interval", "200ms"];

    let mut c = NodeProc::start("C", &dir("c"), 0, &snapshot_every).await;
    assert_eq!(c.descriptor.id, c_key.node_id());
    std::fs::write(&seeds, format!("# test seed list\n{}\n", c.descriptor)).unwrap();
    let seed_arg = ["--bootstrap", seeds.to_str().unwrap()];
    let mut b = NodeProc::start("B", &dir("b"), 0, &seed_arg).await;
    let mut d = NodeProc::start("D", &dir("d"), 0, &seed_arg).await;
    let mut e = NodeProc::start("E", &dir("e"), 0, &seed_arg).await;
    // A node writes its first snapshot when its join has finished (no more bootstrap lookups).
    let joined = |n: &str| {
        let file = dir(n).join("peers.txt");
        async move {
            eventually(&format!("{file:?} written after the join"), || async {
                file.exists().then_some(())
            })
            .await
        }
    };
    for n in ["b", "d", "e"] {
        joined(n).await;
    }
    let a_config = dir("a.toml");
    std::fs::write(
        &a_config,
        format!(
            "network_id = 1\n[bootstrap]\nfiles = [{:?}]\n[dht]\nbucket_size = 1\nmin_routing_table = 1\n[net]\nexempt_local = true\n",
            seeds.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut a = NodeProc::start("A", &dir("a"), 0, &["--config", a_config.to_str().unwrap()]).await;
    joined("a").await;

    // A does not know E: neither in its table nor connected.
    let (_, table) = get(&a.url("/v1/table")).await;
    let names = format!(
        "A {} B {} C {} D {} E {}",
        a.id(),
        b.id(),
        c.id(),
        d.id(),
        e.id()
    );
    assert!(
        !ids_in_table(&table).contains(&e.id()),
        "{names}\n{table}\n{}",
        a.log()
    );
    let (_, peers) = get(&a.url("/v1/peers")).await;
    assert!(!ids_of_peers(&peers).contains(&e.id()), "{peers}");

    // Send from A to E through A's API; read it from E's stream. A finds E by a lookup.
    let mut e_inbox = subscribe(&e, "chat").await;
    let delivery = send(&a, &e, "chat", b"hello E").await;
    assert_eq!(delivery["to"]["id"], e.id().as_str());
    assert!(delivery["lookup"]["rpcs"].as_u64() >= Some(1), "{delivery}");
    expect_message(&mut e_inbox, &a, b"hello E").await;

    // Request from B, answered by E through its API.
    let req = tokio::spawn({
        let url = b.url("/v1/request");
        let body =
            json!({"to": e.id(), "protocol": "chat", "payload": b64(b"2+2?"), "timeout_ms": 20000});
        async move { post(&url, body).await }
    });
    let m = e_inbox.message().await;
    let req_id = m["req_id"].as_str().unwrap().to_owned();
    let (s, _) = post(
        &e.url("/v1/respond"),
        json!({"req_id": req_id, "payload": b64(b"4")}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, answer) = req.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{answer}");
    assert_eq!(unb64(answer["payload"].as_str().unwrap()), b"4");

    // Broadcast from B: every other node's stream gets it once, as gossip authored by B.
    let mut a_inbox = subscribe(&a, "chat").await;
    let mut c_inbox = subscribe(&c, "chat").await;
    let mut d_inbox = subscribe(&d, "chat").await;
    let body = json!({"protocol": "chat", "payload": b64(b"to everyone")});
    let (s, report) = post(&b.url("/v1/broadcast"), body).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert!(
        !report["sent_to"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert_eq!(report["id"].as_str().unwrap().len(), 64, "{report}");
    for inbox in [&mut a_inbox, &mut c_inbox, &mut d_inbox, &mut e_inbox] {
        let m = inbox.message().await;
        assert_eq!(m["author"], b.id().as_str(), "{m}");
        assert_eq!(m["gossip"], true, "{m}");
        assert_eq!(unb64(m["payload"].as_str().unwrap()), b"to everyone");
    }
    drop((a_inbox, c_inbox));

    // C's snapshot holds the network before C dies.
    let snapshot = dir("c").join("peers.txt");
    eventually("C's snapshot lists the other four", || async {
        let text = std::fs::read_to_string(&snapshot).ok()?;
        let nodes = kadmesh::dht::seeds::parse(&text, "snapshot").ok()?;
        (nodes.len() >= 4).then_some(())
    })
    .await;
    let c_id = c.id();
    let c_port = c.descriptor.addr.port();
    c.kill().await;

    // The rest keep working without the seed.
    send(&b, &d, "chat", b"B to D").await;
    expect_message(&mut d_inbox, &b, b"B to D").await;
    send(&a, &e, "chat", b"again").await;
    expect_message(&mut e_inbox, &a, b"again").await;
    let (s, found) = post(&d.url("/v1/lookup"), json!({"id": e.id()})).await;
    assert_eq!(s, StatusCode::OK, "{found}");
    assert_eq!(found["node"]["id"], e.id().as_str());

    // Restart C on its data directory (same port, as an operator would), without any seed list.
    std::fs::remove_file(&seeds).unwrap();
    let mut c = NodeProc::start("C2", &dir("c"), c_port, &[]).await;
    assert_eq!(c.id(), c_id, "same identity after restart");
    c.wait_json("rejoined from its snapshot", "/v1/node", |s| {
        s["table_size"].as_u64() >= Some(3) && s["connections"].as_u64() >= Some(1)
    })
    .await;
    let mut c_inbox = subscribe(&c, "chat").await;
    send(&d, &c, "chat", b"welcome back").await;
    expect_message(&mut c_inbox, &d, b"welcome back").await;
    send(&c, &d, "chat", b"thanks").await;
    expect_message(&mut d_inbox, &c, b"thanks").await;

    // /metrics of A counts what A sent on "chat".
    let (_, text) = get_text(&a.url("/metrics")).await;
    let samples = parse_prometheus(&text);
    assert_eq!(
        samples[r#"kadmesh_messages_total{direction="out",protocol="chat"}"#],
        2.0
    );

    // Everyone stops cleanly on SIGTERM and leaves a snapshot.
    drop((e_inbox, d_inbox, c_inbox));
    for n in [&mut a, &mut b, &mut c, &mut d, &mut e] {
        let status = n.terminate().await;
        assert!(status.success(), "{} exited with {status}", n.name);
    }
    for n in ["a", "b", "d", "e"] {
        assert!(dir(n).join("peers.txt").exists(), "{n} wrote no snapshot");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_snapshot_is_reported_and_ignored() {
    let tmp = TempDir::new("corrupt");
    let mut seed = NodeProc::start("S", &tmp.join("s"), 0, &[]).await;
    let seeds = tmp.join("seeds.txt");
    std::fs::write(&seeds, format!("{}\n", seed.descriptor)).unwrap();
    std::fs::create_dir_all(tmp.join("n")).unwrap();
    std::fs::write(
        tmp.join("n").join("peers.txt"),
        "\u{0}garbage\n127.0.0.1:1/???\n",
    )
    .unwrap();
    let mut n = NodeProc::start(
        "N",
        &tmp.join("n"),
        0,
        &["--bootstrap", seeds.to_str().unwrap()],
    )
    .await;
    n.wait_json("joined from the seed list", "/v1/node", |s| {
        s["table_size"].as_u64() >= Some(1)
    })
    .await;
    assert!(
        n.log().contains("corrupt routing-table snapshot"),
        "{}",
        n.log()
    );
    // A second node on the same data directory is refused, the first keeps running.
    let out = std::process::Command::new(BIN)
        .args(["node", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.join("n"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another kadmesh node"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(n.terminate().await.success());
    assert!(seed.terminate().await.success());
    // The corrupt file was replaced by a good snapshot on shutdown.
    let text = std::fs::read_to_string(tmp.join("n").join("peers.txt")).unwrap();
    assert_eq!(
        kadmesh::dht::seeds::parse(&text, "x").unwrap(),
        vec![seed.descriptor]
    );
}
