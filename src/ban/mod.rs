//! Bans: peers that misbehave are refused for a while, by node id and, beyond a threshold, by IP.
//!
//! An *offence* is something only a hostile or broken peer does: a frame that fails its MAC after the
//! handshake, a protocol violation (malformed envelope, oversize frame, malformed gossip), an exceeded
//! rate limit, a gossip message with an invalid author signature, or a handshake that fails a
//! cryptographic or format check. An authenticated offender is banned **by node id** for
//! `bans.ban_duration`. A failed handshake proves nothing about the key it claims, so it only counts
//! against the remote **IP**; once an IP has `bans.ip_threshold` banned ids or unauthenticated offences
//! within one ban duration, the IP is banned too (never a local IP when `net.exempt_local` is set).
//!
//! - [`list`]: the pure [`BanList`] (time passed in): bans with expiry, offence records, caps.
//! - [`store`]: the `bans.txt` file of the data directory.
//! - [`Bans`]: the thread-safe handle the swarm and the transport share (clock, lock, change signal).
//!
//! Enforcement lives in the TCP transport: a banned IP is closed at accept before any handshake work, a
//! banned id right after the handshake (`CloseReason::Banned`), and dialling a banned id fails with
//! `TransportError::Banned`. The simulator does not enforce bans.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::identity::NodeId;

pub mod list;
mod registry;
pub mod store;

pub use list::{BanList, BanStats};
pub use registry::Bans;

/// Longest ban the API and [`Bans::add`] accept (about ten years).
pub const MAX_BAN_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Longest note kept with a ban, in characters.
pub const MAX_NOTE_CHARS: usize = 200;

/// What a ban applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BanTarget {
    /// A node id (its key, authenticated by the handshake).
    Id(NodeId),
    /// A remote IP address (IPv4-mapped IPv6 addresses are stored as IPv4).
    Ip(IpAddr),
}

impl BanTarget {
    /// The IP target of `ip`, in canonical form.
    pub fn ip(ip: IpAddr) -> Self {
        BanTarget::Ip(ip.to_canonical())
    }

    /// `"id"` or `"ip"`.
    pub fn kind(&self) -> &'static str {
        match self {
            BanTarget::Id(_) => "id",
            BanTarget::Ip(_) => "ip",
        }
    }
}

impl fmt::Display for BanTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BanTarget::Id(id) => write!(f, "{id}"),
            BanTarget::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl FromStr for BanTarget {
    type Err = BanError;

    /// An IP address (`203.0.113.7`, `2001:db8::1`) or a base58 node id. The two never overlap: base58
    /// has neither `.` nor `:`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(BanTarget::ip(ip));
        }
        s.parse::<NodeId>()
            .map(BanTarget::Id)
            .map_err(|_| BanError::BadTarget(s.to_owned()))
    }
}

/// Something a peer did that only a hostile or broken peer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Offence {
    /// A sealed frame failed to open after the handshake (MAC, padding, length).
    MacFailure,
    /// An authenticated peer broke the protocol: malformed envelope, oversize frame, malformed gossip.
    ProtocolViolation,
    /// The peer exceeded the inbound rate limit.
    RateLimit,
    /// The peer relayed a gossip message whose author signature is invalid.
    InvalidSignature,
    /// A handshake failed a cryptographic or format check (counts against the IP only).
    BadHandshake,
}

impl Offence {
    /// Every offence, in label order.
    pub const ALL: [Offence; 5] = [
        Offence::MacFailure,
        Offence::ProtocolViolation,
        Offence::RateLimit,
        Offence::InvalidSignature,
        Offence::BadHandshake,
    ];

    /// The metric and file label.
    pub fn label(&self) -> &'static str {
        match self {
            Offence::MacFailure => "mac_failure",
            Offence::ProtocolViolation => "protocol_violation",
            Offence::RateLimit => "rate_limit",
            Offence::InvalidSignature => "invalid_signature",
            Offence::BadHandshake => "bad_handshake",
        }
    }
}

/// Why a ban was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BanReason {
    /// An authenticated peer committed this offence (an id ban).
    Offence(Offence),
    /// Too many banned ids or failed handshakes came from this IP (an IP ban).
    IpThreshold,
    /// An operator or the embedding application banned it.
    Manual,
}

impl BanReason {
    /// Every reason a ban can have, in label order ([`Offence::BadHandshake`] never bans an id, so it is
    /// not one).
    pub const ALL: [BanReason; 6] = [
        BanReason::Offence(Offence::MacFailure),
        BanReason::Offence(Offence::ProtocolViolation),
        BanReason::Offence(Offence::RateLimit),
        BanReason::Offence(Offence::InvalidSignature),
        BanReason::IpThreshold,
        BanReason::Manual,
    ];

    /// The metric and file label (`rate_limit`, `ip_threshold`, `manual`, ...).
    pub fn label(&self) -> &'static str {
        match self {
            BanReason::Offence(o) => o.label(),
            BanReason::IpThreshold => "ip_threshold",
            BanReason::Manual => "manual",
        }
    }

    /// Position in [`BanReason::ALL`].
    pub(crate) fn index(&self) -> Option<usize> {
        BanReason::ALL.iter().position(|r| r == self)
    }
}

impl fmt::Display for BanReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for BanReason {
    type Err = BanError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BanReason::ALL
            .into_iter()
            .find(|r| r.label() == s)
            .ok_or_else(|| BanError::BadReason(s.to_owned()))
    }
}

/// One ban. Times are wall-clock unix milliseconds, so a ban keeps its end across restarts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    /// What is banned.
    pub target: BanTarget,
    /// Why.
    pub reason: BanReason,
    /// Free text (an operator's reason, or what crossed the IP threshold); one line, at most
    /// [`MAX_NOTE_CHARS`] characters.
    pub note: String,
    /// When the ban was made (unix ms).
    pub since_ms: i64,
    /// When it ends (unix ms); expired bans vanish.
    pub until_ms: i64,
}

impl Ban {
    /// True while the ban applies at `now_ms`.
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.until_ms > now_ms
    }

    /// Time left at `now_ms` (zero once expired).
    pub fn remaining(&self, now_ms: i64) -> Duration {
        Duration::from_millis(u64::try_from(self.until_ms.saturating_sub(now_ms)).unwrap_or(0))
    }
}

/// Keeps a note to one line of printable text, at most [`MAX_NOTE_CHARS`] characters.
pub fn clean_note(note: &str) -> String {
    note.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_NOTE_CHARS)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// `duration` in milliseconds, as a signed offset for unix-ms arithmetic.
pub(crate) fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Why a ban could not be made, parsed or loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BanError {
    /// The text is neither an IP address nor a base58 node id.
    #[error("invalid ban target {0:?}: expected a base58 node id or an IP address")]
    BadTarget(String),
    /// Not a known ban reason label.
    #[error("unknown ban reason {0:?}")]
    BadReason(String),
    /// Local IPs are never banned while `net.exempt_local` is set.
    #[error("{0} is a local address and `net.exempt_local` is set: local IPs are never banned")]
    ExemptIp(IpAddr),
    /// A node does not ban itself.
    #[error("a node cannot ban its own id")]
    OwnId,
    /// The duration is zero or longer than [`MAX_BAN_DURATION`].
    #[error("ban duration must be longer than 0 and at most {} days", MAX_BAN_DURATION.as_secs() / 86_400)]
    BadDuration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    #[test]
    fn targets_parse_and_print() {
        let id = Keypair::random().node_id();
        let t: BanTarget = id.to_string().parse().unwrap();
        assert_eq!(t, BanTarget::Id(id));
        assert_eq!(t.to_string(), id.to_string());
        let v4: BanTarget = "203.0.113.7".parse().unwrap();
        assert_eq!(v4.kind(), "ip");
        // An IPv4-mapped IPv6 address is the IPv4 address.
        assert_eq!("::ffff:203.0.113.7".parse::<BanTarget>().unwrap(), v4);
        assert_eq!(
            "2001:db8::1".parse::<BanTarget>().unwrap().to_string(),
            "2001:db8::1"
        );
        for bad in ["", "0OIl", "300.1.1.1", "abc def"] {
            assert_eq!(
                bad.parse::<BanTarget>(),
                Err(BanError::BadTarget(bad.into()))
            );
        }
    }

    #[test]
    fn reasons_round_trip_and_notes_are_one_line() {
        for r in BanReason::ALL {
            assert_eq!(r.label().parse::<BanReason>().unwrap(), r);
            assert_eq!(r.index().map(|i| BanReason::ALL[i]), Some(r));
        }
        assert!("nonsense".parse::<BanReason>().is_err());
        assert!("bad_handshake".parse::<BanReason>().is_err());
        assert_eq!(clean_note(" spam\nand\teggs "), "spam and eggs");
        assert_eq!(clean_note(&"x".repeat(500)).len(), MAX_NOTE_CHARS);
    }
}
