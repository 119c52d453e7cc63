//! One direction of a simulated connection: a bounded FIFO queue of envelopes with due times, drained by
//! a link task that exists only while the queue holds something.
//!
//! A message is due at `max(send time + its delay, due time of the previous message on the link)`, so a
//! link never reorders. The task sleeps until the head is due, then awaits the destination's
//! [`InboundHandler::handle_envelope`](crate::transport::InboundHandler::handle_envelope): a slow consumer
//! holds up this link only, and once `link_queue` messages wait, senders on this link wait too.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::adversary::forge;
use super::node::{SimNode, lock};
use super::router::NetInner;
use super::stats::SimDropReason;
use crate::transport::Transport;
use crate::transport::sim::SimTransport;
use crate::wire::pb;

/// A queued envelope.
pub(crate) struct Delivery {
    /// When it reaches the destination.
    due: Instant,
    /// The envelope.
    envelope: pb::Envelope,
}

/// The queue and the task flag, under one lock.
#[derive(Default)]
struct LinkState {
    /// Waiting envelopes, due times non-decreasing.
    queue: VecDeque<Delivery>,
    /// Due time of the last envelope queued: the next one is due no earlier.
    last_due: Option<Instant>,
    /// Whether a task drains the queue.
    running: bool,
}

/// One direction of a connection.
pub(crate) struct Link {
    /// Queue and task flag; never held across an await.
    state: Mutex<LinkState>,
    /// Free queue slots; closed with the connection.
    slots: Semaphore,
}

/// The link was closed (its connection went down).
#[derive(Debug)]
pub(crate) struct LinkClosed;

impl Link {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(LinkState::default()),
            slots: Semaphore::new(capacity.clamp(1, Semaphore::MAX_PERMITS)),
        }
    }

    /// Waits for a free queue slot (FIFO among senders); the slot is returned when the message is
    /// delivered or dropped.
    pub(crate) async fn reserve(&self) -> Result<(), LinkClosed> {
        let permit = self.slots.acquire().await.map_err(|_| LinkClosed)?;
        permit.forget();
        Ok(())
    }

    /// Queues an envelope due no earlier than `due` (the caller holds a slot). Returns true if no task
    /// drains the link: the caller must start [`run_link`].
    pub(crate) fn push(&self, due: Instant, envelope: pb::Envelope) -> bool {
        let mut state = lock(&self.state);
        let due = state.last_due.map_or(due, |last| due.max(last));
        state.last_due = Some(due);
        state.queue.push_back(Delivery { due, envelope });
        let start = !state.running;
        state.running = true;
        start
    }

    /// The next envelope, or `None` after marking the task stopped (and freeing the queue's memory).
    fn pop(&self) -> Option<Delivery> {
        let mut state = lock(&self.state);
        let next = state.queue.pop_front();
        if next.is_none() {
            state.running = false;
            state.queue.shrink_to_fit();
        }
        next
    }

    /// Empties the queue and marks the task stopped; returns how many envelopes were removed.
    fn drain(&self) -> usize {
        let mut state = lock(&self.state);
        let n = state.queue.len();
        state.queue = VecDeque::new();
        state.running = false;
        n
    }

    /// Returns the slot of a delivered or dropped message.
    fn release(&self) {
        self.slots.add_permits(1);
    }

    /// Closes the link: waiting and later senders fail. Queued envelopes are still due (and are
    /// dropped then if the endpoints cannot reach each other).
    pub(crate) fn close(&self) {
        self.slots.close();
    }

    /// Envelopes queued now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.state).queue.len()
    }
}

/// Drains `link` from `src` to `dst` until it is empty or `src` shuts down.
pub(crate) async fn run_link(
    net: Arc<NetInner>,
    link: Arc<Link>,
    src: Arc<SimNode>,
    dst: Arc<SimNode>,
) {
    while let Some(delivery) = link.pop() {
        let arrived = tokio::select! {
            biased;
            _ = src.cancel.cancelled() => Err(SimDropReason::Shutdown),
            _ = tokio::time::sleep_until(delivery.due) => Ok(()),
        };
        let outcome = match arrived {
            Ok(()) => deliver(&net, &src, &dst, delivery.envelope).await,
            Err(reason) => Err(reason),
        };
        match outcome {
            Ok(()) => net.counters.delivered(),
            Err(reason) => net.counters.dropped(reason),
        }
        link.release();
        if src.is_shut_down() {
            for _ in 0..link.drain() {
                net.counters.dropped(SimDropReason::Shutdown);
                link.release();
            }
            return;
        }
    }
}

/// Hands one due envelope to `dst` if `src` can reach it now, awaiting the handler. If `dst` is
/// adversarial and the envelope a FindNode request, the router answers for it instead: the forged
/// response is sent back from `dst` like any message (the request counts as delivered).
async fn deliver(
    net: &Arc<NetInner>,
    src: &Arc<SimNode>,
    dst: &Arc<SimNode>,
    envelope: pb::Envelope,
) -> Result<(), SimDropReason> {
    net.reachable(src, dst)?;
    if let Some(reply) = forge(net, dst, &envelope) {
        net.counters.forged();
        let adversary = SimTransport::new(Arc::clone(net), Arc::clone(dst));
        tokio::select! {
            biased;
            _ = src.cancel.cancelled() => return Err(SimDropReason::Shutdown),
            r = adversary.send(&src.info, reply) => if let Err(e) = r {
                tracing::debug!(to = %src.info, error = %e, "forged answer not sent");
            },
        }
        return Ok(());
    }
    let handler = dst.handler().ok_or(SimDropReason::Shutdown)?;
    tokio::select! {
        biased;
        _ = src.cancel.cancelled() => Err(SimDropReason::Shutdown),
        _ = dst.cancel.cancelled() => Err(SimDropReason::Shutdown),
        () = handler.handle_envelope(src.info, envelope) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn due_times_never_go_backwards_and_slots_bound_the_queue() {
        let link = Link::new(2);
        let now = Instant::now();
        link.reserve().await.unwrap();
        assert!(link.push(now + Duration::from_millis(50), pb::Envelope::default()));
        link.reserve().await.unwrap();
        assert!(!link.push(now + Duration::from_millis(10), pb::Envelope::default()));
        assert_eq!(link.len(), 2);
        // Full: a third sender waits.
        assert!(
            tokio::time::timeout(Duration::from_secs(1), link.reserve())
                .await
                .is_err()
        );
        let first = link.pop().unwrap();
        let second = link.pop().unwrap();
        assert_eq!(first.due, now + Duration::from_millis(50));
        assert_eq!(
            second.due, first.due,
            "the later message is not due earlier"
        );
        assert!(link.pop().is_none());
        link.release();
        link.reserve().await.unwrap();
        // The task flag was cleared by the empty pop: the next push must start a task.
        assert!(link.push(now, pb::Envelope::default()));
        link.close();
        assert!(link.reserve().await.is_err());
        assert_eq!(link.drain(), 1);
    }
}
