//! `node.toml`: the node's configuration file ([`NodeFile`]: the swarm's [`Config`] keys plus a `[node]`
//! section of [`NodeSettings`]), and `kadmesh config default|check`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::CliResult;
use crate::config::{Config, ConfigFileError, from_toml_table, parse_toml_table};
use crate::daemon::NodeSettings;

/// Where `kadmesh node` listens unless told otherwise (the library's [`Config`] default is loopback
/// port 0, for tests and embedding).
pub const DEFAULT_NODE_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    7513,
));

/// Everything `node.toml` can set.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeFile {
    /// The `[node]` section: data directory, identity key, API address, snapshot interval.
    pub node: NodeSettings,
    /// Every other key: the swarm's configuration.
    pub config: Config,
}

impl Default for NodeFile {
    fn default() -> Self {
        Self {
            node: NodeSettings::default(),
            config: Config {
                listen: DEFAULT_NODE_LISTEN,
                ..Config::default()
            },
        }
    }
}

impl NodeFile {
    /// Parses `node.toml` text. Missing keys take the defaults of [`NodeFile::default`]; unknown keys,
    /// values of the wrong type and out-of-range values are errors naming the key.
    pub fn from_toml_str(text: &str) -> Result<NodeFile, ConfigFileError> {
        let mut table = parse_toml_table(text)?;
        let node = match table.remove("node") {
            None => NodeSettings::default(),
            Some(toml::Value::Table(t)) => from_toml_table(t, "node")?,
            Some(other) => {
                return Err(ConfigFileError::Key {
                    key: "node".into(),
                    reason: format!("expected a table ([node]), found a {}", other.type_str()),
                });
            }
        };
        if !table.contains_key("listen") {
            table.insert(
                "listen".into(),
                toml::Value::String(DEFAULT_NODE_LISTEN.to_string()),
            );
        }
        let file = NodeFile {
            node,
            config: from_toml_table(table, "")?,
        };
        file.validate()?;
        Ok(file)
    }

    /// Reads and parses a `node.toml` file.
    pub fn load(path: &Path) -> Result<NodeFile, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigFileError> {
        self.node.validate()?;
        self.config.validate()?;
        Ok(())
    }

    /// The file as a TOML table (`[node]` included).
    pub fn to_table(&self) -> Result<toml::Table, ConfigFileError> {
        let ser = |e: toml::ser::Error| ConfigFileError::Syntax(e.to_string());
        let mut table = toml::Table::try_from(&self.config).map_err(ser)?;
        let node = toml::Table::try_from(&self.node).map_err(ser)?;
        table.insert("node".into(), toml::Value::Table(node));
        Ok(table)
    }

    /// The file as uncommented TOML text.
    pub fn to_toml_string(&self) -> Result<String, ConfigFileError> {
        toml::to_string(&self.to_table()?).map_err(|e| ConfigFileError::Syntax(e.to_string()))
    }
}

/// How a key appears in the commented default file.
enum Shown {
    /// `key = <default>`.
    Value,
    /// `# key = <default>`: the default is best left implicit.
    CommentedDefault,
    /// `# key = <example>`: no value by default.
    Example(&'static str),
}

/// Every key of `node.toml` with its comment, in file order (`section.key`; top-level keys first).
const KEYS: &[(&str, &str, Shown)] = &[
    (
        "listen",
        "Address to listen on for peers (TCP); port 0 picks a free port. Peers see the IP their connection comes from and this port.",
        Shown::Value,
    ),
    (
        "network_id",
        "Network id: peers with another id are refused at the handshake. A number (decimal or 0x hex, up to 0xffffffff) or a network name, hashed like Factom's NewNetworkID (the name \"myNetwork\" gives 0x29cb7175).",
        Shown::Value,
    ),
    (
        "client_version",
        "Client version announced to peers (semver; peers must share the major). Defaults to this build's version.",
        Shown::CommentedDefault,
    ),
    (
        "node.data_dir",
        "Data directory: identity key (identity.key), routing-table snapshot (peers.txt), bans (bans.txt), lock.",
        Shown::Value,
    ),
    (
        "node.key",
        "Identity key file (hex secret key, mode 0600), created if missing. Default: <data_dir>/identity.key.",
        Shown::Example("\"/etc/kadmesh/identity.key\""),
    ),
    (
        "node.api",
        "Address of the HTTP API and /metrics. Off unless set; keep it on loopback or a private network.",
        Shown::Example("\"127.0.0.1:7600\""),
    ),
    (
        "node.snapshot_interval",
        "How often the routing table is saved to the data directory if it changed (also after joining and on shutdown).",
        Shown::Value,
    ),
    (
        "net.max_frame_len",
        "Largest frame body accepted or sent, bytes (1024 to 4294967295).",
        Shown::Value,
    ),
    (
        "net.handshake_timeout",
        "A handshake must finish within this time.",
        Shown::Value,
    ),
    (
        "net.dial_timeout",
        "A TCP connect must finish within this time.",
        Shown::Value,
    ),
    (
        "net.ping_interval",
        "Send a keepalive ping after this much silence from a peer.",
        Shown::Value,
    ),
    (
        "net.ping_timeout",
        "Close the connection if the keepalive ping gets no answer within this time.",
        Shown::Value,
    ),
    (
        "net.max_clock_skew",
        "Largest accepted difference between a peer's clock and ours.",
        Shown::Value,
    ),
    (
        "net.max_inbound",
        "Most inbound connections at once.",
        Shown::Value,
    ),
    (
        "net.max_pending_handshakes",
        "Most inbound handshakes in progress at once.",
        Shown::Value,
    ),
    (
        "net.send_buffer",
        "Bytes buffered for one connection's socket before senders wait.",
        Shown::Value,
    ),
    (
        "net.rate_limit_per_sec",
        "Sustained inbound frames per second allowed per connection.",
        Shown::Value,
    ),
    (
        "net.rate_limit_burst",
        "Inbound frame burst allowed per connection above the sustained rate.",
        Shown::Value,
    ),
    (
        "net.max_connections",
        "Most connections at once, inbound and outbound together.",
        Shown::Value,
    ),
    (
        "net.max_outbound",
        "Most outbound connections at once (dials in progress included); a dial beyond it fails.",
        Shown::Value,
    ),
    (
        "net.max_inbound_per_ip",
        "Most inbound connections from one IP address (an IPv6 /64), refused at accept.",
        Shown::Value,
    ),
    (
        "net.ip_accept_burst",
        "Inbound connections one IP address (an IPv6 /64) may open in a burst before the accept throttle refuses it.",
        Shown::Value,
    ),
    (
        "net.ip_accept_interval",
        "After a burst, one more inbound connection per address is accepted per this interval.",
        Shown::Value,
    ),
    (
        "net.read_timeout",
        "Once the first byte of a frame arrives, the whole frame must arrive within this time.",
        Shown::Value,
    ),
    (
        "net.write_timeout",
        "A socket write that makes no progress for this long closes the connection.",
        Shown::Value,
    ),
    (
        "net.rate_limit_bytes_per_sec",
        "Sustained inbound bytes per second allowed per connection.",
        Shown::Value,
    ),
    (
        "net.rate_limit_bytes_burst",
        "Inbound byte burst allowed per connection; at least net.max_frame_len.",
        Shown::Value,
    ),
    (
        "net.offload_handshake",
        "Run handshake crypto (ECDSA, ECDH) on the blocking thread pool instead of the runtime's workers.",
        Shown::Value,
    ),
    (
        "net.exempt_local",
        "Exempt loopback and private addresses from the per-IP limits and throttle, IP bans and the routing table's subnet limits (for local test networks on one host).",
        Shown::Value,
    ),
    (
        "swarm.protocol_queue",
        "Capacity of each registered protocol's message queue (also each API stream's buffer).",
        Shown::Value,
    ),
    (
        "swarm.event_queue",
        "Capacity of the swarm event channel; slow event readers miss old events.",
        Shown::Value,
    ),
    (
        "swarm.max_payload",
        "Largest message payload of a protocol that did not set its own; larger inbound messages are dropped, larger outbound ones refused.",
        Shown::Value,
    ),
    (
        "dht.bucket_count",
        "Number of k-buckets (1 to 256); the last takes every longer common prefix.",
        Shown::Value,
    ),
    (
        "dht.bucket_size",
        "Nodes per bucket (k); also the size of lookup results.",
        Shown::Value,
    ),
    (
        "dht.alpha",
        "FindNode requests in flight per lookup.",
        Shown::Value,
    ),
    (
        "dht.min_routing_table",
        "Bootstrap stops once the routing table holds this many nodes.",
        Shown::Value,
    ),
    (
        "dht.request_timeout",
        "Timeout of one FindNode request.",
        Shown::Value,
    ),
    (
        "dht.lookup_timeout",
        "Timeout of a whole lookup.",
        Shown::Value,
    ),
    (
        "dht.ping_timeout",
        "Timeout of the liveness ping sent to a full bucket's least-recently-seen node.",
        Shown::Value,
    ),
    (
        "dht.refresh_interval",
        "Buckets untouched this long are refreshed with a lookup.",
        Shown::Value,
    ),
    (
        "dht.max_per_subnet_bucket",
        "Most routing-table entries of one subnet (IPv4 /24, IPv6 /48) per bucket (net.exempt_local exempts loopback and private addresses).",
        Shown::Value,
    ),
    (
        "dht.max_per_subnet_table",
        "Most routing-table entries of one subnet in the whole table.",
        Shown::Value,
    ),
    (
        "dht.max_inbound_per_bucket",
        "Most inbound-only entries (nodes that contacted us but have not answered us; never served to others) per bucket.",
        Shown::Value,
    ),
    (
        "dht.replacement_cache",
        "Replacement candidates kept per full bucket (0: none).",
        Shown::Value,
    ),
    (
        "dht.max_failures",
        "Consecutive failed requests (errors, timeouts, invalid answers) that remove a node from the routing table.",
        Shown::Value,
    ),
    (
        "lookup.disjoint_paths",
        "S/Kademlia disjoint lookup paths (1 to 8; 1 is a plain lookup).",
        Shown::Value,
    ),
    (
        "lookup.max_per_subnet",
        "Most candidates of one subnet (IPv4 /24, IPv6 /48) a lookup path keeps.",
        Shown::Value,
    ),
    (
        "gossip.fanout",
        "Peers each new gossip message is relayed to (1 to 64): fanout - 1 random peers plus about one cover peer.",
        Shown::Value,
    ),
    (
        "gossip.seen_capacity",
        "Most gossip message ids remembered for dedupe.",
        Shown::Value,
    ),
    (
        "gossip.seen_ttl",
        "How long a gossip message id is remembered after its author timestamp; older messages are rejected.",
        Shown::Value,
    ),
    (
        "gossip.relay_queue",
        "Most gossip messages being relayed at once; a message that finds the queue full is not relayed, and counted.",
        Shown::Value,
    ),
    (
        "bans.enabled",
        "Ban peers that fail a MAC, violate the protocol, exceed the rate limit or relay a forged signature. Off, only bans added through the API apply.",
        Shown::Value,
    ),
    (
        "bans.ban_duration",
        "How long an offender stays banned; also the window of ip_threshold.",
        Shown::Value,
    ),
    (
        "bans.ip_threshold",
        "Banned ids plus failed handshakes from one IP within ban_duration that ban the IP too (1 to 1000).",
        Shown::Value,
    ),
    (
        "bans.max_bans",
        "Most bans kept; beyond, the oldest is evicted.",
        Shown::Value,
    ),
    (
        "bans.max_offence_records",
        "Most IPs whose offences are remembered; beyond, the one quiet longest is forgotten.",
        Shown::Value,
    ),
    (
        "bootstrap.nodes",
        "Boot nodes, \"ip:port/base58key\" (tried after the persisted peers of the data directory).",
        Shown::Value,
    ),
    (
        "bootstrap.files",
        "Seed-list files: one descriptor a line, '#' comments (e.g. \"bootstrap/localnet.txt\"). A file that does not parse stops the node at start.",
        Shown::Value,
    ),
];

const HEADER: &str = "\
# kadmesh node configuration (TOML), printed by `kadmesh config default`.
# Run with `kadmesh node --config node.toml`; command-line flags override this file.
# Every key is optional (a missing key takes the default shown); unknown keys are errors.
# Durations are written like \"500ms\", \"10s\", \"1m\"; check a file with `kadmesh config check FILE`.
";

fn wrap_comment(text: &str, out: &mut String) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 100 && line.len() > 1 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

/// The complete default `node.toml`, every key with a comment.
pub fn render_default() -> Result<String, ConfigFileError> {
    let table = NodeFile::default().to_table()?;
    let mut out = String::from(HEADER);
    let mut section = "";
    for (path, doc, shown) in KEYS {
        let (sec, key) = path.split_once('.').unwrap_or(("", path));
        if sec != section {
            section = sec;
            out.push_str(&format!("\n[{sec}]\n"));
        }
        let value = match sec {
            "" => table.get(key),
            _ => table
                .get(sec)
                .and_then(toml::Value::as_table)
                .and_then(|t| t.get(key)),
        };
        out.push('\n');
        wrap_comment(doc, &mut out);
        let line = match (shown, value) {
            (Shown::Value, Some(v)) => format!("{key} = {v}\n"),
            (Shown::CommentedDefault, Some(v)) => format!("# {key} = {v}\n"),
            (Shown::Example(example), _) => format!("# {key} = {example}\n"),
            (_, None) => {
                return Err(ConfigFileError::Key {
                    key: (*path).to_owned(),
                    reason: "documented key has no default value".into(),
                });
            }
        };
        out.push_str(&line);
    }
    Ok(out)
}

/// Arguments of `kadmesh config`.
#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// The `kadmesh config` subcommands.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the complete, commented default node.toml.
    Default,
    /// Check a node.toml; prints the effective configuration, or the error naming the key.
    Check {
        /// The file.
        file: PathBuf,
    },
}

/// Runs `kadmesh config`.
pub fn run(args: ConfigArgs) -> CliResult {
    match args.command {
        ConfigCommand::Default => print!("{}", render_default()?),
        ConfigCommand::Check { file } => {
            let parsed = NodeFile::load(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            print!("{}", parsed.to_toml_string()?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn leaf_keys(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
        for (k, v) in table {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) => leaf_keys(t, &path, out),
                _ => {
                    out.insert(path);
                }
            }
        }
    }

    #[test]
    fn default_file_parses_back_to_the_default() {
        let text = render_default().unwrap();
        assert_eq!(NodeFile::from_toml_str(&text).unwrap(), NodeFile::default());
        assert_eq!(NodeFile::from_toml_str("").unwrap(), NodeFile::default());
        // The node default differs from the library default only in where it listens.
        let d = NodeFile::default();
        assert_eq!(
            Config {
                listen: Config::default().listen,
                ..d.config
            },
            Config::default()
        );
    }

    #[test]
    fn every_key_is_documented_and_every_example_is_valid() {
        let mut keys = BTreeSet::new();
        leaf_keys(&NodeFile::default().to_table().unwrap(), "", &mut keys);
        let documented: BTreeSet<String> = KEYS.iter().map(|(k, _, _)| (*k).to_owned()).collect();
        for k in &keys {
            assert!(documented.contains(k), "{k} has no comment in KEYS");
        }
        // Uncommenting every commented line gives a valid file with every documented key set.
        let text = render_default().unwrap();
        let is_key =
            |k: &str| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.split_once(" = ").is_some_and(|(k, _)| is_key(k)) => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let full = NodeFile::from_toml_str(&uncommented).unwrap();
        let mut set = BTreeSet::new();
        leaf_keys(&full.to_table().unwrap(), "", &mut set);
        assert_eq!(set, documented);
    }

    /// Each invalid value is rejected with an error naming its key.
    #[test]
    fn invalid_values_name_their_key() {
        let cases: &[(&str, &str)] = &[
            ("bogus = 1", "bogus"),
            ("listen = \"not an address\"", "listen"),
            ("listen = 7513", "listen"),
            ("network_id = 0x100000000", "network_id"),
            ("network_id = \"\"", "network_id"),
            ("network_id = 1.5", "network_id"),
            ("client_version = \"one\"", "client_version"),
            ("node = 3", "node"),
            ("[node]\nbogus = 1", "node.bogus"),
            ("[node]\ndata_dir = \"\"", "node.data_dir"),
            ("[node]\nkey = \"\"", "node.key"),
            ("[node]\napi = \"localhost\"", "node.api"),
            (
                "[node]\nsnapshot_interval = \"0s\"",
                "node.snapshot_interval",
            ),
            (
                "[node]\nsnapshot_interval = \"often\"",
                "node.snapshot_interval",
            ),
            ("[net]\nbogus = 1", "net.bogus"),
            ("[net]\nmax_frame_len = 100", "net.max_frame_len"),
            ("[net]\nmax_frame_len = -1", "net.max_frame_len"),
            ("[net]\nhandshake_timeout = \"0s\"", "net.handshake_timeout"),
            ("[net]\ndial_timeout = \"0s\"", "net.dial_timeout"),
            ("[net]\nping_interval = \"0s\"", "net.ping_interval"),
            ("[net]\nping_timeout = 5", "net.ping_timeout"),
            ("[net]\nmax_clock_skew = \"0s\"", "net.max_clock_skew"),
            ("[net]\nmax_inbound = 0", "net.max_inbound"),
            (
                "[net]\nmax_pending_handshakes = 0",
                "net.max_pending_handshakes",
            ),
            ("[net]\nsend_buffer = 0", "net.send_buffer"),
            ("[net]\nrate_limit_per_sec = 0", "net.rate_limit_per_sec"),
            ("[net]\nrate_limit_burst = 0", "net.rate_limit_burst"),
            ("[net]\nmax_connections = 0", "net.max_connections"),
            ("[net]\nmax_outbound = 0", "net.max_outbound"),
            ("[net]\nmax_inbound_per_ip = 0", "net.max_inbound_per_ip"),
            ("[net]\nip_accept_burst = 0", "net.ip_accept_burst"),
            (
                "[net]\nip_accept_interval = \"0s\"",
                "net.ip_accept_interval",
            ),
            ("[net]\nread_timeout = \"0s\"", "net.read_timeout"),
            ("[net]\nwrite_timeout = \"0s\"", "net.write_timeout"),
            (
                "[net]\nrate_limit_bytes_per_sec = 0",
                "net.rate_limit_bytes_per_sec",
            ),
            (
                "[net]\nrate_limit_bytes_burst = 1024",
                "net.rate_limit_bytes_burst",
            ),
            ("[swarm]\nmax_payload = 0", "swarm.max_payload"),
            ("[swarm]\nprotocol_queue = 0", "swarm.protocol_queue"),
            ("[swarm]\nevent_queue = 0", "swarm.event_queue"),
            ("[swarm]\nbogus = true", "swarm.bogus"),
            ("[dht]\nbucket_count = 0", "dht.bucket_count"),
            ("[dht]\nbucket_count = 257", "dht.bucket_count"),
            ("[dht]\nbucket_size = 0", "dht.bucket_size"),
            ("[dht]\nalpha = 0", "dht.alpha"),
            (
                "[dht]\nmin_routing_table = \"many\"",
                "dht.min_routing_table",
            ),
            ("[dht]\nrequest_timeout = \"0s\"", "dht.request_timeout"),
            ("[dht]\nlookup_timeout = \"0s\"", "dht.lookup_timeout"),
            ("[dht]\nping_timeout = \"0s\"", "dht.ping_timeout"),
            ("[dht]\nrefresh_interval = \"0s\"", "dht.refresh_interval"),
            (
                "[bootstrap]\nnodes = [\"127.0.0.1:1/nope\"]",
                "bootstrap.nodes",
            ),
            (
                "[net]\noffload_handshake = \"yes\"",
                "net.offload_handshake",
            ),
            ("[gossip]\nfanout = 0", "gossip.fanout"),
            ("[gossip]\nfanout = 65", "gossip.fanout"),
            ("[gossip]\nseen_capacity = 0", "gossip.seen_capacity"),
            ("[gossip]\nseen_ttl = \"0s\"", "gossip.seen_ttl"),
            ("[gossip]\nrelay_queue = 0", "gossip.relay_queue"),
            ("[gossip]\nbogus = 0", "gossip.bogus"),
            ("[bootstrap]\nnodes = \"x\"", "bootstrap.nodes"),
            ("[bootstrap]\nfiles = [1]", "bootstrap.files[0]"),
            ("[bootstrap]\nbogus = []", "bootstrap.bogus"),
        ];
        for (text, key) in cases {
            let err = NodeFile::from_toml_str(text).expect_err(text);
            assert_eq!(err.key(), Some(*key), "{text:?} gave: {err}");
            assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
        }
    }

    #[test]
    fn node_section_and_named_network() {
        let f = NodeFile::from_toml_str(
            "network_id = \"myNetwork\"\n[node]\ndata_dir = \"/tmp/x\"\napi = \"127.0.0.1:0\"\n[dht]\nbucket_size = 4\n",
        )
        .unwrap();
        assert_eq!(f.config.network_id, 0x29cb7175);
        assert_eq!(f.node.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(f.node.api, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(f.config.dht.bucket_size, 4);
        assert_eq!(f.config.listen, DEFAULT_NODE_LISTEN);
        assert_eq!(
            NodeFile::from_toml_str(&f.to_toml_string().unwrap()).unwrap(),
            f
        );
    }
}
