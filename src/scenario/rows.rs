//! The seed table's small rows: "Simple message exchange" (`exchange`), "Multiple messages with one
//! target node" (`one-target`) and "Send message to unknown node (Simple FindNode)" (`find-node`).

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::network::{Testbed, make_faulty};
use super::params::ScenarioParams;
use super::report::{LatencySection, LookupsSection, MessagesSection, Report, Spread, rate};
use crate::error::Error;
use crate::swarm::{Message, Swarm};

/// Protocol the rows use.
const PROTOCOL: &str = "bench/row";
/// How long a request may wait for its response (time base of the testbed).
const TIMEOUT: Duration = Duration::from_secs(20);
/// Requests in flight at once in `one-target`.
const CONCURRENCY: usize = 64;

/// Answers every request on `inbox` with its own payload until the channel closes.
fn echo(mut inbox: mpsc::Receiver<Message>) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut served = 0;
        while let Some(m) = inbox.recv().await {
            served += 1;
            if m.is_request() {
                let _ = m.respond(m.payload().clone()).await;
            }
        }
        served
    })
}

async fn spawn_all(
    testbed: &Testbed,
    params: &ScenarioParams,
    n: usize,
) -> Result<Vec<Swarm>, Error> {
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        nodes.push(testbed.spawn(params.node_config()).await?);
    }
    Ok(nodes)
}

/// Shuts the nodes and the testbed down; returns how many messages the echo server (if any) saw.
async fn teardown(
    testbed: &Testbed,
    nodes: Vec<Swarm>,
    server: Option<tokio::task::JoinHandle<usize>>,
) -> usize {
    for n in nodes {
        n.shutdown().await;
    }
    let served = match server {
        Some(task) => task.await.unwrap_or(0),
        None => 0,
    };
    testbed.shutdown().await;
    served
}

/// "Simple message exchange": node 1 sends a request to node 2, which reads it, learns node 1 and
/// answers; node 1 reads the answer.
pub async fn exchange(
    testbed: &Testbed,
    params: &ScenarioParams,
    report: &mut Report,
) -> Result<(), Error> {
    let nodes = spawn_all(testbed, params, 2).await?;
    let (a, b) = (&nodes[0], &nodes[1]);
    let server = echo(b.register_protocol(PROTOCOL)?);
    let started = Instant::now();
    let answered = a
        .request_to(&b.local_node(), PROTOCOL, &b"ping"[..], TIMEOUT)
        .await
        .is_ok_and(|m| m.data() == b"ping");
    let rtt = started.elapsed().as_secs_f64() * 1e6;
    if !b.table_contains(&a.local_node().id) {
        report
            .failures
            .push("the receiver did not add the sender to its routing table".into());
    }
    report.messages = Some(MessagesSection {
        sent: 1,
        delivered: usize::from(answered),
        delivery_rate: rate(usize::from(answered), 1),
    });
    report.latency_us = Some(LatencySection::of(&mut [rtt]));
    teardown(testbed, nodes, Some(server)).await;
    Ok(())
}

/// "Multiple messages with one target node": every node meets the first node and sends it a request;
/// the first node answers them all.
pub async fn one_target(
    testbed: &Testbed,
    params: &ScenarioParams,
    report: &mut Report,
) -> Result<(), Error> {
    // The target accepts a connection from every other node.
    let mut target_config = params.node_config();
    target_config.net.max_inbound = target_config.net.max_inbound.max(params.nodes);
    let mut nodes = vec![testbed.spawn(target_config).await?];
    nodes.extend(spawn_all(testbed, params, params.nodes - 1).await?);
    let target = nodes[0].local_node();
    let mut rng = StdRng::seed_from_u64(params.seed);
    let faulty = make_faulty(testbed, params, &nodes, &mut rng)?;
    let server = echo(nodes[0].register_protocol(PROTOCOL)?);
    let results: Vec<(usize, Option<f64>)> =
        futures::stream::iter(nodes.iter().enumerate().skip(1))
            .map(|(i, n)| async move {
                let rtt = async {
                    n.add_node(&target).await.ok()?;
                    let body = format!("message {i}");
                    let started = Instant::now();
                    let reply = n
                        .request(&target.id, PROTOCOL, body.clone(), TIMEOUT)
                        .await
                        .ok()?;
                    (reply.data() == body.as_bytes()).then(|| started.elapsed().as_secs_f64() * 1e6)
                };
                (i, rtt.await)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
    // Messages between non-faulty nodes must arrive; faulty senders' fate is not the row's question.
    let healthy: Vec<Option<f64>> = results
        .iter()
        .filter(|(i, _)| !faulty.contains(i))
        .map(|(_, r)| *r)
        .collect();
    let mut rtts: Vec<f64> = healthy.iter().flatten().copied().collect();
    let sent = healthy.len();
    report.messages = Some(MessagesSection {
        sent,
        delivered: rtts.len(),
        delivery_rate: rate(rtts.len(), sent),
    });
    report.latency_us = Some(LatencySection::of(&mut rtts));
    let served = teardown(testbed, nodes, Some(server)).await;
    if served < rtts.len() {
        report.failures.push(format!(
            "the target saw {served} messages, {} were answered",
            rtts.len()
        ));
    }
    Ok(())
}

/// Request/response round trips between two nodes (the seed's "Measure message latency" on any testbed;
/// on TCP `kadmesh bench latency` also measures a raw TCP baseline).
pub async fn latency(
    testbed: &Testbed,
    params: &ScenarioParams,
    report: &mut Report,
) -> Result<(), Error> {
    let nodes = spawn_all(testbed, params, 2).await?;
    let server = echo(nodes[1].register_protocol(PROTOCOL)?);
    let payload = bytes::Bytes::from(vec![0x5a; params.size]);
    let target = nodes[1].local_node();
    let (mut rtts, mut sent) = (Vec::with_capacity(params.messages), 0);
    for _ in 0..params.messages {
        sent += 1;
        let started = Instant::now();
        if nodes[0]
            .request_to(&target, PROTOCOL, payload.clone(), TIMEOUT)
            .await
            .is_ok()
        {
            rtts.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    report.messages = Some(MessagesSection {
        sent,
        delivered: rtts.len(),
        delivery_rate: rate(rtts.len(), sent),
    });
    report.latency_us = Some(LatencySection::of(&mut rtts));
    teardown(testbed, nodes, Some(server)).await;
    Ok(())
}

/// "Send message to unknown node (Simple FindNode)": nodes 2 and 3 know only node 1; node 2 sends to
/// node 3, finding it through a FindNode lookup.
pub async fn find_node(
    testbed: &Testbed,
    params: &ScenarioParams,
    report: &mut Report,
) -> Result<(), Error> {
    let nodes = spawn_all(testbed, params, 3).await?;
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut inbox = n3.register_protocol(PROTOCOL)?;
    n2.add_node(&n1.local_node()).await?;
    n3.add_node(&n1.local_node()).await?;
    // Node 1 serves only nodes that answered it (issue 7): it checks node 3.
    n1.add_node(&n3.local_node()).await?;
    let started = Instant::now();
    let sent = n2
        .send_message(&n3.local_node().id, PROTOCOL, &b"hello node 3"[..])
        .await;
    let mut delivered = 0;
    if sent.is_ok()
        && let Ok(Some(m)) = tokio::time::timeout(TIMEOUT, inbox.recv()).await
        && m.data() == b"hello node 3"
    {
        delivered = 1;
    }
    let lookup = sent.as_ref().ok().and_then(|d| d.lookup);
    report.lookups = Some(LookupsSection {
        attempted: 1,
        succeeded: usize::from(sent.is_ok()),
        success_rate: rate(usize::from(sent.is_ok()), 1),
        rounds: Spread::of(
            &mut lookup
                .map(|l| vec![f64::from(l.rounds)])
                .unwrap_or_default(),
        ),
        findnode_rpcs: Spread::of(&mut lookup.map(|l| vec![f64::from(l.rpcs)]).unwrap_or_default()),
        total_ms: started.elapsed().as_secs_f64() * 1e3,
        avg_findnode_ms: lookup.filter(|l| l.answered > 0).map_or(0.0, |l| {
            l.answer_time.as_secs_f64() * 1e3 / f64::from(l.answered)
        }),
    });
    report.messages = Some(MessagesSection {
        sent: 1,
        delivered,
        delivery_rate: rate(delivered, 1),
    });
    if lookup.is_none() && sent.is_ok() {
        report
            .failures
            .push("node 2 already knew node 3: no FindNode lookup happened".into());
    }
    teardown(testbed, nodes, None).await;
    Ok(())
}
