//! `kadmesh node`: runs a node until SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::CliResult;
use crate::config::Config;
use crate::identity::Keypair;
use crate::peer::NodeInfo;
use crate::swarm::Swarm;

/// Arguments of `kadmesh node`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:7513")]
    pub listen: SocketAddr,
    /// Identity key file; created (0600) if missing. Without it the node uses a fresh identity.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// A peer to connect to at start, as `ip:port/base58key`; repeatable.
    #[arg(long = "peer", value_name = "DESCRIPTOR")]
    pub peers: Vec<NodeInfo>,
    /// Network id; peers with another id are refused.
    #[arg(long, default_value_t = 1)]
    pub network_id: i32,
}

/// Runs the node on a multi-threaded runtime until a termination signal.
pub fn run(args: NodeArgs) -> CliResult {
    let keypair = match &args.key {
        Some(path) => Keypair::load_or_create(path)?,
        None => Keypair::random(),
    };
    let config = Config {
        listen: args.listen,
        network_id: args.network_id,
        ..Config::default()
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let swarm = Swarm::start_with_key(config, keypair).await?;
        let mut stdout = std::io::stdout();
        writeln!(stdout, "{}", swarm.local_node())?;
        stdout.flush()?;
        for peer in &args.peers {
            match swarm.connect_node(peer).await {
                Ok(()) => tracing::info!(%peer, "connected"),
                Err(e) => tracing::warn!(%peer, error = %e, "could not connect"),
            }
        }
        wait_for_signal().await?;
        tracing::info!("shutting down");
        swarm.shutdown().await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C elsewhere).
async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
