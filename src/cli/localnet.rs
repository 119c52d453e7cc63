//! `kadmesh localnet`: a test network of `kadmesh node` child processes on loopback.
//!
//! The first `--seeds` nodes start first (each given the earlier ones as `--peer`); their descriptors
//! become `<data-root>/seeds.txt`, from which the other nodes join. Each node gets `<data-root>/node-<i>/`
//! as its data directory and writes its log there (`node.log`). Prints one line per node:
//! `node <i> <descriptor> http://<api> <log>`; Ctrl-C (or SIGTERM) stops every node. Nodes run with
//! `--exempt-local`: they all share 127.0.0.1, which the per-IP limits would otherwise see as one host.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use clap::Args;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::CliResult;
use crate::peer::NodeInfo;

/// How long a node may take to print its descriptor and API address.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Arguments of `kadmesh localnet`.
#[derive(Args, Debug)]
pub struct LocalnetArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=200))]
    pub nodes: u16,
    /// Node i listens on 127.0.0.1:(P + i); 0 lets each node pick a free port.
    #[arg(long, value_name = "P", default_value_t = 0)]
    pub base_port: u16,
    /// Node i serves its API on 127.0.0.1:(Q + i); without it each API picks a free port.
    #[arg(long, value_name = "Q")]
    pub api_base_port: Option<u16>,
    /// Parent of the nodes' data directories (node-0, node-1, ...) and of seeds.txt.
    #[arg(long, value_name = "DIR", default_value = "./kadmesh-localnet")]
    pub data_root: PathBuf,
    /// How many of the nodes are seeds (listed in seeds.txt).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    pub seeds: u16,
}

/// A started child node.
struct Node {
    /// Its index.
    index: u16,
    /// The process.
    child: Child,
    /// What it printed.
    descriptor: NodeInfo,
    /// Its API URL.
    api: String,
    /// Its log file.
    log: PathBuf,
}

fn port(base: u16, i: u16) -> Result<u16, String> {
    if base == 0 {
        return Ok(0);
    }
    base.checked_add(i)
        .ok_or_else(|| format!("port {base} + {i} is beyond 65535"))
}

/// Starts node `i` and waits for its descriptor and API lines.
async fn start_node(
    args: &LocalnetArgs,
    i: u16,
    boot: &[String],
) -> Result<Node, Box<dyn std::error::Error>> {
    let dir = args.data_root.join(format!("node-{i}"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let log = dir.join("node.log");
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    // Every node of a local network shares 127.0.0.1: exempt it from per-IP and per-subnet limits.
    let config = dir.join("node.toml");
    std::fs::write(&config, "[net]\nexempt_local = true\n")
        .map_err(|e| format!("{}: {e}", config.display()))?;
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("node")
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", port(args.base_port, i)?))
        .arg("--api")
        .arg(format!(
            "127.0.0.1:{}",
            port(args.api_base_port.unwrap_or(0), i)?
        ))
        .arg("--data-dir")
        .arg(&dir)
        // Every node shares 127.0.0.1: per-IP limits would see one host opening many connections.
        .arg("--exempt-local")
        .args(boot)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut lines = BufReader::new(stdout).lines();
    let read = async {
        let first = lines.next_line().await?;
        let second = lines.next_line().await?;
        Ok::<_, std::io::Error>((first, second))
    };
    let failed = |why: String| format!("node {i} did not start ({why}); see {}", log.display());
    let (first, second) = match tokio::time::timeout(START_TIMEOUT, read).await {
        Ok(Ok((Some(first), Some(second)))) => (first, second),
        Ok(Ok(_)) => return Err(failed("it exited".into()).into()),
        Ok(Err(e)) => return Err(failed(e.to_string()).into()),
        Err(_) => return Err(failed(format!("no output in {START_TIMEOUT:?}")).into()),
    };
    let descriptor: NodeInfo = first
        .trim()
        .parse()
        .map_err(|e| failed(format!("bad descriptor {first:?}: {e}")))?;
    let api = second
        .trim()
        .strip_prefix("api ")
        .ok_or_else(|| failed(format!("unexpected line {second:?}")))?
        .to_owned();
    Ok(Node {
        index: i,
        child,
        descriptor,
        api,
        log,
    })
}

/// Asks a child to stop (SIGTERM on Unix; killed elsewhere).
fn terminate(child: &mut Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id().and_then(|p| libc::pid_t::try_from(p).ok()) {
        // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own child, not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        return;
    }
    let _ = child.start_kill();
}

async fn stop_all(nodes: &mut [Node]) {
    for node in nodes.iter_mut() {
        terminate(&mut node.child);
    }
    for node in nodes.iter_mut() {
        match tokio::time::timeout(STOP_TIMEOUT, node.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!(
                    "kadmesh: node {} did not stop in time; killing it",
                    node.index
                );
                let _ = node.child.kill().await;
            }
        }
    }
}

fn write_seeds(path: &Path, seeds: &[NodeInfo]) -> Result<(), Box<dyn std::error::Error>> {
    let text = crate::dht::seeds::render(
        seeds,
        "Seed list of a `kadmesh localnet` run (rewritten at each start).",
    );
    crate::persist::write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// Runs `kadmesh localnet` until a signal, then stops every node.
pub fn run(args: LocalnetArgs) -> CliResult {
    std::fs::create_dir_all(&args.data_root)
        .map_err(|e| format!("{}: {e}", args.data_root.display()))?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let mut nodes: Vec<Node> = Vec::new();
        let started = start_all(&args, &mut nodes).await;
        if let Err(e) = started {
            stop_all(&mut nodes).await;
            return Err(e);
        }
        println!(
            "localnet: {} nodes running; seed list {}; Ctrl-C stops them",
            nodes.len(),
            args.data_root.join("seeds.txt").display()
        );
        let signal = super::node::wait_for_signal();
        tokio::pin!(signal);
        let mut running: Vec<usize> = (0..nodes.len()).collect();
        while !running.is_empty() {
            let exits = futures::future::select_all(
                nodes
                    .iter_mut()
                    .enumerate()
                    .filter(|(i, _)| running.contains(i))
                    .map(|(i, n)| Box::pin(async move { (i, n.child.wait().await) })),
            );
            let exited = tokio::select! {
                r = &mut signal => {
                    r?;
                    break;
                }
                ((i, status), _, _) = exits => (i, status),
            };
            let (i, status) = exited;
            running.retain(|r| *r != i);
            let how = status
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string());
            let log = nodes
                .get(i)
                .map(|n| n.log.display().to_string())
                .unwrap_or_default();
            eprintln!("kadmesh: node {i} exited ({how}); see {log}");
        }
        stop_all(&mut nodes).await;
        println!("localnet: stopped");
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn start_all(
    args: &LocalnetArgs,
    nodes: &mut Vec<Node>,
) -> Result<(), Box<dyn std::error::Error>> {
    let seeds_path = args.data_root.join("seeds.txt");
    let seed_count = args.seeds.min(args.nodes);
    let mut seeds: Vec<NodeInfo> = Vec::new();
    for i in 0..args.nodes {
        let boot: Vec<String> = if i < seed_count {
            seeds
                .iter()
                .flat_map(|s| ["--peer".to_owned(), s.to_string()])
                .collect()
        } else {
            vec!["--bootstrap".into(), seeds_path.display().to_string()]
        };
        let node = start_node(args, i, &boot).await?;
        println!(
            "node {} {} {} {}",
            node.index,
            node.descriptor,
            node.api,
            node.log.display()
        );
        if i < seed_count {
            seeds.push(node.descriptor);
            if seeds.len() == usize::from(seed_count) {
                write_seeds(&seeds_path, &seeds)?;
            }
        }
        nodes.push(node);
    }
    Ok(())
}
