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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            network_id: 1,
            client_version: env!("CARGO_PKG_VERSION").to_owned(),
            net: NetConfig::default(),
            swarm: SwarmConfig::default(),
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
        let mut c = Config::default();
        c.client_version = "banana".into();
        assert_eq!(c.validate().unwrap_err().key, "client_version");
        let mut c = Config::default();
        c.swarm.protocol_queue = 0;
        assert_eq!(c.validate().unwrap_err().key, "swarm.protocol_queue");
    }
}
