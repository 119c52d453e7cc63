//! Counters of a simulated network: [`SimStats`] (a snapshot) and the live counters behind it.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// Why the simulator lost a message it had accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimDropReason {
    /// A [`Fault::Drop`](super::Fault::Drop) endpoint lost it.
    Fault,
    /// When it was due, one of its endpoints was offline.
    Offline,
    /// When it was due, a partition separated its endpoints.
    Partitioned,
    /// One of its endpoints shut down while it was queued or being handled.
    Shutdown,
}

/// Messages the simulator lost, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// Lost to a [`Fault::Drop`](super::Fault::Drop) endpoint.
    pub fault: u64,
    /// An endpoint was offline when the message was due.
    pub offline: u64,
    /// A partition separated the endpoints when the message was due.
    pub partitioned: u64,
    /// An endpoint shut down with the message queued.
    pub shutdown: u64,
}

impl DropCounts {
    /// Messages lost for any reason.
    pub fn total(&self) -> u64 {
        self.fault + self.offline + self.partitioned + self.shutdown
    }
}

/// A snapshot of a simulated network's message counters.
///
/// Every accepted message ends up delivered or dropped: `sent == delivered + dropped.total() + in_flight`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Envelopes a transport accepted for delivery (including those a fault then lost).
    pub sent: u64,
    /// Envelopes handed to the destination's handler (its Swarm) and handled.
    pub delivered: u64,
    /// Accepted envelopes lost, by reason.
    pub dropped: DropCounts,
    /// Sends and connects refused: no node at the address, another key there, an endpoint offline or
    /// shut down, or a partition between them. These never count as sent.
    pub refused: u64,
    /// Accepted envelopes neither delivered nor dropped yet (queued, or being handled).
    pub in_flight: u64,
    /// FindNode requests to adversarial nodes that the router answered with a forged response (the
    /// requests count as delivered, the answers as sent).
    pub forged: u64,
    /// Nodes in the network now (started, not shut down).
    pub nodes: u64,
    /// Open connections now, each counted once.
    pub connections: u64,
}

/// The live counters.
#[derive(Default)]
pub(crate) struct Counters {
    sent: AtomicU64,
    delivered: AtomicU64,
    dropped_fault: AtomicU64,
    dropped_offline: AtomicU64,
    dropped_partitioned: AtomicU64,
    dropped_shutdown: AtomicU64,
    refused: AtomicU64,
    in_flight: AtomicU64,
    forged: AtomicU64,
    /// Refusals whose delay is still running.
    refusing: AtomicU64,
    /// Bumped by every send or connect attempt; `run_until_idle` watches it.
    attempts: AtomicU64,
    /// Woken when nothing is in flight or refusing any more.
    idle: Notify,
}

impl Counters {
    /// A message was accepted and lost at once to a fault.
    pub(crate) fn lost_at_send(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.dropped_fault.fetch_add(1, Ordering::Relaxed);
    }

    /// A message was accepted and queued.
    pub(crate) fn queued(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A queued message was handled by its destination.
    pub(crate) fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.settle();
    }

    /// A queued message was lost.
    pub(crate) fn dropped(&self, reason: SimDropReason) {
        let counter = match reason {
            SimDropReason::Fault => &self.dropped_fault,
            SimDropReason::Offline => &self.dropped_offline,
            SimDropReason::Partitioned => &self.dropped_partitioned,
            SimDropReason::Shutdown => &self.dropped_shutdown,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.settle();
    }

    fn settle(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.wake_if_idle();
        }
    }

    /// The router answered a FindNode request for an adversary.
    pub(crate) fn forged(&self) {
        self.forged.fetch_add(1, Ordering::Relaxed);
    }

    /// A send or connect was attempted.
    pub(crate) fn attempt(&self) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
    }

    /// A refusal starts its delay.
    pub(crate) fn refusing(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.refusing.fetch_add(1, Ordering::Relaxed);
    }

    /// A refusal's delay is over.
    pub(crate) fn refused_done(&self) {
        if self.refusing.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.wake_if_idle();
        }
    }

    fn wake_if_idle(&self) {
        if self.is_idle() {
            self.idle.notify_waiters();
        }
    }

    /// Nothing in flight and no refusal pending.
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && self.refusing.load(Ordering::Acquire) == 0
    }

    /// The attempt counter.
    pub(crate) fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Waits until [`Counters::is_idle`].
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_idle() {
                return;
            }
            notified.await;
        }
    }

    /// A snapshot of the message counters (`nodes` and `connections` left at 0).
    pub(crate) fn snapshot(&self) -> SimStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SimStats {
            sent: get(&self.sent),
            delivered: get(&self.delivered),
            dropped: DropCounts {
                fault: get(&self.dropped_fault),
                offline: get(&self.dropped_offline),
                partitioned: get(&self.dropped_partitioned),
                shutdown: get(&self.dropped_shutdown),
            },
            refused: get(&self.refused),
            in_flight: get(&self.in_flight),
            forged: get(&self.forged),
            nodes: 0,
            connections: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_message_is_accounted_for() {
        let c = Counters::default();
        c.queued();
        c.queued();
        c.queued();
        c.lost_at_send();
        c.delivered();
        c.dropped(SimDropReason::Offline);
        let s = c.snapshot();
        assert_eq!(s.sent, 4);
        assert_eq!(s.in_flight, 1);
        assert_eq!(s.sent, s.delivered + s.dropped.total() + s.in_flight);
        assert!(!c.is_idle());
        c.dropped(SimDropReason::Shutdown);
        assert!(c.is_idle());
        c.refusing();
        assert!(!c.is_idle());
        c.refused_done();
        assert!(c.is_idle());
        assert_eq!(c.snapshot().refused, 1);
    }
}
