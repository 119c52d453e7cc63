//! The Swarm's side of bans ([`crate::ban`]): offences read from connection events and gossip checks,
//! what a new ban does to open connections, and the public ban API ([`Swarm::ban`], [`Swarm::bans`],
//! [`Swarm::unban`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::{Swarm, SwarmEvent, SwarmInner};
use crate::ban::{Ban, BanError, BanStats, BanTarget, Bans, Offence};
use crate::config::Config;
use crate::crypto::handshake::HandshakeError;
use crate::crypto::session::SessionError;
use crate::error::Error;
use crate::gossip::GossipError;
use crate::identity::NodeId;
use crate::peer::NodeInfo;
use crate::transport::{CloseReason, PeerEvent};

/// Bans of one swarm.
pub(crate) struct BanState {
    /// The bans, shared with the transport's checks through [`InboundHandler::banned`](crate::transport::InboundHandler::banned).
    pub(crate) registry: Bans,
    /// The IP of each connected peer, so an offence reported when its connection closes counts against
    /// that IP too. Entries leave when the peer's connection closes (bounded by open connections).
    peer_ips: Mutex<HashMap<NodeId, IpAddr>>,
}

impl BanState {
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            registry: Bans::new(&config.bans, config.net.exempt_local),
            peer_ips: Mutex::new(HashMap::new()),
        }
    }

    fn peer_ips(&self) -> MutexGuard<'_, HashMap<NodeId, IpAddr>> {
        self.peer_ips.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The offence an authenticated connection closed for, if it was one.
fn offence_of_close(reason: &CloseReason) -> Option<Offence> {
    match reason {
        // Running out of sequence numbers is our own limit, not the peer's fault.
        CloseReason::Session(SessionError::SequenceExhausted) => None,
        CloseReason::Session(_) => Some(Offence::MacFailure),
        CloseReason::Malformed(_) | CloseReason::FrameTooLarge { .. } => {
            Some(Offence::ProtocolViolation)
        }
        CloseReason::RateLimited => Some(Offence::RateLimit),
        _ => None,
    }
}

/// The offence a failed handshake counts as against the remote IP, if any. Timeouts, closed sockets,
/// another network or version, clock skew and an unexpected key can happen to honest peers; a forged
/// signature, an invalid point, a failed key confirmation and malformed or oversize frames cannot.
fn offence_of_handshake(reason: &CloseReason) -> Option<Offence> {
    match reason {
        CloseReason::Handshake(
            HandshakeError::BadSignature
            | HandshakeError::InvalidPoint
            | HandshakeError::KeyConfirmation
            | HandshakeError::Malformed(_),
        )
        | CloseReason::FrameTooLarge { .. } => Some(Offence::BadHandshake),
        _ => None,
    }
}

/// The offence of relaying an invalid gossip message, if it is one (an honest relay verifies what it
/// relays; a stale or early timestamp can be an honest clock or a slow path).
fn offence_of_gossip(error: &GossipError) -> Option<Offence> {
    match error {
        GossipError::BadSignature => Some(Offence::InvalidSignature),
        GossipError::Malformed | GossipError::InvalidProtocol | GossipError::InvalidAuthor => {
            Some(Offence::ProtocolViolation)
        }
        GossipError::Expired | GossipError::FromFuture => None,
    }
}

impl Swarm {
    /// The active bans, oldest first.
    pub fn bans(&self) -> Vec<Ban> {
        self.inner.bans.registry.active()
    }

    /// The active ban on `target`, if any.
    pub fn ban_of(&self, target: &BanTarget) -> Option<Ban> {
        self.inner.bans.registry.get(target)
    }

    /// Bans `target` (a node id or an IP) for `duration` (default `bans.ban_duration`, at most
    /// [`MAX_BAN_DURATION`](crate::ban::MAX_BAN_DURATION)), replacing any ban it had, with `reason` kept
    /// as its note. Open connections to the node (or from the IP) are closed with
    /// [`CloseReason::Banned`]; later connections are refused until the ban ends.
    pub fn ban(
        &self,
        target: BanTarget,
        duration: Option<Duration>,
        reason: &str,
    ) -> Result<Ban, Error> {
        if target == BanTarget::Id(self.inner.keypair.node_id()) {
            return Err(BanError::OwnId.into());
        }
        let ban = self.inner.bans.registry.add(target, duration, reason)?;
        self.inner.enforce(std::slice::from_ref(&ban));
        Ok(ban)
    }

    /// Lifts the ban on `target`; returns it if there was an active one.
    pub fn unban(&self, target: &BanTarget) -> Option<Ban> {
        let lifted = self.inner.bans.registry.remove(target);
        if let Some(ban) = &lifted {
            tracing::info!(target = %ban.target, "ban lifted");
        }
        lifted
    }

    /// Puts back persisted bans (expired ones, and local IPs under `net.exempt_local`, skipped) and
    /// disconnects the peers they cover. Returns the bans that apply.
    pub fn restore_bans(&self, bans: Vec<Ban>) -> Vec<Ban> {
        let restored = self.inner.bans.registry.restore(bans);
        self.inner.disconnect_banned(&restored);
        restored
    }

    /// Ban counters: active bans, bans made by reason, offences, refusals, evictions.
    pub fn ban_stats(&self) -> BanStats {
        self.inner.bans.registry.stats()
    }

    /// A receiver that sees a new value whenever the bans change (to persist them).
    pub fn ban_changes(&self) -> watch::Receiver<u64> {
        self.inner.bans.registry.changes()
    }
}

impl SwarmInner {
    /// Tracks connected peers' IPs and records the offences connection events reveal.
    pub(super) fn bans_on_peer_event(&self, event: &PeerEvent) {
        match event {
            PeerEvent::Connected { peer, .. } => {
                self.bans.peer_ips().insert(peer.id, peer.addr.ip());
            }
            PeerEvent::Disconnected { peer, reason } => {
                // A retired duplicate leaves the peer's other connection open.
                let ip = if *reason == CloseReason::Duplicate {
                    self.bans.peer_ips().get(peer).copied()
                } else {
                    self.bans.peer_ips().remove(peer)
                };
                if let Some(offence) = offence_of_close(reason) {
                    self.offend(Some(*peer), ip, offence);
                }
            }
            PeerEvent::HandshakeFailed { addr, reason } => {
                if let Some(offence) = offence_of_handshake(reason) {
                    self.offend(None, Some(addr.ip()), offence);
                }
            }
        }
    }

    /// Records an invalid gossip message relayed by `from`, if it is an offence.
    pub(super) fn invalid_gossip_offence(&self, from: &NodeInfo, error: &GossipError) {
        if let Some(offence) = offence_of_gossip(error) {
            self.offend(Some(from.id), Some(from.addr.ip()), offence);
        }
    }

    fn offend(&self, id: Option<NodeId>, ip: Option<IpAddr>, offence: Offence) {
        let made = self.bans.registry.offence(id, ip, offence);
        if let Some(id) = id {
            tracing::debug!(peer = %id.short(), offence = offence.label(), "offence");
        }
        self.enforce(&made);
    }

    /// Announces new bans and closes the connections they cover.
    fn enforce(&self, bans: &[Ban]) {
        for ban in bans {
            tracing::info!(target = %ban.target, reason = %ban.reason, note = %ban.note, "banned");
            self.emit(SwarmEvent::Banned(ban.clone()));
        }
        self.disconnect_banned(bans);
    }

    fn disconnect_banned(&self, bans: &[Ban]) {
        let Ok(transport) = self.transport() else {
            return;
        };
        for ban in bans {
            let reason = CloseReason::Banned(ban.target);
            match ban.target {
                BanTarget::Id(id) => {
                    transport.disconnect(&id, reason);
                }
                BanTarget::Ip(ip) => {
                    for peer in transport.connected_peers() {
                        if peer.addr.ip().to_canonical() == ip {
                            transport.disconnect(&peer.id, reason.clone());
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hostile_failures_are_offences() {
        assert_eq!(
            offence_of_close(&CloseReason::Session(SessionError::BadMac)),
            Some(Offence::MacFailure)
        );
        assert_eq!(
            offence_of_close(&CloseReason::Malformed("x".into())),
            Some(Offence::ProtocolViolation)
        );
        assert_eq!(
            offence_of_close(&CloseReason::RateLimited),
            Some(Offence::RateLimit)
        );
        for honest in [
            CloseReason::RemoteClosed,
            CloseReason::KeepaliveTimeout,
            CloseReason::Duplicate,
            CloseReason::Shutdown,
            CloseReason::Session(SessionError::SequenceExhausted),
            CloseReason::Banned(BanTarget::ip("203.0.113.1".parse().unwrap())),
        ] {
            assert_eq!(offence_of_close(&honest), None, "{honest:?}");
            assert_eq!(offence_of_handshake(&honest), None, "{honest:?}");
        }
        assert_eq!(
            offence_of_handshake(&CloseReason::Handshake(HandshakeError::BadSignature)),
            Some(Offence::BadHandshake)
        );
        for honest in [
            CloseReason::HandshakeTimeout,
            CloseReason::Handshake(HandshakeError::ClockSkew { skew_ms: 1 }),
            CloseReason::Handshake(HandshakeError::NetworkMismatch { ours: 1, theirs: 2 }),
            CloseReason::Refused(crate::transport::Limit::MaxInbound),
            CloseReason::ReadTimeout,
        ] {
            assert_eq!(offence_of_handshake(&honest), None, "{honest:?}");
        }
        assert_eq!(
            offence_of_gossip(&GossipError::BadSignature),
            Some(Offence::InvalidSignature)
        );
        assert_eq!(offence_of_gossip(&GossipError::Expired), None);
    }
}
