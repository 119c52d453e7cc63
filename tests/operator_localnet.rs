//! `kadmesh localnet`: N node processes from a generated seed list, all stopped by one signal.
#![cfg(unix)]

mod operator_common;

use std::process::Stdio;

use operator_common::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localnet_starts_joins_and_stops_every_node() {
    let tmp = TempDir::new("localnet");
    let mut net = Command::new(BIN)
        .args(["localnet", "--nodes", "4", "--seeds", "2", "--data-root"])
        .arg(&tmp.0)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(net.stdout.take().unwrap()).lines();
    let mut apis = Vec::new();
    let mut ids = Vec::new();
    loop {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("localnet output")
            .unwrap()
            .expect("localnet exited early");
        if line.starts_with("localnet:") {
            break;
        }
        // node <i> <descriptor> <api url> <log>
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts.len(), 5, "{line}");
        assert_eq!(parts[1], apis.len().to_string());
        let descriptor: kadmesh::NodeInfo = parts[2].parse().unwrap();
        ids.push(descriptor.id.to_string());
        apis.push(parts[3].to_owned());
    }
    assert_eq!(apis.len(), 4);
    let seeds = std::fs::read_to_string(tmp.join("seeds.txt")).unwrap();
    let seed_nodes = kadmesh::dht::seeds::parse(&seeds, "seeds").unwrap();
    assert_eq!(seed_nodes.len(), 2);
    // Every node joins: the last one knows all the others.
    let last = apis.last().unwrap().clone();
    eventually("the last node knows the other three", || async {
        let (_, s) = get(&format!("{last}/v1/node")).await;
        (s["table_size"].as_u64() >= Some(3)).then_some(())
    })
    .await;

    signal(&net, libc::SIGTERM);
    let status = tokio::time::timeout(WAIT, net.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    // localnet waits for its children: no API answers any more.
    for api in &apis {
        assert!(
            reqwest::get(format!("{api}/v1/node")).await.is_err(),
            "{api} still up"
        );
    }
    for i in 0..4 {
        assert!(tmp.join(&format!("node-{i}/identity.key")).exists());
    }
}
