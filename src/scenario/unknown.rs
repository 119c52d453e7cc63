//! The seed's "Send message to node we don't know after Bootstrap" rows (and their "Measure" twins):
//! after bootstrap, random nodes send to nodes not in their routing table; each send looks the target up.

use std::time::Duration;

use rand::RngExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::network::Network;
use super::params::ScenarioParams;
use super::progress::Stage;
use super::report::{LookupsSection, MessagesSection, Report, Spread, rate};
use crate::error::Error;
use crate::swarm::Message;

/// Protocol the scenario's messages use.
const PROTOCOL: &str = "bench/unknown";
/// How long a message may take to arrive (time base of the testbed).
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the scenario on a built network and fills the lookup and message sections of `report`.
pub async fn run(
    net: &mut Network,
    params: &ScenarioParams,
    report: &mut Report,
) -> Result<(), Error> {
    let mut inboxes: Vec<mpsc::Receiver<Message>> = Vec::with_capacity(net.nodes.len());
    for n in &net.nodes {
        inboxes.push(n.register_protocol(PROTOCOL)?);
    }
    let healthy = net.healthy();
    let (mut rounds, mut rpcs) = (Vec::new(), Vec::new());
    let (mut attempted, mut found, mut sent, mut delivered) = (0usize, 0usize, 0usize, 0usize);
    let (mut answered, mut answer_time) = (0u64, Duration::ZERO);
    let started = Instant::now();
    let stage = Stage::new("sends", params.lookups);
    let mut tries = 0;
    while attempted < params.lookups && tries < params.lookups * 50 {
        tries += 1;
        let from = healthy[net.rng.random_range(0..healthy.len())];
        let to = healthy[net.rng.random_range(0..healthy.len())];
        let target = net.nodes[to].local_node().id;
        if from == to || net.nodes[from].table_contains(&target) {
            continue;
        }
        attempted += 1;
        sent += 1;
        stage.inc();
        let body = format!("unknown {attempted} from {from}");
        match net.nodes[from]
            .send_message(&target, PROTOCOL, body.clone())
            .await
        {
            Ok(delivery) => {
                found += 1;
                if let Some(l) = delivery.lookup {
                    rounds.push(f64::from(l.rounds));
                    rpcs.push(f64::from(l.rpcs));
                    answered += u64::from(l.answered);
                    answer_time += l.answer_time;
                }
                if await_body(&mut inboxes[to], &body).await {
                    delivered += 1;
                }
            }
            Err(e) => tracing::debug!(from, to, error = %e, "send to unknown failed"),
        }
    }
    report.lookups = Some(LookupsSection {
        attempted,
        succeeded: found,
        success_rate: rate(found, attempted),
        rounds: Spread::of(&mut rounds),
        findnode_rpcs: Spread::of(&mut rpcs),
        total_ms: started.elapsed().as_secs_f64() * 1e3,
        avg_findnode_ms: if answered == 0 {
            0.0
        } else {
            answer_time.as_secs_f64() * 1e3 / answered as f64
        },
    });
    report.messages = Some(MessagesSection {
        sent,
        delivered,
        delivery_rate: rate(delivered, sent),
    });
    if attempted < params.lookups {
        report.failures.push(format!(
            "only {attempted} of {} (source, target) pairs had the target outside the source's table",
            params.lookups
        ));
    }
    Ok(())
}

/// Waits for the message with `body`, skipping late arrivals of earlier messages.
async fn await_body(inbox: &mut mpsc::Receiver<Message>, body: &str) -> bool {
    let deadline = Instant::now() + ARRIVAL_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, inbox.recv()).await {
            Ok(Some(m)) if m.data() == body.as_bytes() => return true,
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return false,
        }
    }
}
