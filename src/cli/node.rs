//! `kadmesh node`: runs a node until SIGINT or SIGTERM.
//!
//! Stdout carries exactly: line 1 the node's descriptor (`ip:port/base58`), line 2 (only with `--api`)
//! `api http://ADDR` with the bound address. Logs go to stderr.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::CliResult;
use super::config::NodeFile;
use crate::config::{network_id_from_name, parse_network_id};
use crate::daemon::Daemon;
use crate::peer::NodeInfo;

/// Arguments of `kadmesh node`. Flags override the `--config` file.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// Configuration file (see `kadmesh config default`); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on for peers (default 0.0.0.0:7513; port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Data directory: identity key, routing-table snapshot (default ./kadmesh-data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Identity key file (default <data-dir>/identity.key); created (0600) if missing.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Serve the HTTP API and /metrics on this address (port 0 picks one; printed as
    /// `api http://ADDR` on the second stdout line). Off unless given.
    #[arg(long, value_name = "ADDR")]
    pub api: Option<SocketAddr>,
    /// A boot node, as `ip:port/base58key`; repeatable; replaces the file's `bootstrap.nodes`.
    #[arg(long = "peer", value_name = "DESCRIPTOR")]
    pub peers: Vec<NodeInfo>,
    /// A seed-list file (one descriptor a line, `#` comments); repeatable; replaces the file's
    /// `bootstrap.files`.
    #[arg(long = "bootstrap", value_name = "FILE")]
    pub bootstrap_files: Vec<PathBuf>,
    /// Network id, decimal or 0x hex (default 1); peers with another id are refused.
    #[arg(long, value_name = "N", value_parser = parse_network_id, conflicts_with = "network")]
    pub network_id: Option<i32>,
    /// Network name; the network id is derived from it (as Factom's NewNetworkID).
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    /// How often the routing table is saved if it changed, e.g. 30s (default 1m).
    #[arg(long, value_name = "DURATION", value_parser = humantime_serde::re::humantime::parse_duration)]
    pub snapshot_interval: Option<Duration>,
    /// Exempt loopback and private addresses from the per-IP limits (sets `net.exempt_local`; for
    /// test networks on one host).
    #[arg(long)]
    pub exempt_local: bool,
}

impl NodeArgs {
    /// The configuration file (or the defaults) with the flags applied, validated.
    pub fn resolve(&self) -> Result<NodeFile, Box<dyn std::error::Error>> {
        let mut file = match &self.config {
            Some(path) => NodeFile::load(path).map_err(|e| format!("{}: {e}", path.display()))?,
            None => NodeFile::default(),
        };
        let (node, config) = (&mut file.node, &mut file.config);
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(dir) = &self.data_dir {
            node.data_dir = dir.clone();
        }
        if let Some(key) = &self.key {
            node.key = Some(key.clone());
        }
        if let Some(api) = self.api {
            node.api = Some(api);
        }
        if !self.peers.is_empty() {
            config.bootstrap.nodes = self.peers.iter().map(ToString::to_string).collect();
        }
        if !self.bootstrap_files.is_empty() {
            config.bootstrap.files = self.bootstrap_files.clone();
        }
        if let Some(id) = self.network_id {
            config.network_id = id;
        }
        if let Some(name) = &self.network {
            if name.is_empty() {
                return Err("--network: a network name must not be empty".into());
            }
            config.network_id = network_id_from_name(name);
        }
        if let Some(interval) = self.snapshot_interval {
            node.snapshot_interval = interval;
        }
        if self.exempt_local {
            config.net.exempt_local = true;
        }
        file.validate()?;
        Ok(file)
    }
}

/// Runs the node on a multi-threaded runtime until a termination signal.
pub fn run(args: NodeArgs) -> CliResult {
    let file = args.resolve()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let daemon = Daemon::start(file.node, file.config).await?;
        let announced = announce(&daemon);
        let signal = match announced {
            Ok(()) => wait_for_signal().await,
            Err(e) => Err(e),
        };
        tracing::info!("shutting down");
        daemon.shutdown().await;
        signal?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the descriptor and, with an API, its address.
fn announce(daemon: &Daemon) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", daemon.local_node())?;
    if let Some(api) = daemon.api_addr() {
        writeln!(stdout, "api http://{api}")?;
    }
    stdout.flush()
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C elsewhere).
pub(super) async fn wait_for_signal() -> std::io::Result<()> {
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
