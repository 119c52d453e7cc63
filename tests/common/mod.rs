//! Helpers shared by the integration tests: nodes on 127.0.0.1 port 0 and event waits.
#![allow(dead_code)]

use std::time::Duration;

use kadmesh::{Config, Swarm, SwarmEvent};
use tokio::sync::broadcast;

/// A config listening on 127.0.0.1 with an OS-chosen port.
pub fn local_config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    }
}

/// Routes `RUST_LOG`-filtered logs to the test output (once per process).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Starts a node with [`local_config`].
pub async fn node() -> Swarm {
    init_tracing();
    Swarm::start(local_config()).await.unwrap()
}

/// Upper bound on any wait in the tests, so a broken build fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(20);

/// Waits for the first event that `pick` accepts.
pub async fn wait_event<T>(
    events: &mut broadcast::Receiver<SwarmEvent>,
    mut pick: impl FnMut(&SwarmEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(ev) => {
                    if let Some(t) = pick(&ev) {
                        return t;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("event channel closed: {e}"),
            }
        }
    })
    .await
    .expect("timed out waiting for an event")
}
