//! The simulator's [`Transport`]: one [`SimTransport`] per simulated node, routing envelopes through the
//! in-memory network of [`crate::sim`] instead of sockets (no handshake, no session crypto).
//!
//! Build nodes with [`SimNetwork::add_node`](crate::sim::SimNetwork::add_node) rather than directly.
//!
//! - `send` refuses like a failed dial, after one round trip of virtual time, when there is no node at the
//!   address ([`TransportError::Dial`]), another key answers there ([`TransportError::Handshake`]), the
//!   node shut down ([`TransportError::Dial`]), or either end is offline or a partition separates them
//!   ([`TransportError::Unreachable`]). Otherwise it opens the connection if needed, samples latency and
//!   faults, and queues the envelope on the link to the peer (waiting while that link's queue is full);
//!   it returns once the envelope is queued or lost to a drop fault.
//! - `connect` opens the connection (no virtual time passes) or refuses as above.
//! - `shutdown` takes the node offline for good, closes its connections, removes it from the network
//!   (freeing its address), drops what it still had queued and joins its link tasks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use prost::Message as _;
use tokio::time::Instant;

use crate::crypto::session::sealed_len;
use crate::peer::NodeInfo;
use crate::sim::router::{NetInner, Route};
use crate::sim::{Counters, SimNode, run_link};
use crate::transport::{CloseReason, Transport, TransportError};
use crate::wire::pb;

/// One simulated node's end of the in-memory network.
pub struct SimTransport {
    /// The network.
    net: Arc<NetInner>,
    /// This node.
    node: Arc<SimNode>,
}

impl SimTransport {
    pub(crate) fn new(net: Arc<NetInner>, node: Arc<SimNode>) -> Self {
        Self { net, node }
    }

    /// Waits `after` (or until shutdown), then fails with `error`. Counted as pending for
    /// [`SimNetwork::run_until_idle`](crate::sim::SimNetwork::run_until_idle) while it waits, even if the
    /// caller gives up early.
    async fn refuse(&self, after: Duration, error: TransportError) -> Result<(), TransportError> {
        let _pending = Refusal::start(&self.net.counters);
        tokio::select! {
            biased;
            _ = self.node.cancel.cancelled() => Err(TransportError::Shutdown),
            _ = tokio::time::sleep(after) => Err(error),
        }
    }

    /// Queues `envelope` for `dst`, due after `delay`.
    async fn enqueue(
        &self,
        dst: Arc<SimNode>,
        delay: Duration,
        envelope: pb::Envelope,
    ) -> Result<(), TransportError> {
        let link = self.net.open_link(&self.node, &dst);
        let reserved = tokio::select! {
            biased;
            _ = self.node.cancel.cancelled() => return Err(TransportError::Shutdown),
            r = link.reserve() => r,
        };
        if reserved.is_err() {
            // The connection went down while we waited for queue space.
            return Err(TransportError::Unreachable(dst.info.id));
        }
        self.net.counters.queued();
        if link.push(Instant::now() + delay, envelope) {
            self.node.tasks.spawn(run_link(
                Arc::clone(&self.net),
                link,
                Arc::clone(&self.node),
                dst,
            ));
        }
        Ok(())
    }
}

/// Counts a refusal as pending until dropped.
struct Refusal<'a>(&'a Counters);

impl<'a> Refusal<'a> {
    fn start(counters: &'a Counters) -> Self {
        counters.refusing();
        Self(counters)
    }
}

impl Drop for Refusal<'_> {
    fn drop(&mut self) {
        self.0.refused_done();
    }
}

impl Transport for SimTransport {
    fn send<'a>(
        &'a self,
        to: &'a NodeInfo,
        envelope: pb::Envelope,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            if self.node.is_shut_down() {
                return Err(TransportError::Shutdown);
            }
            let len = sealed_len(envelope.encoded_len());
            let max = self.node.settings.max_frame_len;
            if len > max {
                return Err(TransportError::TooLarge { len, max });
            }
            self.net.counters.attempt();
            match self.net.route(&self.node, to, true) {
                Route::Refuse { after, error } => self.refuse(after, error).await,
                Route::Lose => {
                    self.net.counters.lost_at_send();
                    Ok(())
                }
                Route::Deliver { dst, delay } => self.enqueue(dst, delay, envelope).await,
            }
        })
    }

    fn connect<'a>(&'a self, to: &'a NodeInfo) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            if self.node.is_shut_down() {
                return Err(TransportError::Shutdown);
            }
            self.net.counters.attempt();
            match self.net.route(&self.node, to, false) {
                Route::Refuse { after, error } => self.refuse(after, error).await,
                Route::Deliver { dst, .. } => {
                    self.net.open_conn(&self.node, &dst);
                    Ok(())
                }
                Route::Lose => Err(TransportError::Unreachable(to.id)),
            }
        })
    }

    fn local_addr(&self) -> SocketAddr {
        self.node.info.addr
    }

    fn connected_peers(&self) -> Vec<NodeInfo> {
        self.net.connected(&self.node)
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.node.mark_shut_down();
            self.net
                .close_all(&self.node, None, CloseReason::RemoteClosed);
            self.net.remove(&self.node);
            self.node.tasks.close();
            self.node.tasks.wait().await;
        })
    }
}
