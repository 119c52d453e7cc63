//! The node's data directory: its identity key, a lock so two nodes never share it, and the routing-table
//! snapshot that lets a restarted node reconnect without the seed list.
//!
//! ```text
//! <data_dir>/identity.key   secret key, hex, mode 0600 (created on first start, never replaced)
//! <data_dir>/peers.txt      routing-table snapshot in seed-list format (one descriptor a line)
//! <data_dir>/bans.txt       active bans with wall-clock expiry ([`crate::ban::store`])
//! <data_dir>/LOCK           held (flock) while a node runs
//! ```
//!
//! The bans file is rewritten the same atomic way, [`BAN_SAVE_DELAY`] after the bans change (changes in
//! between are written together) and at shutdown.
//!
//! Snapshots are written atomically (a temporary file, synced, then renamed over the old one), so a crash
//! leaves the previous snapshot or the new one, never a torn file. A snapshot that does not parse is
//! reported and ignored: the node then starts from its seed list.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use crate::ban::store::BanFile;
use crate::dht::seeds;
use crate::identity::{IdentityError, Keypair};
use crate::peer::NodeInfo;
use crate::swarm::Swarm;

/// File name of the identity key inside the data directory.
pub const IDENTITY_FILE: &str = "identity.key";
/// File name of the routing-table snapshot inside the data directory.
pub const SNAPSHOT_FILE: &str = "peers.txt";
/// File name of the bans inside the data directory.
pub const BANS_FILE: &str = "bans.txt";
/// How long after a change of the bans they are written (more changes meanwhile join the same write).
pub const BAN_SAVE_DELAY: Duration = Duration::from_secs(1);
/// File name of the lock inside the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// Why the data directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another running node holds the directory's lock.
    #[error("data directory {0} is in use by another kadmesh node")]
    Locked(PathBuf),
    /// The identity key could not be loaded or created.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PersistError + '_ {
    move |source| PersistError::Io {
        path: path.to_owned(),
        source,
    }
}

/// An open, locked data directory. The lock is released when the last clone is dropped (or the process
/// dies, even by SIGKILL).
#[derive(Clone, Debug)]
pub struct DataDir {
    /// The directory.
    root: PathBuf,
    /// The locked lock file.
    _lock: Arc<File>,
}

impl DataDir {
    /// Creates the directory if needed (mode 0700) and takes its lock.
    pub fn open(root: &Path) -> Result<DataDir, PersistError> {
        if !root.exists() {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                builder.mode(0o700);
            }
            builder.create(root).map_err(io_err(root))?;
        }
        let lock_path = root.join(LOCK_FILE);
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(PersistError::Locked(root.to_owned())),
            // A file system without locks: run unprotected rather than not at all.
            Err(fs::TryLockError::Error(e)) => {
                tracing::warn!(dir = %root.display(), error = %e, "cannot lock the data directory");
            }
        }
        Ok(DataDir {
            root: root.to_owned(),
            _lock: Arc::new(lock),
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the identity key lives.
    pub fn identity_path(&self) -> PathBuf {
        self.root.join(IDENTITY_FILE)
    }

    /// The routing-table snapshot file.
    pub fn snapshot(&self) -> SnapshotFile {
        SnapshotFile::new(self.root.join(SNAPSHOT_FILE))
    }

    /// The bans file.
    pub fn bans(&self) -> BanFile {
        BanFile::new(self.root.join(BANS_FILE))
    }

    /// Loads the identity from `key` (default: the data directory's `identity.key`), creating it (0600)
    /// on first start. A malformed key file is an error, never replaced.
    pub fn keypair(&self, key: Option<&Path>) -> Result<Keypair, PersistError> {
        let path = key
            .map(Path::to_owned)
            .unwrap_or_else(|| self.identity_path());
        Ok(Keypair::load_or_create(&path)?)
    }
}

/// What [`SnapshotFile::load`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotLoad {
    /// No snapshot yet.
    Missing,
    /// The persisted peers, most recently seen first within each bucket.
    Loaded(Vec<NodeInfo>),
    /// The file exists but could not be used; the reason says why. The node ignores it.
    Corrupt(String),
}

impl SnapshotLoad {
    /// The persisted peers (none when missing or corrupt).
    pub fn peers(&self) -> &[NodeInfo] {
        match self {
            SnapshotLoad::Loaded(peers) => peers,
            _ => &[],
        }
    }
}

/// The routing-table snapshot file (seed-list format).
#[derive(Clone, Debug)]
pub struct SnapshotFile {
    /// The file.
    path: PathBuf,
}

impl SnapshotFile {
    /// The snapshot at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the snapshot; never fails: an unreadable or unparsable file is [`SnapshotLoad::Corrupt`].
    pub fn load(&self) -> SnapshotLoad {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return SnapshotLoad::Missing,
            Err(e) => return SnapshotLoad::Corrupt(e.to_string()),
        };
        let Ok(text) = String::from_utf8(bytes) else {
            return SnapshotLoad::Corrupt("not UTF-8 text".into());
        };
        match seeds::parse(&text, &self.path.display().to_string()) {
            Ok(peers) => SnapshotLoad::Loaded(peers),
            Err(e) => SnapshotLoad::Corrupt(e.to_string()),
        }
    }

    /// Writes `peers` atomically, replacing the previous snapshot.
    pub fn save(&self, peers: &[NodeInfo], owner: &NodeInfo) -> Result<(), PersistError> {
        let written = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let header = format!(
            "kadmesh routing-table snapshot of {}\nwritten at unix time {written}, {} peers; rewritten by the node, do not edit while it runs",
            owner.id,
            peers.len()
        );
        write_atomic(&self.path, seeds::render(peers, &header).as_bytes())
    }
}

/// Writes `bytes` to `path` so that readers (and a crash) see either the old file or the new one: a
/// temporary file in the same directory is written and synced, then renamed over `path`, then the
/// directory is synced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
        file.write_all(bytes).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, path).map_err(io_err(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Make the rename itself durable; not every platform can open a directory.
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The routing table's nodes, bucket by bucket.
pub fn table_peers(swarm: &Swarm) -> Vec<NodeInfo> {
    swarm
        .table_snapshot()
        .into_iter()
        .flat_map(|(_, nodes)| nodes)
        .collect()
}

/// Writes the routing table to `file` in the blocking pool, unless it is empty (an empty table must not
/// erase the peers a restart could use). Returns the number of peers written.
pub async fn save_table(swarm: &Swarm, file: &SnapshotFile) -> Result<usize, PersistError> {
    let peers = table_peers(swarm);
    if peers.is_empty() {
        return Ok(0);
    }
    let (file, owner, n) = (file.clone(), swarm.local_node(), peers.len());
    blocking(SNAPSHOT_FILE, move || file.save(&peers, &owner)).await?;
    Ok(n)
}

/// Runs a file write on the blocking pool; `name` names the file if the task itself fails.
async fn blocking(
    name: &str,
    write: impl FnOnce() -> Result<(), PersistError> + Send + 'static,
) -> Result<(), PersistError> {
    tokio::task::spawn_blocking(write)
        .await
        .map_err(|e| PersistError::Io {
            path: PathBuf::from(name),
            source: std::io::Error::other(e.to_string()),
        })?
}

/// Every `interval`, writes the routing table to `file` if it changed since the last write; returns when
/// `cancel` fires (the caller writes the final snapshot).
pub async fn snapshot_loop(
    swarm: Swarm,
    file: SnapshotFile,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut last: Vec<NodeInfo> = Vec::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let mut now = table_peers(&swarm);
        now.sort_by_key(|n| n.to_string());
        if now == last {
            continue;
        }
        match save_table(&swarm, &file).await {
            Ok(n) => tracing::debug!(peers = n, file = %file.path().display(), "snapshot written"),
            Err(e) => tracing::warn!(error = %e, "cannot write the routing-table snapshot"),
        }
        last = now;
    }
}

/// Writes the swarm's active bans to `file` in the blocking pool. Returns the number written.
pub async fn save_bans(swarm: &Swarm, file: &BanFile) -> Result<usize, PersistError> {
    let bans = swarm.bans();
    let (file, owner, n) = (file.clone(), swarm.local_node().id, bans.len());
    let now = crate::transport::tcp::connection::unix_ms();
    blocking(BANS_FILE, move || file.save(&bans, &owner, now)).await?;
    Ok(n)
}

/// Writes the bans to `file` [`BAN_SAVE_DELAY`] after each change `changes` sees (subscribe with
/// [`Swarm::ban_changes`] before spawning this, so no change is missed); returns when `cancel` fires (the
/// caller writes the final file).
pub async fn bans_loop(
    swarm: Swarm,
    mut changes: tokio::sync::watch::Receiver<u64>,
    file: BanFile,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = changes.changed() => if r.is_err() { return },
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(BAN_SAVE_DELAY) => {}
        }
        changes.mark_unchanged();
        match save_bans(&swarm, &file).await {
            Ok(n) => tracing::debug!(bans = n, file = %file.path().display(), "bans written"),
            Err(e) => tracing::warn!(error = %e, "cannot write the bans file"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "kadmesh-persist-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn node(port: u16) -> NodeInfo {
        NodeInfo::new(
            Keypair::random().node_id(),
            format!("127.0.0.1:{port}").parse().unwrap(),
        )
    }

    #[test]
    fn snapshot_round_trip_and_corruption_is_reported() {
        let root = temp_dir("snap");
        let dir = DataDir::open(&root).unwrap();
        let snap = dir.snapshot();
        assert_eq!(snap.load(), SnapshotLoad::Missing);
        let peers = vec![node(1), node(2)];
        snap.save(&peers, &node(3)).unwrap();
        assert_eq!(snap.load(), SnapshotLoad::Loaded(peers.clone()));
        // No temporary file is left behind.
        let names: Vec<String> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
        fs::write(snap.path(), "127.0.0.1:1/garbage\n").unwrap();
        assert!(matches!(snap.load(), SnapshotLoad::Corrupt(r) if r.contains("line 1")));
        fs::write(snap.path(), [0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(snap.load(), SnapshotLoad::Corrupt(_)));
        assert!(snap.load().peers().is_empty());
        drop(dir);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_data_dir_is_locked_and_keeps_its_identity() {
        let root = temp_dir("lock");
        let dir = DataDir::open(&root).unwrap();
        assert!(matches!(DataDir::open(&root), Err(PersistError::Locked(_))));
        let id = dir.keypair(None).unwrap().node_id();
        assert_eq!(dir.keypair(None).unwrap().node_id(), id);
        drop(dir);
        let again = DataDir::open(&root).unwrap();
        assert_eq!(again.keypair(None).unwrap().node_id(), id);
        fs::write(again.identity_path(), "not a key").unwrap();
        assert!(matches!(
            again.keypair(None),
            Err(PersistError::Identity(_))
        ));
        drop(again);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn write_atomic_replaces_whole_files() {
        let root = temp_dir("atomic");
        fs::create_dir_all(&root).unwrap();
        let path = root.join("f.txt");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert!(write_atomic(&root.join("missing/f.txt"), b"x").is_err());
        fs::remove_dir_all(&root).unwrap();
    }
}
