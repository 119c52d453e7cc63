//! Node configuration: [`Config`] and its sections, with defaults and [`Config::validate`].
//!
//! Every field has a default; durations are written in TOML as human-readable strings ("10s", "1m").

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::wire::DEFAULT_MAX_FRAME_LEN;

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid config value for `{key}`: {reason}")]
pub struct ConfigError {
    /// Dotted key path, e.g. `net.max_frame_len`.
    pub key: &'static str,
    /// Why the value is invalid.
    pub reason: String,
}

/// Everything a node needs to run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Network id: peers with another id are refused at the handshake. In TOML either a number (up to
    /// `0xffffffff`, stored as the same 32 bits) or a network name, hashed by [`network_id_from_name`].
    #[serde(deserialize_with = "deserialize_network_id")]
    pub network_id: i32,
    /// Client version announced to peers (semver; peers must share the major).
    pub client_version: String,
    /// Connection, handshake and session settings.
    pub net: NetConfig,
    /// Protocol registry and request settings.
    pub swarm: SwarmConfig,
    /// Routing table and lookup settings.
    pub dht: DhtConfig,
    /// Lookup defences (disjoint paths, per-subnet candidate cap).
    pub lookup: LookupSettings,
    /// Where to find the network at start.
    pub bootstrap: BootstrapConfig,
    /// Gossip broadcast settings.
    pub gossip: GossipConfig,
    /// Bans of misbehaving peers.
    pub bans: BanConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            network_id: 1,
            client_version: env!("CARGO_PKG_VERSION").to_owned(),
            net: NetConfig::default(),
            swarm: SwarmConfig::default(),
            dht: DhtConfig::default(),
            lookup: LookupSettings::default(),
            bootstrap: BootstrapConfig::default(),
            gossip: GossipConfig::default(),
            bans: BanConfig::default(),
        }
    }
}

/// Connection, handshake and session settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NetConfig {
    /// Largest frame body accepted or sent, in bytes (default 4 MiB).
    pub max_frame_len: usize,
    /// A handshake must finish within this time (default 10 s).
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// A TCP connect must finish within this time (default 5 s).
    #[serde(with = "humantime_serde")]
    pub dial_timeout: Duration,
    /// Send a ping after this much silence from the peer (default 60 s).
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// Close the connection if the ping gets no answer within this time (default 30 s).
    #[serde(with = "humantime_serde")]
    pub ping_timeout: Duration,
    /// Largest accepted difference between a peer's clock and ours (default 30 s).
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Most inbound connections at once (default 256).
    pub max_inbound: usize,
    /// Most inbound handshakes in progress at once (default 64).
    pub max_pending_handshakes: usize,
    /// Bytes buffered for one connection's socket before senders wait (default 1 MiB).
    pub send_buffer: usize,
    /// Sustained inbound frames per second allowed per connection (default 20,000).
    pub rate_limit_per_sec: u32,
    /// Inbound frame burst allowed per connection above the sustained rate (default 50,000).
    pub rate_limit_burst: u32,
    /// Run handshake crypto (ECDSA, ECDH) on tokio's blocking pool instead of the runtime's workers
    /// (default on: measured faster and kinder to other tasks, see README "Benchmarks").
    pub offload_handshake: bool,
    /// Exempt loopback and private addresses ([`crate::peer::is_local_ip`]) from the per-IP limits, the
    /// per-IP accept throttle, IP bans and the routing table's subnet limits (default off: a public node
    /// limits every address alike; local test networks, where every node shares 127.0.0.1, turn it on).
    pub exempt_local: bool,
    /// Most connections at once, inbound and outbound together (default 512).
    pub max_connections: usize,
    /// Most outbound connections (dials in progress included) at once; a dial beyond it fails with
    /// [`TransportError::LimitReached`](crate::transport::TransportError::LimitReached) (default 384).
    pub max_outbound: usize,
    /// Most inbound connections from one IP address (an IPv6 /64) at once, refused at accept before any
    /// handshake work (default 8).
    pub max_inbound_per_ip: usize,
    /// Inbound connections one IP address (an IPv6 /64) may open in a burst before the accept throttle
    /// refuses it (default 8).
    pub ip_accept_burst: u32,
    /// After a burst, one more inbound connection per address is accepted per this interval (default 5 s).
    #[serde(with = "humantime_serde")]
    pub ip_accept_interval: Duration,
    /// Once the first byte of a frame arrives, the whole frame must arrive within this time (default 30 s).
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// A socket write that makes no progress for this long closes the connection (default 20 s).
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Sustained inbound frame-body bytes per second allowed per connection (default 16 MiB).
    pub rate_limit_bytes_per_sec: u64,
    /// Inbound byte burst allowed per connection; at least `max_frame_len` (default 32 MiB).
    pub rate_limit_bytes_burst: u64,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            handshake_timeout: Duration::from_secs(10),
            dial_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(60),
            ping_timeout: Duration::from_secs(30),
            max_clock_skew: Duration::from_secs(30),
            max_inbound: 256,
            max_pending_handshakes: 64,
            send_buffer: 1024 * 1024,
            rate_limit_per_sec: 20_000,
            rate_limit_burst: 50_000,
            offload_handshake: true,
            exempt_local: false,
            max_connections: 512,
            max_outbound: 384,
            max_inbound_per_ip: 8,
            ip_accept_burst: 8,
            ip_accept_interval: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(20),
            rate_limit_bytes_per_sec: 16 * 1024 * 1024,
            rate_limit_bytes_burst: 32 * 1024 * 1024,
        }
    }
}

/// Protocol registry and request settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SwarmConfig {
    /// Capacity of each registered protocol's message channel (default 1024).
    pub protocol_queue: usize,
    /// Capacity of the swarm event channel (default 1024); slow event readers miss old events.
    pub event_queue: usize,
    /// Largest message payload of a protocol that did not set its own (default 1 MiB): larger inbound
    /// messages are dropped and counted, larger outbound ones are refused.
    pub max_payload: usize,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            protocol_queue: 1024,
            event_queue: 1024,
            max_payload: 1024 * 1024,
        }
    }
}

/// The major number of a "major.minor.patch" version, if it is one.
pub fn semver_major(version: &str) -> Option<u64> {
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor_patch_ok = parts.by_ref().take(2).all(|p| {
        let digits = p.split(['-', '+']).next().unwrap_or(p);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    });
    (minor_patch_ok && parts.next().is_none()).then_some(major)
}

/// Routing table and lookup settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DhtConfig {
    /// Number of k-buckets (default 20; the last takes every longer common prefix).
    pub bucket_count: usize,
    /// Nodes per bucket, k (default 20); also the size of lookup results.
    pub bucket_size: usize,
    /// FindNode requests in flight per lookup (default 3).
    pub alpha: usize,
    /// Bootstrap stops once the table holds this many nodes (default 20, capped by what exists).
    pub min_routing_table: usize,
    /// Timeout of one FindNode request (default 5 s).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Timeout of a whole lookup (default 30 s).
    #[serde(with = "humantime_serde")]
    pub lookup_timeout: Duration,
    /// Timeout of the liveness ping sent to a full bucket's least-recently-seen node (default 5 s).
    #[serde(with = "humantime_serde")]
    pub ping_timeout: Duration,
    /// Buckets untouched this long are refreshed with a lookup (default 10 min).
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// Most routing-table entries of one subnet (IPv4 /24, IPv6 /48) per bucket (default 2).
    pub max_per_subnet_bucket: usize,
    /// Most routing-table entries of one subnet in the whole table (default 10).
    pub max_per_subnet_table: usize,
    /// Most inbound-only entries (nodes that contacted us but have not answered us yet) per bucket
    /// (default 10, half of the default k; 0: none, every entry must have answered us).
    pub max_inbound_per_bucket: usize,
    /// Replacement candidates kept per full bucket (default 5; 0: none).
    pub replacement_cache: usize,
    /// Consecutive failed requests (errors, timeouts, invalid answers) that remove a node from the table
    /// (default 2).
    pub max_failures: u32,
}

impl Default for DhtConfig {
    fn default() -> Self {
        Self {
            bucket_count: 20,
            bucket_size: 20,
            alpha: 3,
            min_routing_table: 20,
            request_timeout: Duration::from_secs(5),
            lookup_timeout: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(5),
            refresh_interval: Duration::from_secs(600),
            max_per_subnet_bucket: 2,
            max_per_subnet_table: 10,
            max_inbound_per_bucket: 10,
            replacement_cache: 5,
            max_failures: 2,
        }
    }
}

/// Lookup defences: the `[lookup]` section (alpha and the timeouts stay in `[dht]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LookupSettings {
    /// S/Kademlia disjoint paths per lookup, 1 to 8 (default 2: measured under `poison`, see README; 1 is a plain lookup).
    pub disjoint_paths: usize,
    /// Most candidates of one subnet (IPv4 /24, IPv6 /48) a lookup path keeps (default 5).
    pub max_per_subnet: usize,
}

impl Default for LookupSettings {
    fn default() -> Self {
        Self {
            disjoint_paths: 2,
            max_per_subnet: 5,
        }
    }
}

/// Where to find the network at start.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BootstrapConfig {
    /// Boot node descriptors, `ip:port/base58key`.
    pub nodes: Vec<String>,
    /// Seed-list files (one descriptor a line, `#` comments), e.g. `bootstrap/localnet.txt`.
    pub files: Vec<std::path::PathBuf>,
}

/// Gossip broadcast settings (see [`crate::gossip`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GossipConfig {
    /// Peers a node relays each new message to (default 8): `fanout - 1` random peers plus, on
    /// average, one cover peer (see [`crate::gossip::relay`]). 1 to 64.
    pub fanout: usize,
    /// Most message ids remembered for dedupe (default 100,000); when full, the ids that expire soonest
    /// are forgotten first.
    pub seen_capacity: usize,
    /// How long a message id is remembered after its author timestamp (default 2 min); older messages
    /// are rejected by their timestamp.
    #[serde(with = "humantime_serde")]
    pub seen_ttl: Duration,
    /// Most messages being relayed at once (default 1024); a message that finds the queue full is not
    /// relayed, and counted.
    pub relay_queue: usize,
}

impl Default for GossipConfig {
    fn default() -> Self {
        Self {
            fanout: 8,
            seen_capacity: 100_000,
            seen_ttl: Duration::from_secs(120),
            relay_queue: 1024,
        }
    }
}

/// Bans of misbehaving peers (see [`crate::ban`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BanConfig {
    /// Ban peers for offences (default on). Off, only bans added through the API apply.
    pub enabled: bool,
    /// How long an offender stays banned; also the window of `ip_threshold` (default 1 h).
    #[serde(with = "humantime_serde")]
    pub ban_duration: Duration,
    /// Banned ids plus failed handshakes from one IP within `ban_duration` that ban the IP too
    /// (default 3; 1 to 1000).
    pub ip_threshold: usize,
    /// Most bans kept; a new ban beyond evicts the oldest, counted (default 10,000).
    pub max_bans: usize,
    /// Most IPs whose offences are remembered; beyond, the one quiet longest is forgotten, counted
    /// (default 4,096).
    pub max_offence_records: usize,
}

impl Default for BanConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ban_duration: Duration::from_secs(3600),
            ip_threshold: 3,
            max_bans: 10_000,
            max_offence_records: 4096,
        }
    }
}

fn positive(key: &'static str, value: usize) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError {
            key,
            reason: "must be greater than 0".into(),
        });
    }
    Ok(())
}

fn in_range(
    key: &'static str,
    value: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<(), ConfigError> {
    if !range.contains(&value) {
        return Err(ConfigError {
            key,
            reason: format!("{value} is outside {range:?}"),
        });
    }
    Ok(())
}

fn nonzero_duration(key: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError {
            key,
            reason: "must be longer than 0s".into(),
        });
    }
    Ok(())
}

impl Config {
    /// Checks every value; the error names the key and the reason.
    pub fn validate(&self) -> Result<(), ConfigError> {
        semver_major(&self.client_version).ok_or_else(|| ConfigError {
            key: "client_version",
            reason: format!("{:?} is not a semver version", self.client_version),
        })?;
        let n = &self.net;
        if n.max_frame_len < 1024 || n.max_frame_len > u32::MAX as usize {
            return Err(ConfigError {
                key: "net.max_frame_len",
                reason: format!("{} is outside 1024..=4294967295", n.max_frame_len),
            });
        }
        nonzero_duration("net.handshake_timeout", n.handshake_timeout)?;
        nonzero_duration("net.dial_timeout", n.dial_timeout)?;
        nonzero_duration("net.ping_interval", n.ping_interval)?;
        nonzero_duration("net.ping_timeout", n.ping_timeout)?;
        nonzero_duration("net.max_clock_skew", n.max_clock_skew)?;
        positive("net.max_inbound", n.max_inbound)?;
        positive("net.max_pending_handshakes", n.max_pending_handshakes)?;
        positive("net.send_buffer", n.send_buffer)?;
        positive("net.rate_limit_per_sec", n.rate_limit_per_sec as usize)?;
        positive("net.rate_limit_burst", n.rate_limit_burst as usize)?;
        positive("net.max_connections", n.max_connections)?;
        positive("net.max_outbound", n.max_outbound)?;
        positive("net.max_inbound_per_ip", n.max_inbound_per_ip)?;
        positive("net.ip_accept_burst", n.ip_accept_burst as usize)?;
        nonzero_duration("net.ip_accept_interval", n.ip_accept_interval)?;
        nonzero_duration("net.read_timeout", n.read_timeout)?;
        nonzero_duration("net.write_timeout", n.write_timeout)?;
        positive(
            "net.rate_limit_bytes_per_sec",
            usize::try_from(n.rate_limit_bytes_per_sec).unwrap_or(usize::MAX),
        )?;
        if n.rate_limit_bytes_burst < n.max_frame_len as u64 {
            return Err(ConfigError {
                key: "net.rate_limit_bytes_burst",
                reason: format!(
                    "{} is below net.max_frame_len ({}): the largest frame could never pass",
                    n.rate_limit_bytes_burst, n.max_frame_len
                ),
            });
        }
        positive("swarm.max_payload", self.swarm.max_payload)?;
        positive("swarm.protocol_queue", self.swarm.protocol_queue)?;
        positive("swarm.event_queue", self.swarm.event_queue)?;
        let d = &self.dht;
        if !(1..=256).contains(&d.bucket_count) {
            return Err(ConfigError {
                key: "dht.bucket_count",
                reason: format!("{} is outside 1..=256", d.bucket_count),
            });
        }
        positive("dht.bucket_size", d.bucket_size)?;
        positive("dht.alpha", d.alpha)?;
        nonzero_duration("dht.request_timeout", d.request_timeout)?;
        nonzero_duration("dht.lookup_timeout", d.lookup_timeout)?;
        nonzero_duration("dht.ping_timeout", d.ping_timeout)?;
        nonzero_duration("dht.refresh_interval", d.refresh_interval)?;
        positive("dht.max_per_subnet_bucket", d.max_per_subnet_bucket)?;
        positive("dht.max_per_subnet_table", d.max_per_subnet_table)?;
        positive("dht.max_failures", d.max_failures as usize)?;
        if !(1..=8).contains(&self.lookup.disjoint_paths) {
            return Err(ConfigError {
                key: "lookup.disjoint_paths",
                reason: format!("{} is outside 1..=8", self.lookup.disjoint_paths),
            });
        }
        positive("lookup.max_per_subnet", self.lookup.max_per_subnet)?;
        let g = &self.gossip;
        if !(1..=64).contains(&g.fanout) {
            return Err(ConfigError {
                key: "gossip.fanout",
                reason: format!("{} is outside 1..=64", g.fanout),
            });
        }
        positive("gossip.seen_capacity", g.seen_capacity)?;
        nonzero_duration("gossip.seen_ttl", g.seen_ttl)?;
        positive("gossip.relay_queue", g.relay_queue)?;
        let b = &self.bans;
        nonzero_duration("bans.ban_duration", b.ban_duration)?;
        if b.ban_duration > crate::ban::MAX_BAN_DURATION {
            return Err(ConfigError {
                key: "bans.ban_duration",
                reason: "must be at most 3650 days".into(),
            });
        }
        in_range("bans.ip_threshold", b.ip_threshold, 1..=1000)?;
        positive("bans.max_bans", b.max_bans)?;
        positive("bans.max_offence_records", b.max_offence_records)?;
        for (i, node) in self.bootstrap.nodes.iter().enumerate() {
            node.parse::<crate::peer::NodeInfo>()
                .map_err(|e| ConfigError {
                    key: "bootstrap.nodes",
                    reason: format!("entry {}: {e}", i + 1),
                })?;
        }
        Ok(())
    }
}

/// The network id of a network name, as Factom's `NewNetworkID(name)`: the first four bytes of the name's
/// SHA-256, big-endian (`"myNetwork"` gives `0x29cb7175`), as the same 32 bits in an `i32`.
pub fn network_id_from_name(name: &str) -> i32 {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(name.as_bytes());
    let mut first = [0u8; 4];
    first.copy_from_slice(&hash[..4]);
    i32::from_be_bytes(first)
}

/// Parses a network id given as a number: decimal or `0x` hex, from `i32::MIN` up to `0xffffffff`
/// (values above `i32::MAX` keep their 32 bits).
pub fn parse_network_id(text: &str) -> Result<i32, String> {
    let t = text.trim();
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let magnitude = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => i64::from_str_radix(hex, 16),
        None => digits.parse::<i64>(),
    }
    .map_err(|_| format!("{text:?} is not a number (decimal or 0x hex)"))?;
    network_id_from_i64(if negative { -magnitude } else { magnitude })
}

fn network_id_from_i64(value: i64) -> Result<i32, String> {
    if let Ok(v) = i32::try_from(value) {
        return Ok(v);
    }
    u32::try_from(value)
        .map(|v| i32::from_be_bytes(v.to_be_bytes()))
        .map_err(|_| format!("{value} is outside -2147483648..=4294967295"))
}

/// Accepts a network id as an integer or as a network name (a string).
fn deserialize_network_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = i32;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a number up to 0xffffffff or a network name")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i32, E> {
            network_id_from_i64(v).map_err(E::custom)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i32, E> {
            let v = i64::try_from(v).map_err(|_| E::custom(format!("{v} is too large")))?;
            network_id_from_i64(v).map_err(E::custom)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<i32, E> {
            if v.is_empty() {
                return Err(E::custom("a network name must not be empty"));
            }
            Ok(network_id_from_name(v))
        }
    }
    d.deserialize_any(Visitor)
}

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not valid TOML (the message gives the line and column).
    #[error("not valid TOML: {0}")]
    Syntax(String),
    /// A key is unknown or its value has the wrong type or form.
    #[error("invalid config value for `{key}`: {reason}")]
    Key {
        /// Dotted key path, e.g. `net.max_frame_len`.
        key: String,
        /// What was wrong.
        reason: String,
    },
    /// The values parsed but one is out of range.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

impl ConfigFileError {
    /// The dotted key the error is about, if it is about one key.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigFileError::Key { key, .. } => Some(key),
            ConfigFileError::Invalid(e) => Some(e.key),
            _ => None,
        }
    }
}

/// Parses TOML text into a table (syntax errors name the line and column).
pub fn parse_toml_table(text: &str) -> Result<toml::Table, ConfigFileError> {
    text.parse::<toml::Table>().map_err(|e| {
        // toml renders "TOML parse error at line L, column C", the source excerpt, then the message.
        let rendered = e.to_string();
        let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
        let first = lines.next().unwrap_or("invalid TOML");
        let message = lines
            .rfind(|l| !l.starts_with('|') && !l.contains(" | "))
            .unwrap_or("");
        ConfigFileError::Syntax(if message.is_empty() {
            first.to_owned()
        } else {
            format!("{first}: {message}")
        })
    })
}

/// Deserializes `table` into `T`; an error names the dotted key (prefixed by `prefix`, e.g. `node`) and the
/// reason, including unknown keys.
pub fn from_toml_table<T: serde::de::DeserializeOwned>(
    table: toml::Table,
    prefix: &str,
) -> Result<T, ConfigFileError> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let mut key = e.path().to_string();
        if key == "." {
            key.clear();
        }
        let reason = e.inner().to_string();
        // toml appends "in `key`" on a second line; the key is reported separately.
        let reason = reason.lines().next().unwrap_or("").trim();
        // serde names an unknown field in its message, not in the path.
        if let Some(unknown) = reason
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
        {
            if key.rsplit('.').next() != Some(unknown) {
                key = join_key(&key, unknown);
            }
            let expected = reason
                .split_once(", expected ")
                .map(|(_, e)| format!(" (expected {e})"))
                .unwrap_or_default();
            return ConfigFileError::Key {
                key: join_key(prefix, &key),
                reason: format!("unknown key{expected}"),
            };
        }
        ConfigFileError::Key {
            key: join_key(prefix, &key),
            reason: reason.to_owned(),
        }
    })
}

fn join_key(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.is_empty()) {
        (true, _) => key.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}.{key}"),
    }
}

impl Config {
    /// Parses a whole configuration from TOML and validates it. Missing keys take their defaults; unknown
    /// keys and invalid values are errors naming the key.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigFileError> {
        let config: Config = from_toml_table(parse_toml_table(text)?, "")?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a TOML configuration file (see [`Config::from_toml_str`]).
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// The configuration as TOML text (without comments; `kadmesh config default` prints a commented one).
    pub fn to_toml_string(&self) -> Result<String, ConfigFileError> {
        toml::to_string(self).map_err(|e| ConfigFileError::Syntax(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_id_from_name_matches_factom() {
        assert_eq!(network_id_from_name("myNetwork"), 0x29cb7175);
        assert_eq!(parse_network_id("0x29cb7175"), Ok(0x29cb7175));
        assert_eq!(parse_network_id("1"), Ok(1));
        assert_eq!(parse_network_id("-5"), Ok(-5));
        assert_eq!(
            parse_network_id("0xfeedbeef"),
            Ok(i32::from_be_bytes(0xfeedbeef_u32.to_be_bytes()))
        );
        assert!(parse_network_id("0x1ffffffff").is_err());
        assert!(parse_network_id("main").is_err());
    }

    #[test]
    fn toml_round_trip_and_named_network() {
        let c = Config::default();
        assert_eq!(
            Config::from_toml_str(&c.to_toml_string().unwrap()).unwrap(),
            c
        );
        let c = Config::from_toml_str("network_id = \"myNetwork\"").unwrap();
        assert_eq!(c.network_id, 0x29cb7175);
        let c = Config::from_toml_str("network_id = 0xfeedbeef").unwrap();
        assert_eq!(c.network_id as u32, 0xfeedbeef);
        let c = Config::from_toml_str(&c.to_toml_string().unwrap()).unwrap();
        assert_eq!(c.network_id as u32, 0xfeedbeef);
    }

    #[test]
    fn toml_errors_name_their_key() {
        let key = |text: &str| {
            Config::from_toml_str(text)
                .unwrap_err()
                .key()
                .map(str::to_owned)
        };
        assert_eq!(key("bogus = 1").as_deref(), Some("bogus"));
        assert_eq!(key("[net]\nbogus = 1").as_deref(), Some("net.bogus"));
        assert_eq!(
            key("[net]\nmax_frame_len = \"big\"").as_deref(),
            Some("net.max_frame_len")
        );
        assert_eq!(
            key("[net]\nmax_frame_len = 10").as_deref(),
            Some("net.max_frame_len")
        );
        assert_eq!(
            key("[dht]\nrequest_timeout = \"soon\"").as_deref(),
            Some("dht.request_timeout")
        );
        assert_eq!(key("listen = \"nowhere\"").as_deref(), Some("listen"));
        assert_eq!(
            key("network_id = 0x1ffffffff").as_deref(),
            Some("network_id")
        );
        assert_eq!(key("network_id = \"\"").as_deref(), Some("network_id"));
        let e = Config::from_toml_str("listen = 1\nlisten = ").unwrap_err();
        assert!(matches!(e, ConfigFileError::Syntax(_)));
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = Config::from_toml_str("[net]\nbogus = 1")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "invalid config value for `net.bogus`: unknown key (expected one of `max_frame_len`"
            ),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn default_is_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn invalid_values_name_their_key() {
        let mut c = Config::default();
        c.net.max_frame_len = 10;
        assert_eq!(c.validate().unwrap_err().key, "net.max_frame_len");
        let mut c = Config::default();
        c.net.handshake_timeout = Duration::ZERO;
        assert_eq!(c.validate().unwrap_err().key, "net.handshake_timeout");
        let c = Config {
            client_version: "banana".into(),
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "client_version");
        let mut c = Config::default();
        c.swarm.protocol_queue = 0;
        assert_eq!(c.validate().unwrap_err().key, "swarm.protocol_queue");
        let mut c = Config::default();
        c.gossip.fanout = 0;
        assert_eq!(c.validate().unwrap_err().key, "gossip.fanout");
        let mut c = Config::default();
        c.gossip.seen_ttl = Duration::ZERO;
        assert_eq!(c.validate().unwrap_err().key, "gossip.seen_ttl");
        let mut c = Config::default();
        c.bans.ban_duration = Duration::from_secs(3651 * 86_400);
        assert_eq!(c.validate().unwrap_err().key, "bans.ban_duration");
        let mut c = Config::default();
        c.bans.ip_threshold = 0;
        assert_eq!(c.validate().unwrap_err().key, "bans.ip_threshold");
        let mut c = Config::default();
        c.bans.max_bans = 0;
        assert_eq!(c.validate().unwrap_err().key, "bans.max_bans");
    }

    #[test]
    fn invalid_limits_name_their_key() {
        type Breaks = fn(&mut Config);
        let cases: [(&str, Breaks); 10] = [
            ("net.max_connections", |c| c.net.max_connections = 0),
            ("net.max_outbound", |c| c.net.max_outbound = 0),
            ("net.max_inbound_per_ip", |c| c.net.max_inbound_per_ip = 0),
            ("net.ip_accept_burst", |c| c.net.ip_accept_burst = 0),
            ("net.ip_accept_interval", |c| {
                c.net.ip_accept_interval = Duration::ZERO
            }),
            ("net.read_timeout", |c| c.net.read_timeout = Duration::ZERO),
            ("net.write_timeout", |c| {
                c.net.write_timeout = Duration::ZERO
            }),
            ("net.rate_limit_bytes_per_sec", |c| {
                c.net.rate_limit_bytes_per_sec = 0
            }),
            ("net.rate_limit_bytes_burst", |c| {
                c.net.rate_limit_bytes_burst = c.net.max_frame_len as u64 - 1
            }),
            ("swarm.max_payload", |c| c.swarm.max_payload = 0),
        ];
        for (key, break_it) in cases {
            let mut c = Config::default();
            break_it(&mut c);
            assert_eq!(c.validate().unwrap_err().key, key);
        }
    }

    #[test]
    fn invalid_defences_name_their_key() {
        type Set = fn(&mut Config);
        let defences: [(Set, &str); 5] = [
            (
                |c| c.dht.max_per_subnet_bucket = 0,
                "dht.max_per_subnet_bucket",
            ),
            (
                |c| c.dht.max_per_subnet_table = 0,
                "dht.max_per_subnet_table",
            ),
            (|c| c.dht.max_failures = 0, "dht.max_failures"),
            (|c| c.lookup.disjoint_paths = 9, "lookup.disjoint_paths"),
            (|c| c.lookup.max_per_subnet = 0, "lookup.max_per_subnet"),
        ];
        for (set, key) in defences {
            let mut c = Config::default();
            set(&mut c);
            assert_eq!(c.validate().unwrap_err().key, key);
        }
    }
}
