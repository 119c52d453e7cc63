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
    /// A boot node, as `ip:port/base58key`; repeatable.
    #[arg(long = "peer", value_name = "DESCRIPTOR")]
    pub peers: Vec<NodeInfo>,
    /// A seed-list file of boot nodes (one descriptor a line, `#` comments); repeatable.
    #[arg(long = "bootstrap", value_name = "FILE")]
    pub bootstrap_files: Vec<PathBuf>,
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
    let mut config = Config {
        listen: args.listen,
        network_id: args.network_id,
        ..Config::default()
    };
    config.bootstrap.nodes = args.peers.iter().map(ToString::to_string).collect();
    config.bootstrap.files = args.bootstrap_files.clone();
    config.validate()?;
    // A bad seed list is a startup error, not a silent empty network.
    for file in &config.bootstrap.files {
        crate::dht::seeds::load(file)?;
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let swarm = Swarm::start_with_key(config, keypair).await?;
        let mut stdout = std::io::stdout();
        writeln!(stdout, "{}", swarm.local_node())?;
        stdout.flush()?;
        let has_boot_nodes = !args.peers.is_empty() || !args.bootstrap_files.is_empty();
        let joiner = swarm.clone();
        let join = tokio::spawn(async move {
            if !has_boot_nodes {
                return;
            }
            // Boot nodes may start after us: retry with backoff until one answers.
            let mut backoff = std::time::Duration::from_secs(1);
            loop {
                match joiner.bootstrap().await {
                    Ok(r) => {
                        tracing::info!(table = r.table_size, lookups = r.lookups, "bootstrap done");
                        return;
                    }
                    Err(crate::Error::Shutdown) => return,
                    Err(e) => tracing::warn!(error = %e, retry_in = ?backoff, "bootstrap failed"),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(60));
            }
        });
        wait_for_signal().await?;
        join.abort();
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
