//! The long-running node behind `kadmesh node`: a [`Swarm`] with a data directory (identity,
//! routing-table snapshot and bans), a join loop (persisted peers first, then the seed list, with backoff), the
//! metrics and the optional HTTP API. Usable in-process too: [`Daemon::start`], [`Daemon::shutdown`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{ApiServer, ApiStartError};
use crate::ban::store::BanLoad;
use crate::config::{Config, ConfigError};
use crate::error::Error;
use crate::metrics::{MetricsError, NodeMetrics};
use crate::peer::NodeInfo;
use crate::persist::{self, DataDir, PersistError, SnapshotFile, SnapshotLoad};
use crate::swarm::Swarm;

/// Longest wait between two join attempts.
pub const MAX_JOIN_BACKOFF: Duration = Duration::from_secs(60);

/// Settings of the node process (the `[node]` section of `node.toml`), next to the swarm's [`Config`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSettings {
    /// Data directory: identity key, routing-table snapshot, bans, lock (default `./kadmesh-data`).
    pub data_dir: PathBuf,
    /// Identity key file (default `<data_dir>/identity.key`); created (0600) if missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Address of the HTTP API, e.g. `127.0.0.1:7600`; no API unless set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<SocketAddr>,
    /// How often the routing table is written to the data directory if it changed (default 1 min); it
    /// is also written after joining and on shutdown.
    #[serde(with = "humantime_serde")]
    pub snapshot_interval: Duration,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./kadmesh-data"),
            key: None,
            api: None,
            snapshot_interval: Duration::from_secs(60),
        }
    }
}

impl NodeSettings {
    /// Checks every value; the error names the key (`node.*`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError {
                key: "node.data_dir",
                reason: "must not be empty".into(),
            });
        }
        if self.key.as_ref().is_some_and(|k| k.as_os_str().is_empty()) {
            return Err(ConfigError {
                key: "node.key",
                reason: "must not be empty".into(),
            });
        }
        if self.snapshot_interval < Duration::from_millis(100) {
            return Err(ConfigError {
                key: "node.snapshot_interval",
                reason: "must be at least 100ms".into(),
            });
        }
        Ok(())
    }
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory or identity could not be used.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// The swarm did not start (bind, seed list, ...).
    #[error(transparent)]
    Swarm(#[from] Error),
    /// The metrics registry could not be set up.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The API could not bind.
    #[error(transparent)]
    Api(#[from] ApiStartError),
}

/// A running node. Stop it with [`Daemon::shutdown`].
pub struct Daemon {
    /// The node.
    swarm: Swarm,
    /// Its metrics.
    metrics: Arc<NodeMetrics>,
    /// The API, if enabled.
    api: Option<ApiServer>,
    /// The data directory (holds the lock while the node runs).
    data_dir: DataDir,
    /// What the snapshot held at start.
    persisted: SnapshotLoad,
    /// What the bans file held at start.
    persisted_bans: BanLoad,
    /// Stops the join, snapshot and bans tasks.
    cancel: CancellationToken,
    /// The join, snapshot and bans tasks.
    tasks: TaskTracker,
}

impl Daemon {
    /// Opens the data directory, loads (or creates) the identity, starts the swarm, metrics and API, and
    /// starts joining: persisted peers first, then the configured seed list, retrying with backoff.
    pub async fn start(settings: NodeSettings, config: Config) -> Result<Daemon, DaemonError> {
        settings.validate()?;
        config.validate()?;
        // A bad seed list is a startup error, not a silent empty network.
        for file in &config.bootstrap.files {
            crate::dht::seeds::load(file).map_err(Error::from)?;
        }
        let data_dir = DataDir::open(&settings.data_dir)?;
        let keypair = data_dir.keypair(settings.key.as_deref())?;
        let snapshot = data_dir.snapshot();
        let persisted = snapshot.load();
        match &persisted {
            SnapshotLoad::Corrupt(reason) => tracing::warn!(
                file = %snapshot.path().display(), %reason,
                "ignoring the corrupt routing-table snapshot; joining from the seed list"
            ),
            SnapshotLoad::Loaded(peers) => {
                tracing::info!(peers = peers.len(), "loaded persisted peers")
            }
            SnapshotLoad::Missing => {}
        }
        let bans_file = data_dir.bans();
        let persisted_bans = bans_file.load(crate::transport::tcp::connection::unix_ms());
        for problem in &persisted_bans.problems {
            tracing::warn!(file = %bans_file.path().display(), %problem, "skipping a ban");
        }
        let swarm = Swarm::start_with_key(config, keypair).await?;
        let restored = swarm.restore_bans(persisted_bans.bans.clone());
        // Subscribed before anything can ban, so the bans task sees every later change.
        let ban_changes = swarm.ban_changes();
        if !restored.is_empty() || persisted_bans.expired > 0 {
            tracing::info!(
                bans = restored.len(),
                expired = persisted_bans.expired,
                "loaded persisted bans"
            );
        }
        let metrics = match NodeMetrics::start(swarm.clone()) {
            Ok(m) => m,
            Err(e) => {
                swarm.shutdown().await;
                return Err(e.into());
            }
        };
        if let Some(addr) = settings.api.filter(|a| !a.ip().is_loopback()) {
            tracing::warn!(%addr, "the HTTP API has no authentication: expose it only to trusted networks");
        }
        let api = match settings.api {
            None => None,
            Some(addr) => match ApiServer::start(addr, swarm.clone(), Arc::clone(&metrics)).await {
                Ok(api) => Some(api),
                Err(e) => {
                    metrics.shutdown().await;
                    swarm.shutdown().await;
                    return Err(e.into());
                }
            },
        };
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(join_loop(
            swarm.clone(),
            persisted.peers().to_vec(),
            snapshot.clone(),
            cancel.clone(),
        ));
        tasks.spawn(persist::snapshot_loop(
            swarm.clone(),
            snapshot,
            settings.snapshot_interval,
            cancel.clone(),
        ));
        tasks.spawn(persist::bans_loop(
            swarm.clone(),
            ban_changes,
            bans_file,
            cancel.clone(),
        ));
        Ok(Daemon {
            swarm,
            metrics,
            api,
            data_dir,
            persisted,
            persisted_bans,
            cancel,
            tasks,
        })
    }

    /// The swarm.
    pub fn swarm(&self) -> &Swarm {
        &self.swarm
    }

    /// Our descriptor.
    pub fn local_node(&self) -> NodeInfo {
        self.swarm.local_node()
    }

    /// The API's address, if enabled.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().map(ApiServer::local_addr)
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Arc<NodeMetrics> {
        &self.metrics
    }

    /// The data directory.
    pub fn data_dir(&self) -> &DataDir {
        &self.data_dir
    }

    /// What the routing-table snapshot held at start.
    pub fn persisted(&self) -> &SnapshotLoad {
        &self.persisted
    }

    /// What the bans file held at start: the bans loaded (expired ones not), how many had expired, and
    /// the lines skipped.
    pub fn persisted_bans(&self) -> &BanLoad {
        &self.persisted_bans
    }

    /// Stops the API, the join, snapshot and bans tasks, writes the final snapshot and bans, stops the
    /// swarm and the metrics, and joins every task.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Some(api) = &self.api {
            api.shutdown().await;
        }
        self.tasks.close();
        self.tasks.wait().await;
        match persist::save_table(&self.swarm, &self.data_dir.snapshot()).await {
            Ok(n) => tracing::info!(peers = n, "routing-table snapshot written"),
            Err(e) => tracing::warn!(error = %e, "cannot write the routing-table snapshot"),
        }
        match persist::save_bans(&self.swarm, &self.data_dir.bans()).await {
            Ok(n) => tracing::info!(bans = n, "bans written"),
            Err(e) => tracing::warn!(error = %e, "cannot write the bans file"),
        }
        self.swarm.shutdown().await;
        self.metrics.shutdown().await;
    }
}

/// Joins the network: the persisted peers first, then the configured seed list; retries with backoff
/// (1 s doubling to [`MAX_JOIN_BACKOFF`]) until one works or other nodes have contacted us, then writes a
/// snapshot.
async fn join_loop(
    swarm: Swarm,
    persisted: Vec<NodeInfo>,
    snapshot: SnapshotFile,
    cancel: CancellationToken,
) {
    let config = swarm.config();
    let has_seeds = !config.bootstrap.nodes.is_empty() || !config.bootstrap.files.is_empty();
    if persisted.is_empty() && !has_seeds {
        tracing::info!("no persisted peers and no seed list: waiting for peers to contact us");
        return;
    }
    let mut backoff = Duration::from_secs(1);
    loop {
        let attempt = async {
            if !persisted.is_empty() {
                match swarm.bootstrap_from(persisted.clone()).await {
                    Ok(r) => return Ok(("persisted peers", r)),
                    Err(Error::Shutdown) => return Err(Error::Shutdown),
                    Err(e) => tracing::warn!(error = %e, "persisted peers did not answer"),
                }
            }
            if has_seeds {
                return swarm.bootstrap().await.map(|r| ("seed list", r));
            }
            Err(Error::NoBootNodes)
        };
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = attempt => r,
        };
        match result {
            Ok((from, report)) => {
                tracing::info!(
                    from,
                    table = report.table_size,
                    lookups = report.lookups,
                    "joined the network"
                );
                if let Err(e) = persist::save_table(&swarm, &snapshot).await {
                    tracing::warn!(error = %e, "cannot write the routing-table snapshot");
                }
                return;
            }
            Err(Error::Shutdown) => return,
            // Other nodes found us meanwhile: we are part of a network; the refresh loop takes over.
            Err(_) if swarm.table_len() > 0 => {
                tracing::info!(
                    table = swarm.table_len(),
                    "joined through peers that contacted us"
                );
                if let Err(e) = persist::save_table(&swarm, &snapshot).await {
                    tracing::warn!(error = %e, "cannot write the routing-table snapshot");
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, retry_in = ?backoff, "joining failed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_JOIN_BACKOFF);
    }
}
