//! [`BanList`]: bans with expiry and the per-IP offence records that lead to IP bans. Pure: every
//! method takes the time (unix milliseconds) from the caller; memory is bounded by `bans.max_bans` and
//! `bans.max_offence_records`, evicting the oldest and counting it.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use super::{
    Ban, BanError, BanReason, BanTarget, MAX_BAN_DURATION, Offence, clean_note, duration_ms,
};
use crate::config::BanConfig;
use crate::identity::NodeId;
use crate::peer::is_local_ip;

/// Counters of a [`BanList`] (and of the refusals its users report), for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BanStats {
    /// Active id bans.
    pub active_ids: usize,
    /// Active IP bans.
    pub active_ips: usize,
    /// Bans made, indexed like [`BanReason::ALL`].
    pub bans: [u64; BanReason::ALL.len()],
    /// Offences recorded, indexed like [`Offence::ALL`].
    pub offences: [u64; Offence::ALL.len()],
    /// Connections and dials refused because the node id is banned.
    pub refused_by_id: u64,
    /// Connections and dials refused because the IP is banned.
    pub refused_by_ip: u64,
    /// Bans evicted (the oldest) to stay within `bans.max_bans`.
    pub evicted_bans: u64,
    /// IP offence records evicted (the one quiet longest) to stay within `bans.max_offence_records`.
    pub evicted_records: u64,
}

/// What one IP did recently: `(time, offending id)` pairs, oldest first; an unauthenticated offence has
/// no id, and an id appears at most once.
#[derive(Default, Debug)]
struct IpRecord {
    /// At most `ip_threshold` events within the last ban duration.
    events: VecDeque<(i64, Option<NodeId>)>,
}

impl IpRecord {
    fn last(&self) -> i64 {
        self.events.back().map(|(at, _)| *at).unwrap_or(i64::MIN)
    }
}

/// The bans of one node and the offence records that lead to IP bans.
#[derive(Debug)]
pub struct BanList {
    /// Durations, threshold and caps.
    config: BanConfig,
    /// Local IPs are never IP-banned (`net.exempt_local`).
    exempt_local: bool,
    /// Every ban, active or expired but not yet swept.
    bans: HashMap<BanTarget, Ban>,
    /// Recent offences per IP (canonical form).
    records: HashMap<IpAddr, IpRecord>,
    /// Counters.
    stats: BanStats,
}

impl BanList {
    /// An empty list with `config`'s duration, threshold and caps.
    pub fn new(config: &BanConfig, exempt_local: bool) -> Self {
        Self {
            config: config.clone(),
            exempt_local,
            bans: HashMap::new(),
            records: HashMap::new(),
            stats: BanStats::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &BanConfig {
        &self.config
    }

    /// True if `ip` can never be banned (a local address while `net.exempt_local` is set).
    pub fn is_exempt(&self, ip: IpAddr) -> bool {
        self.exempt_local && is_local_ip(ip)
    }

    /// The ban that refuses a peer with this id (if known) and IP at `now`, if any, counting the refusal.
    /// The id is checked first.
    pub fn check(
        &mut self,
        id: Option<&NodeId>,
        ip: Option<IpAddr>,
        now: i64,
    ) -> Option<BanTarget> {
        if let Some(id) = id
            && self.active(&BanTarget::Id(*id), now).is_some()
        {
            self.stats.refused_by_id += 1;
            return Some(BanTarget::Id(*id));
        }
        let ip = ip.map(|ip| ip.to_canonical())?;
        if self.is_exempt(ip) {
            return None;
        }
        self.active(&BanTarget::Ip(ip), now)?;
        self.stats.refused_by_ip += 1;
        Some(BanTarget::Ip(ip))
    }

    /// Records `offence` by the peer with the authenticated `id` (None: the handshake failed, so only
    /// the IP is known) from `ip`. Bans the id for the ban duration, and the IP once it reaches the
    /// threshold. Returns the bans made.
    pub fn offence(
        &mut self,
        id: Option<NodeId>,
        ip: Option<IpAddr>,
        offence: Offence,
        now: i64,
    ) -> Vec<Ban> {
        if let Some(i) = Offence::ALL.iter().position(|o| *o == offence) {
            self.stats.offences[i] += 1;
        }
        let until = now.saturating_add(duration_ms(self.config.ban_duration));
        let mut made = Vec::new();
        if let Some(id) = id {
            let ban = Ban {
                target: BanTarget::Id(id),
                reason: BanReason::Offence(offence),
                note: String::new(),
                since_ms: now,
                until_ms: until,
            };
            made.push(self.insert(ban, now));
        }
        let ip = ip.map(|ip| ip.to_canonical());
        if let Some(ip) = ip.filter(|ip| !self.is_exempt(*ip))
            && self.active(&BanTarget::Ip(ip), now).is_none()
        {
            let seen = self.record(ip, id, now);
            if seen >= self.config.ip_threshold {
                self.records.remove(&ip);
                let ban = Ban {
                    target: BanTarget::Ip(ip),
                    reason: BanReason::IpThreshold,
                    note: format!(
                        "{seen} banned ids or failed handshakes within {}",
                        humantime_serde::re::humantime::format_duration(self.config.ban_duration)
                    ),
                    since_ms: now,
                    until_ms: until,
                };
                made.push(self.insert(ban, now));
            }
        }
        made
    }

    /// Bans `target` for `duration` from `now` ([`BanReason::Manual`]), replacing any ban it had.
    pub fn add(
        &mut self,
        target: BanTarget,
        note: &str,
        duration: Duration,
        now: i64,
    ) -> Result<Ban, BanError> {
        if duration.is_zero() || duration > MAX_BAN_DURATION {
            return Err(BanError::BadDuration);
        }
        let target = match target {
            BanTarget::Ip(ip) if self.is_exempt(ip) => return Err(BanError::ExemptIp(ip)),
            BanTarget::Ip(ip) => BanTarget::ip(ip),
            id => id,
        };
        let ban = Ban {
            target,
            reason: BanReason::Manual,
            note: clean_note(note),
            since_ms: now,
            until_ms: now.saturating_add(duration_ms(duration)),
        };
        self.bans.remove(&target);
        Ok(self.insert(ban, now))
    }

    /// Puts back bans loaded from disk: expired ones and exempt IPs are skipped, an existing ban is
    /// kept if it lasts longer. Not counted as new bans. Returns the bans that apply.
    pub fn restore(&mut self, bans: Vec<Ban>, now: i64) -> Vec<Ban> {
        let mut restored = Vec::new();
        for mut ban in bans {
            if !ban.is_active(now) || matches!(ban.target, BanTarget::Ip(ip) if self.is_exempt(ip))
            {
                continue;
            }
            if let BanTarget::Ip(ip) = ban.target {
                ban.target = BanTarget::ip(ip);
            }
            if self
                .active(&ban.target, now)
                .is_some_and(|b| b.until_ms >= ban.until_ms)
            {
                continue;
            }
            self.make_room(&ban.target, now);
            self.bans.insert(ban.target, ban.clone());
            restored.push(ban);
        }
        restored
    }

    /// Lifts the ban on `target`; returns it if it was active.
    pub fn remove(&mut self, target: &BanTarget, now: i64) -> Option<Ban> {
        let target = match target {
            BanTarget::Ip(ip) => BanTarget::ip(*ip),
            id => *id,
        };
        self.bans.remove(&target).filter(|b| b.is_active(now))
    }

    /// The active ban on `target`, if any.
    pub fn get(&mut self, target: &BanTarget, now: i64) -> Option<Ban> {
        self.active(target, now).cloned()
    }

    /// Every active ban, oldest first.
    pub fn list(&mut self, now: i64) -> Vec<Ban> {
        self.prune(now);
        let mut bans: Vec<Ban> = self.bans.values().cloned().collect();
        bans.sort_by_key(|b| (b.since_ms, b.target));
        bans
    }

    /// Forgets expired bans and offence records older than the ban duration. Returns the bans removed.
    pub fn prune(&mut self, now: i64) -> usize {
        let before = self.bans.len();
        self.bans.retain(|_, b| b.is_active(now));
        let window_start = now.saturating_sub(duration_ms(self.config.ban_duration));
        self.records.retain(|_, r| r.last() > window_start);
        before - self.bans.len()
    }

    /// The counters, with the active bans at `now`.
    pub fn stats(&mut self, now: i64) -> BanStats {
        self.prune(now);
        let active_ids = self
            .bans
            .keys()
            .filter(|t| matches!(t, BanTarget::Id(_)))
            .count();
        BanStats {
            active_ids,
            active_ips: self.bans.len() - active_ids,
            ..self.stats.clone()
        }
    }

    /// IPs with offence records now (for tests of the cap).
    pub fn offence_records(&self) -> usize {
        self.records.len()
    }

    /// The ban on `target` if it is active at `now`; an expired one is removed.
    fn active(&mut self, target: &BanTarget, now: i64) -> Option<&Ban> {
        if self.bans.get(target).is_some_and(|b| !b.is_active(now)) {
            self.bans.remove(target);
        }
        self.bans.get(target)
    }

    /// Stores `ban` (an offence keeps a longer ban already there), counts it and returns the ban in force.
    fn insert(&mut self, ban: Ban, now: i64) -> Ban {
        if let Some(i) = ban.reason.index() {
            self.stats.bans[i] += 1;
        }
        if let Some(old) = self.active(&ban.target, now)
            && old.until_ms >= ban.until_ms
        {
            return old.clone();
        }
        self.make_room(&ban.target, now);
        self.bans.insert(ban.target, ban.clone());
        ban
    }

    /// Makes room for a ban on `target`: sweeps expired bans, then evicts the oldest, if the list is full.
    fn make_room(&mut self, target: &BanTarget, now: i64) {
        if self.bans.contains_key(target) || self.bans.len() < self.config.max_bans {
            return;
        }
        self.prune(now);
        while self.bans.len() >= self.config.max_bans {
            let Some(oldest) = self
                .bans
                .values()
                .min_by_key(|b| (b.since_ms, b.until_ms, b.target))
                .map(|b| b.target)
            else {
                return;
            };
            self.bans.remove(&oldest);
            self.stats.evicted_bans += 1;
        }
    }

    /// Adds an offence to `ip`'s record; returns how many distinct ids and unauthenticated offences it
    /// holds within the last ban duration.
    fn record(&mut self, ip: IpAddr, id: Option<NodeId>, now: i64) -> usize {
        if !self.records.contains_key(&ip) && self.records.len() >= self.config.max_offence_records
        {
            let quietest = self
                .records
                .iter()
                .min_by_key(|(addr, r)| (r.last(), **addr))
                .map(|(addr, _)| *addr);
            if let Some(quietest) = quietest {
                self.records.remove(&quietest);
                self.stats.evicted_records += 1;
            }
        }
        let window_start = now.saturating_sub(duration_ms(self.config.ban_duration));
        let threshold = self.config.ip_threshold;
        let record = self.records.entry(ip).or_default();
        record
            .events
            .retain(|(at, who)| *at > window_start && (id.is_none() || *who != id));
        record.events.push_back((now, id));
        while record.events.len() > threshold {
            record.events.pop_front();
        }
        record.events.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::identity::Keypair;

    const HOUR: i64 = 3_600_000;

    fn config() -> BanConfig {
        BanConfig {
            ip_threshold: 3,
            max_bans: 100,
            max_offence_records: 100,
            ..BanConfig::default()
        }
    }

    fn id() -> NodeId {
        Keypair::random().node_id()
    }

    fn public_ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, n))
    }

    #[test]
    fn an_offence_bans_the_id_until_it_expires() {
        let mut list = BanList::new(&config(), false);
        let (bad, good) = (id(), id());
        let made = list.offence(Some(bad), Some(public_ip(1)), Offence::RateLimit, 1000);
        assert_eq!(made.len(), 1);
        assert_eq!(made[0].target, BanTarget::Id(bad));
        assert_eq!(made[0].reason, BanReason::Offence(Offence::RateLimit));
        assert_eq!(made[0].until_ms, 1000 + HOUR);
        assert_eq!(
            list.check(Some(&bad), Some(public_ip(9)), 1000 + HOUR - 1),
            Some(BanTarget::Id(bad))
        );
        assert_eq!(list.check(Some(&good), Some(public_ip(1)), 2000), None);
        // Expired bans vanish.
        assert_eq!(list.check(Some(&bad), None, 1000 + HOUR), None);
        assert!(list.list(1000 + HOUR).is_empty());
        let stats = list.stats(1000 + HOUR);
        assert_eq!(stats.refused_by_id, 1);
        assert_eq!(stats.bans[2], 1);
        assert_eq!(stats.offences[2], 1);
        assert_eq!((stats.active_ids, stats.active_ips), (0, 0));
    }

    #[test]
    fn the_ip_is_banned_at_the_threshold_of_distinct_ids_and_failed_handshakes() {
        let mut list = BanList::new(&config(), false);
        let ip = public_ip(2);
        let (a, b) = (id(), id());
        assert_eq!(
            list.offence(Some(a), Some(ip), Offence::MacFailure, 0)
                .len(),
            1
        );
        // The same id again does not count twice.
        assert_eq!(
            list.offence(Some(a), Some(ip), Offence::MacFailure, 10)
                .len(),
            1
        );
        assert_eq!(
            list.offence(Some(b), Some(ip), Offence::MacFailure, 20)
                .len(),
            1
        );
        assert_eq!(list.check(Some(&id()), Some(ip), 30), None);
        // A failed handshake is the third strike.
        let made = list.offence(None, Some(ip), Offence::BadHandshake, 40);
        assert_eq!(made.len(), 1);
        assert_eq!(made[0].target, BanTarget::Ip(ip));
        assert_eq!(made[0].reason, BanReason::IpThreshold);
        assert!(made[0].note.contains("3 banned ids"), "{}", made[0].note);
        assert_eq!(
            list.check(Some(&id()), Some(ip), 50),
            Some(BanTarget::Ip(ip))
        );
        // The mapped IPv6 form is the same address.
        let mapped = IpAddr::V6(Ipv4Addr::new(203, 0, 113, 2).to_ipv6_mapped());
        assert_eq!(list.check(None, Some(mapped), 50), Some(BanTarget::Ip(ip)));
        assert_eq!(list.stats(50).refused_by_ip, 2);
        assert_eq!(list.offence_records(), 0);
    }

    #[test]
    fn offences_older_than_the_ban_duration_do_not_count() {
        let mut list = BanList::new(&config(), false);
        let ip = public_ip(3);
        list.offence(None, Some(ip), Offence::BadHandshake, 0);
        list.offence(None, Some(ip), Offence::BadHandshake, 1);
        // The two above are outside the window by now.
        assert!(
            list.offence(None, Some(ip), Offence::BadHandshake, HOUR + 1)
                .is_empty()
        );
        assert!(
            list.offence(None, Some(ip), Offence::BadHandshake, HOUR + 2)
                .is_empty()
        );
        assert_eq!(
            list.offence(None, Some(ip), Offence::BadHandshake, HOUR + 3)
                .len(),
            1
        );
        assert!(list.check(None, Some(ip), HOUR + 4).is_some());
    }

    #[test]
    fn local_ips_are_exempt_when_configured_but_ids_are_not() {
        let mut list = BanList::new(&config(), true);
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let ids: Vec<NodeId> = (0..5).map(|_| id()).collect();
        for (i, bad) in ids.iter().enumerate() {
            let made = list.offence(Some(*bad), Some(local), Offence::MacFailure, i as i64);
            assert_eq!(made.len(), 1, "only the id");
        }
        assert_eq!(list.check(None, Some(local), 10), None);
        assert_eq!(
            list.check(Some(&ids[0]), Some(local), 10),
            Some(BanTarget::Id(ids[0]))
        );
        assert_eq!(list.offence_records(), 0, "no records for exempt IPs");
        assert_eq!(
            list.add(BanTarget::Ip(local), "", Duration::from_secs(1), 10),
            Err(BanError::ExemptIp(local))
        );
        // A public address is still banned.
        assert!(
            list.add(BanTarget::Ip(public_ip(4)), "", Duration::from_secs(1), 10)
                .is_ok()
        );
        // Without the exemption, local addresses are like any other.
        let mut strict = BanList::new(&config(), false);
        for bad in &ids[..3] {
            strict.offence(Some(*bad), Some(local), Offence::MacFailure, 0);
        }
        assert_eq!(
            strict.check(None, Some(local), 1),
            Some(BanTarget::Ip(local))
        );
    }

    #[test]
    fn bans_and_records_are_capped_and_evictions_counted() {
        let cfg = BanConfig {
            max_bans: 3,
            max_offence_records: 2,
            ..config()
        };
        let mut list = BanList::new(&cfg, false);
        let ids: Vec<NodeId> = (0..5).map(|_| id()).collect();
        for (i, bad) in ids.iter().enumerate() {
            list.offence(Some(*bad), None, Offence::ProtocolViolation, i as i64);
        }
        let left: Vec<BanTarget> = list.list(10).into_iter().map(|b| b.target).collect();
        let newest: Vec<BanTarget> = ids[2..].iter().map(|i| BanTarget::Id(*i)).collect();
        assert_eq!(left, newest, "the oldest were evicted");
        for n in 1..=4 {
            list.offence(
                None,
                Some(public_ip(n)),
                Offence::BadHandshake,
                i64::from(n),
            );
        }
        assert_eq!(list.offence_records(), 2);
        let stats = list.stats(10);
        assert_eq!((stats.evicted_bans, stats.evicted_records), (2, 2));
        // An expired ban makes room without an eviction.
        let mut list = BanList::new(&cfg, false);
        for (i, bad) in ids[..3].iter().enumerate() {
            list.add(BanTarget::Id(*bad), "", Duration::from_millis(10), i as i64)
                .unwrap();
        }
        list.add(BanTarget::Id(ids[3]), "", Duration::from_secs(1), 100)
            .unwrap();
        assert_eq!(list.stats(100).evicted_bans, 0);
        assert_eq!(list.list(100).len(), 1);
    }

    #[test]
    fn manual_bans_replace_remove_and_validate() {
        let mut list = BanList::new(&config(), false);
        let who = BanTarget::Id(id());
        let ban = list
            .add(who, "spam\nbot", Duration::from_secs(60), 0)
            .unwrap();
        assert_eq!(ban.note, "spam bot");
        assert_eq!((ban.reason, ban.until_ms), (BanReason::Manual, 60_000));
        // A manual ban replaces, even with a shorter one.
        let shorter = list.add(who, "", Duration::from_secs(1), 10).unwrap();
        assert_eq!(list.get(&who, 10), Some(shorter));
        // An offence never shortens a longer ban.
        let longer = list.add(who, "", Duration::from_secs(7200), 20).unwrap();
        let BanTarget::Id(node) = who else {
            unreachable!()
        };
        let kept = list.offence(Some(node), None, Offence::RateLimit, 30);
        assert_eq!(kept, vec![longer.clone()]);
        assert_eq!(list.remove(&who, 40), Some(longer));
        assert_eq!(list.remove(&who, 40), None);
        assert_eq!(
            list.add(who, "", Duration::ZERO, 0),
            Err(BanError::BadDuration)
        );
        assert_eq!(
            list.add(who, "", MAX_BAN_DURATION + Duration::from_secs(1), 0),
            Err(BanError::BadDuration)
        );
    }

    #[test]
    fn restore_skips_expired_and_exempt_bans() {
        let mut list = BanList::new(&config(), true);
        let (a, b) = (id(), id());
        let ban = |target, until_ms| Ban {
            target,
            reason: BanReason::Manual,
            note: String::new(),
            since_ms: 0,
            until_ms,
        };
        let restored = list.restore(
            vec![
                ban(BanTarget::Id(a), 500),
                ban(BanTarget::Id(b), 50),
                ban(BanTarget::Ip("10.0.0.1".parse().unwrap()), 500),
                ban(BanTarget::Ip(public_ip(5)), 500),
            ],
            100,
        );
        let targets: Vec<BanTarget> = restored.iter().map(|b| b.target).collect();
        assert_eq!(targets, vec![BanTarget::Id(a), BanTarget::Ip(public_ip(5))]);
        assert_eq!(list.stats(100).bans, [0; BanReason::ALL.len()]);
    }
}
