//! [`ConnectionPool`]: at most one authenticated connection per peer.
//!
//! Concurrent `get_connection` calls for one peer share one dial. When both sides dial each other at the
//! same time, both keep the connection dialled by the node with the smaller id (the other is retired
//! gracefully), so the two nodes converge on the same single connection. A closed connection is removed
//! only if it is still the one in the pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio::sync::watch;
use uuid::Uuid;

use super::TcpContext;
use super::connection::{self, ConnectionHandle};
use crate::identity::NodeId;
use crate::peer::NodeInfo;
use crate::transport::{CloseReason, Direction, PeerEvent, TransportError};

/// Result of a dial, shared with every caller waiting for it.
type DialResult = Option<Result<ConnectionHandle, TransportError>>;

/// What the pool holds for one peer.
enum Slot {
    /// An authenticated connection.
    Connected(ConnectionHandle),
    /// A dial in progress; callers wait on the receiver.
    Dialing {
        /// Identifies this dial, so only it clears its own slot.
        dial_id: Uuid,
        /// Resolves with the dial's outcome.
        result: watch::Receiver<DialResult>,
    },
}

/// The connections of one node, keyed by peer id.
pub struct ConnectionPool {
    /// Shared transport state.
    ctx: Arc<TcpContext>,
    /// One slot per peer.
    slots: DashMap<NodeId, Slot>,
    /// Dials started, for tests and metrics.
    dials: AtomicU64,
}

impl ConnectionPool {
    /// An empty pool.
    pub(crate) fn new(ctx: Arc<TcpContext>) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            slots: DashMap::new(),
            dials: AtomicU64::new(0),
        })
    }

    /// Number of dials started so far.
    pub fn dial_count(&self) -> u64 {
        self.dials.load(Ordering::Relaxed)
    }

    /// Peers with an open connection.
    pub fn connected(&self) -> Vec<NodeInfo> {
        self.slots
            .iter()
            .filter_map(|slot| match slot.value() {
                Slot::Connected(h) if h.is_open() => Some(h.peer),
                _ => None,
            })
            .collect()
    }

    /// The open connection to `peer`, if any (no dial).
    pub fn get(&self, peer: &NodeId) -> Option<ConnectionHandle> {
        match self.slots.get(peer).as_deref() {
            Some(Slot::Connected(h)) if h.is_open() => Some(h.clone()),
            _ => None,
        }
    }

    /// Returns the connection to `node`, dialling it if needed. Concurrent callers share one dial.
    pub async fn get_connection(
        self: &Arc<Self>,
        node: &NodeInfo,
    ) -> Result<ConnectionHandle, TransportError> {
        if node.id == self.ctx.keypair.node_id() {
            return Err(TransportError::Handshake {
                addr: node.addr,
                reason: "connection to ourselves".into(),
            });
        }
        if let Err(CloseReason::Banned(ban)) = self.ctx.check_ban(Some(&node.id), node.addr.ip()) {
            return Err(TransportError::Banned(ban));
        }
        loop {
            if self.ctx.cancel.is_cancelled() {
                return Err(TransportError::Shutdown);
            }
            let mut waiter = match self.slots.entry(node.id) {
                Entry::Occupied(mut e) => match e.get() {
                    Slot::Connected(h) if h.is_open() => return Ok(h.clone()),
                    Slot::Connected(_) => {
                        let (dial_id, rx) = self.start_dial(*node);
                        e.insert(Slot::Dialing {
                            dial_id,
                            result: rx.clone(),
                        });
                        rx
                    }
                    Slot::Dialing { result, .. } => result.clone(),
                },
                Entry::Vacant(v) => {
                    let (dial_id, rx) = self.start_dial(*node);
                    v.insert(Slot::Dialing {
                        dial_id,
                        result: rx.clone(),
                    });
                    rx
                }
            };
            let outcome = tokio::select! {
                r = waiter.wait_for(Option::is_some) => r.ok().and_then(|v| v.clone()),
                _ = self.ctx.cancel.cancelled() => return Err(TransportError::Shutdown),
            };
            match outcome {
                Some(Ok(h)) if h.is_open() => return Ok(h),
                // A connection that lost a tie-break or closed right away: look again.
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e),
                None => return Err(TransportError::Shutdown),
            }
        }
    }

    /// Spawns a dial task; the slot must be set to `Dialing` with the returned id by the caller.
    fn start_dial(self: &Arc<Self>, node: NodeInfo) -> (Uuid, watch::Receiver<DialResult>) {
        self.dials.fetch_add(1, Ordering::Relaxed);
        let dial_id = Uuid::new_v4();
        let (tx, rx) = watch::channel(None);
        let pool = Arc::clone(self);
        self.ctx.tasks.spawn(async move {
            let permit = match pool.ctx.limits.admit_outbound() {
                Ok(permit) => permit,
                Err(limit) => {
                    tracing::debug!(peer = %node.id.short(), %limit, "dial refused");
                    pool.clear_dial(&node.id, dial_id);
                    let _ = tx.send(Some(Err(TransportError::LimitReached(limit))));
                    return;
                }
            };
            let dial = async {
                tokio::time::timeout(
                    pool.ctx.config.dial_timeout,
                    connection::dial(&pool.ctx, &node, permit),
                )
                .await
                .unwrap_or(Err(CloseReason::HandshakeTimeout))
            };
            let outcome = tokio::select! {
                r = dial => r,
                _ = pool.ctx.cancel.cancelled() => Err(CloseReason::Shutdown),
            };
            let outcome = outcome.and_then(|a| {
                pool.ctx
                    .check_ban(Some(&a.established.remote), node.addr.ip())
                    .map(|()| a)
            });
            let result = match outcome {
                Ok(authenticated) => {
                    let peer = connection::peer_info(
                        &authenticated.established,
                        Direction::Outbound,
                        Some(node.addr),
                        node.addr,
                    );
                    Ok(pool.establish(authenticated, peer, Direction::Outbound))
                }
                Err(reason) => {
                    pool.clear_dial(&node.id, dial_id);
                    connection::handshake_failed(&pool.ctx, node.addr, reason.clone());
                    // An inbound connection from the same peer may have arrived meanwhile.
                    match pool.get(&node.id) {
                        Some(h) => Ok(h),
                        None => Err(dial_error(&node, reason)),
                    }
                }
            };
            let _ = tx.send(Some(result));
        });
        (dial_id, rx)
    }

    fn clear_dial(&self, peer: &NodeId, dial_id: Uuid) {
        self.slots.remove_if(
            peer,
            |_, slot| matches!(slot, Slot::Dialing { dial_id: d, .. } if *d == dial_id),
        );
    }

    /// Starts the connection tasks for an authenticated stream and registers it; returns the winner.
    pub(crate) fn establish(
        self: &Arc<Self>,
        authenticated: connection::Authenticated,
        peer: NodeInfo,
        direction: Direction,
    ) -> ConnectionHandle {
        let pool = Arc::downgrade(self);
        let (ready, gate) = tokio::sync::oneshot::channel();
        let on_close = move |h: &ConnectionHandle| {
            if let Some(pool) = pool.upgrade() {
                pool.remove_if_current(h);
            }
        };
        let handle = connection::spawn(&self.ctx, authenticated, peer, direction, gate, on_close);
        let winner = self.register(handle);
        let _ = ready.send(());
        winner
    }

    /// Puts `new` in the pool unless a better connection to the same peer is there; retires the loser.
    fn register(&self, new: ConnectionHandle) -> ConnectionHandle {
        let (winner, loser) = match self.slots.entry(new.peer.id) {
            Entry::Vacant(v) => {
                v.insert(Slot::Connected(new.clone()));
                (new, None)
            }
            Entry::Occupied(mut e) => match e.get() {
                Slot::Connected(old) if old.is_open() => {
                    if prefer_new(old, &new) {
                        let old = old.clone();
                        e.insert(Slot::Connected(new.clone()));
                        (new, Some(old))
                    } else {
                        (old.clone(), Some(new))
                    }
                }
                _ => {
                    e.insert(Slot::Connected(new.clone()));
                    (new, None)
                }
            },
        };
        if let Some(loser) = loser {
            tracing::debug!(peer = %loser.peer.id.short(), conn = %loser.id, "retiring duplicate connection");
            loser.retire();
        } else if let Some(handler) = self.ctx.handler.upgrade() {
            handler.peer_event(PeerEvent::Connected {
                peer: winner.peer,
                direction: winner.direction,
            });
        }
        winner
    }

    fn remove_if_current(&self, closed: &ConnectionHandle) {
        self.slots.remove_if(
            &closed.peer.id,
            |_, slot| matches!(slot, Slot::Connected(h) if h.id == closed.id),
        );
    }

    /// Closes every connection. Waiting callers are released by the cancelled context.
    pub(crate) fn close_all(&self) {
        for slot in self.slots.iter() {
            if let Slot::Connected(h) = slot.value() {
                h.close(CloseReason::Shutdown);
            }
        }
        self.slots.clear();
    }
}

/// Tie-break between two open connections to one peer: keep the one dialled by the smaller node id;
/// between two dialled by the same node, keep the newer one (the old one is probably half-dead).
fn prefer_new(old: &ConnectionHandle, new: &ConnectionHandle) -> bool {
    if old.initiator == new.initiator {
        true
    } else {
        new.initiator < old.initiator
    }
}

fn dial_error(node: &NodeInfo, reason: CloseReason) -> TransportError {
    match reason {
        CloseReason::Shutdown => TransportError::Shutdown,
        CloseReason::Banned(ban) => TransportError::Banned(ban),
        CloseReason::Handshake(e) => TransportError::Handshake {
            addr: node.addr,
            reason: e.to_string(),
        },
        other => TransportError::Dial {
            addr: node.addr,
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Weak;
    use std::time::Duration;

    use futures::future::BoxFuture;

    use super::*;
    use crate::config::NetConfig;
    use crate::crypto::handshake::HandshakeConfig;
    use crate::identity::Keypair;
    use crate::transport::tcp::TcpTransport;
    use crate::transport::{InboundHandler, Transport};
    use crate::wire::pb;

    const WAIT: Duration = Duration::from_secs(20);

    /// Ignores everything.
    struct Sink;

    impl InboundHandler for Sink {
        fn handle_envelope(&self, _: NodeInfo, _: pb::Envelope) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }
        fn peer_event(&self, _: PeerEvent) {}
    }

    async fn transport(handler: &Arc<Sink>) -> (TcpTransport, NodeInfo) {
        let keypair = Keypair::random();
        let id = keypair.node_id();
        let handler: Weak<dyn InboundHandler> = Arc::downgrade(handler) as Weak<dyn InboundHandler>;
        let hs = HandshakeConfig {
            network_id: 1,
            client_version: "0.1.0".into(),
            max_clock_skew: Duration::from_secs(30),
            listen_port: 0,
        };
        let t = TcpTransport::bind(
            "127.0.0.1:0".parse().unwrap(),
            keypair,
            NetConfig::default(),
            hs,
            handler,
        )
        .await
        .unwrap();
        let info = NodeInfo::new(id, t.local_addr());
        (t, info)
    }

    #[tokio::test]
    async fn concurrent_get_connection_shares_one_dial() {
        let sink = Arc::new(Sink);
        let (a, _) = transport(&sink).await;
        let (b, b_info) = transport(&sink).await;
        let calls = (0..20).map(|_| {
            let pool = Arc::clone(a.pool());
            async move { pool.get_connection(&b_info).await.map(|c| c.id) }
        });
        let ids = futures::future::join_all(calls).await;
        let first = ids[0].clone().unwrap();
        assert!(
            ids.iter().all(|id| id.as_ref().ok() == Some(&first)),
            "{ids:?}"
        );
        assert_eq!(a.pool().dial_count(), 1);
        assert_eq!(a.connected_peers(), vec![b_info]);
        a.shutdown().await;
        b.shutdown().await;
    }

    #[tokio::test]
    async fn simultaneous_dials_converge_on_one_connection() {
        let sink = Arc::new(Sink);
        for _ in 0..5 {
            let (a, a_info) = transport(&sink).await;
            let (b, b_info) = transport(&sink).await;
            let (ab, ba) = tokio::join!(
                a.pool().get_connection(&b_info),
                b.pool().get_connection(&a_info)
            );
            ab.unwrap();
            ba.unwrap();
            assert_eq!(a.pool().dial_count(), 1);
            assert_eq!(b.pool().dial_count(), 1);
            // Wait until every duplicate has drained and closed on both sides, and the pools agree.
            let mut a_live = a.live_connections();
            let mut b_live = b.live_connections();
            let settled = |a_live: &watch::Receiver<usize>, b_live: &watch::Receiver<usize>| {
                let (Some(on_a), Some(on_b)) = (a.pool().get(&b_info.id), b.pool().get(&a_info.id))
                else {
                    return None;
                };
                let same = on_a.local_socket == on_b.remote_socket;
                (same && *a_live.borrow() == 1 && *b_live.borrow() == 1).then_some((on_a, on_b))
            };
            let (on_a, on_b) = tokio::time::timeout(WAIT, async {
                loop {
                    if let Some(pair) = settled(&a_live, &b_live) {
                        return pair;
                    }
                    // Re-check on every connection count change (and now and then for pool updates).
                    let _ = tokio::time::timeout(Duration::from_millis(20), async {
                        tokio::select! {
                            _ = a_live.changed() => {}
                            _ = b_live.changed() => {}
                        }
                    })
                    .await;
                }
            })
            .await
            .expect("the two nodes never converged on one connection");
            assert_eq!(on_a.remote_socket, on_b.local_socket);
            assert_eq!(on_a.initiator, on_b.initiator);
            assert_eq!(
                on_a.initiator,
                a_info.id.min(b_info.id),
                "smaller id's dial wins"
            );
            a.shutdown().await;
            b.shutdown().await;
        }
    }

    #[tokio::test]
    async fn shutdown_releases_every_waiting_caller() {
        let sink = Arc::new(Sink);
        let (a, _) = transport(&sink).await;
        // A peer that accepts TCP but never answers the handshake.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_info = NodeInfo::new(Keypair::random().node_id(), silent.local_addr().unwrap());
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        let mut waiters = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let pool = Arc::clone(a.pool());
            waiters.spawn(async move { pool.get_connection(&silent_info).await });
        }
        // Every caller is waiting once the one dial has started.
        while a.pool().dial_count() == 0 {
            tokio::task::yield_now().await;
        }
        a.shutdown().await;
        let results = tokio::time::timeout(WAIT, waiters.join_all())
            .await
            .unwrap();
        assert_eq!(results.len(), 20);
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(TransportError::Shutdown))),
            "{results:?}"
        );
        holder.abort();
    }
}
