//! [`Bans`]: the [`BanList`] behind a lock, on the wall clock, with a change signal for persistence.

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::{Ban, BanError, BanList, BanStats, BanTarget, Offence};
use crate::config::BanConfig;
use crate::identity::NodeId;
use crate::transport::tcp::connection::unix_ms;

/// The bans of one node, shared by the swarm (offences, API) and the transport (checks). The lock is
/// held for single map operations only, never across an await.
#[derive(Debug)]
pub struct Bans {
    /// The list; times are wall-clock unix milliseconds.
    list: Mutex<BanList>,
    /// Bumped whenever a ban is made, lifted or restored.
    changes: watch::Sender<u64>,
}

impl Bans {
    /// No bans yet.
    pub fn new(config: &BanConfig, exempt_local: bool) -> Self {
        Self {
            list: Mutex::new(BanList::new(config, exempt_local)),
            changes: watch::Sender::new(0),
        }
    }

    fn list(&self) -> MutexGuard<'_, BanList> {
        // Every method leaves the list consistent; a panic elsewhere does not corrupt it.
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The ban refusing a peer with this id (None before authentication) and IP now, if any; counts the
    /// refusal.
    pub fn check(&self, id: Option<&NodeId>, ip: IpAddr) -> Option<BanTarget> {
        self.list().check(id, Some(ip), unix_ms())
    }

    /// Records an offence (see [`BanList::offence`]); does nothing while `bans.enabled` is off. Returns
    /// the bans made.
    pub fn offence(&self, id: Option<NodeId>, ip: Option<IpAddr>, offence: Offence) -> Vec<Ban> {
        let made = {
            let mut list = self.list();
            if !list.config().enabled {
                return Vec::new();
            }
            list.offence(id, ip, offence, unix_ms())
        };
        if !made.is_empty() {
            self.changed();
        }
        made
    }

    /// Bans `target` for `duration` (default `bans.ban_duration`) with an operator's `note`.
    pub fn add(
        &self,
        target: BanTarget,
        duration: Option<Duration>,
        note: &str,
    ) -> Result<Ban, BanError> {
        let ban = {
            let mut list = self.list();
            let duration = duration.unwrap_or(list.config().ban_duration);
            list.add(target, note, duration, unix_ms())?
        };
        self.changed();
        Ok(ban)
    }

    /// Lifts the ban on `target`; returns it if it was active.
    pub fn remove(&self, target: &BanTarget) -> Option<Ban> {
        let removed = self.list().remove(target, unix_ms());
        if removed.is_some() {
            self.changed();
        }
        removed
    }

    /// The active ban on `target`, if any.
    pub fn get(&self, target: &BanTarget) -> Option<Ban> {
        self.list().get(target, unix_ms())
    }

    /// Every active ban, oldest first.
    pub fn active(&self) -> Vec<Ban> {
        self.list().list(unix_ms())
    }

    /// Puts back persisted bans (expired and exempt ones skipped); returns those that apply.
    pub fn restore(&self, bans: Vec<Ban>) -> Vec<Ban> {
        let restored = self.list().restore(bans, unix_ms());
        if !restored.is_empty() {
            self.changed();
        }
        restored
    }

    /// Counters and active bans now.
    pub fn stats(&self) -> BanStats {
        self.list().stats(unix_ms())
    }

    /// A receiver that sees a new value whenever the bans change.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    #[test]
    fn changes_are_signalled_and_disabled_bans_ignore_offences() {
        let bans = Bans::new(&BanConfig::default(), false);
        let mut changes = bans.changes();
        let who = BanTarget::Id(Keypair::random().node_id());
        bans.add(who, None, "test").unwrap();
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        assert_eq!(bans.get(&who).unwrap().note, "test");
        assert!(bans.remove(&who).is_some());
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        // Nothing to remove: no change.
        assert!(bans.remove(&who).is_none());
        assert!(!changes.has_changed().unwrap());

        let off = Bans::new(
            &BanConfig {
                enabled: false,
                ..BanConfig::default()
            },
            false,
        );
        let id = Keypair::random().node_id();
        assert!(off.offence(Some(id), None, Offence::MacFailure).is_empty());
        assert_eq!(off.check(Some(&id), "203.0.113.1".parse().unwrap()), None);
        // Manual bans still apply.
        off.add(BanTarget::Id(id), None, "").unwrap();
        assert!(
            off.check(Some(&id), "203.0.113.1".parse().unwrap())
                .is_some()
        );
    }
}
