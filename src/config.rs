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
    /// Network id: peers with another id are refused at the handshake.
    pub network_id: i32,
    /// Client version announced to peers (semver; peers must share the major).
    pub client_version: String,
    /// Connection, handshake and session settings.
    pub net: NetConfig,
    /// Protocol registry and request settings.
    pub swarm: SwarmConfig,
    /// Routing table and lookup settings.
    pub dht: DhtConfig,
    /// Where to find the network at start.
    pub bootstrap: BootstrapConfig,
    /// Gossip broadcast settings.
    pub gossip: GossipConfig,
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
            bootstrap: BootstrapConfig::default(),
            gossip: GossipConfig::default(),
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
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            protocol_queue: 1024,
            event_queue: 1024,
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

fn positive(key: &'static str, value: usize) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError {
            key,
            reason: "must be greater than 0".into(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
