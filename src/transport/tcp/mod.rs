//! The TCP transport: a listener with connection, per-IP and pending-handshake limits, a
//! [`ConnectionPool`] of authenticated connections, and the [`Transport`] implementation the Swarm uses.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::NetConfig;
use crate::crypto::handshake::HandshakeConfig;
use crate::identity::{Keypair, NodeId};
use crate::peer::NodeInfo;
use crate::transport::{
    CloseReason, Direction, InboundHandler, Limit, Transport, TransportError, TransportStats,
};
use crate::wire::{self, pb};

mod bucket;
pub mod connection;
mod deadline;
mod limits;
pub mod pool;
mod writer;

pub use connection::ConnectionHandle;
pub use pool::ConnectionPool;

/// State shared by the listener, the pool and every connection.
pub(crate) struct TcpContext {
    /// Our static identity.
    pub(crate) keypair: Keypair,
    /// Connection settings.
    pub(crate) config: NetConfig,
    /// What the handshake announces and checks.
    pub(crate) handshake: HandshakeConfig,
    /// Where authenticated envelopes go.
    pub(crate) handler: Weak<dyn InboundHandler>,
    /// Cancelled on shutdown; every connection's token is a child of it.
    pub(crate) cancel: CancellationToken,
    /// Every task of the transport, joined on shutdown.
    pub(crate) tasks: TaskTracker,
    /// Number of connections whose tasks are running (including retiring duplicates).
    pub(crate) live: watch::Sender<usize>,
    /// Connection admission and limit counters.
    pub(crate) limits: Arc<limits::Limits>,
}

impl TcpContext {
    /// Fails with [`CloseReason::Banned`] if the peer (id after authentication, else IP) is banned.
    pub(crate) fn check_ban(&self, id: Option<&NodeId>, ip: IpAddr) -> Result<(), CloseReason> {
        match self.handler.upgrade().and_then(|h| h.banned(id, ip)) {
            Some(ban) => Err(CloseReason::Banned(ban)),
            None => Ok(()),
        }
    }
}

/// The TCP [`Transport`].
pub struct TcpTransport {
    /// Shared state.
    ctx: Arc<TcpContext>,
    /// Authenticated connections.
    pool: Arc<ConnectionPool>,
    /// The bound listening address.
    local_addr: SocketAddr,
}

impl TcpTransport {
    /// Binds `listen` and starts accepting connections.
    pub async fn bind(
        listen: SocketAddr,
        keypair: Keypair,
        config: NetConfig,
        handshake: HandshakeConfig,
        handler: Weak<dyn InboundHandler>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let handshake = HandshakeConfig {
            listen_port: local_addr.port(),
            ..handshake
        };
        let ctx = Arc::new(TcpContext {
            keypair,
            limits: limits::Limits::new(config.clone()),
            config,
            handshake,
            handler,
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            live: watch::Sender::new(0),
        });
        let pool = ConnectionPool::new(Arc::clone(&ctx));
        ctx.tasks
            .spawn(accept_loop(Arc::clone(&ctx), Arc::clone(&pool), listener));
        Ok(Self {
            ctx,
            pool,
            local_addr,
        })
    }

    /// The connection pool.
    pub fn pool(&self) -> &Arc<ConnectionPool> {
        &self.pool
    }

    /// Watches the number of connections whose tasks run (including duplicates still draining).
    pub fn live_connections(&self) -> watch::Receiver<usize> {
        self.ctx.live.subscribe()
    }
}

async fn accept_loop(ctx: Arc<TcpContext>, pool: Arc<ConnectionPool>, listener: TcpListener) {
    let pending = Arc::new(Semaphore::new(ctx.config.max_pending_handshakes));
    loop {
        // At the pending-handshake limit we stop accepting: new connections wait in the OS backlog.
        let pending_permit = match Arc::clone(&pending).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                ctx.limits.hit(Limit::MaxPendingHandshakes);
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return,
                    p = Arc::clone(&pending).acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                }
            }
        };
        let (stream, remote) = tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // A banned IP costs nothing: refused before any limit bookkeeping or handshake work.
        let permit = match ctx
            .check_ban(None, remote.ip())
            .and_then(|()| admit(&ctx, remote))
        {
            Ok(permit) => permit,
            Err(reason) => {
                tracing::debug!(%remote, %reason, "refusing inbound connection");
                // Dropping the stream closes it: no handshake work for a refused connection.
                connection::handshake_failed(&ctx, remote, reason);
                continue;
            }
        };
        let pending = ctx.limits.pending(pending_permit);
        let ctx2 = Arc::clone(&ctx);
        let pool = Arc::clone(&pool);
        ctx.tasks.spawn(async move {
            let accepted = tokio::select! {
                r = connection::accept(&ctx2, stream, permit) => r,
                _ = ctx2.cancel.cancelled() => return,
            };
            drop(pending);
            let accepted = accepted.and_then(|a| {
                ctx2.check_ban(Some(&a.established.remote), remote.ip())
                    .map(|()| a)
            });
            match accepted {
                Ok(authenticated) => {
                    let peer = connection::peer_info(
                        &authenticated.established,
                        Direction::Inbound,
                        None,
                        remote,
                    );
                    pool.establish(authenticated, peer, Direction::Inbound);
                }
                Err(reason) => {
                    tracing::debug!(%remote, %reason, "inbound handshake failed");
                    connection::handshake_failed(&ctx2, remote, reason);
                }
            }
        });
    }
}

/// Decides at accept, before any handshake work, whether a connection from `remote` may proceed: the
/// connection and per-IP limits and the per-IP accept throttle ([`limits::Limits::admit_inbound`]).
fn admit(ctx: &TcpContext, remote: SocketAddr) -> Result<limits::ConnPermit, CloseReason> {
    ctx.limits
        .admit_inbound(remote.ip(), tokio::time::Instant::now())
        .map_err(CloseReason::Refused)
}

impl Transport for TcpTransport {
    fn send<'a>(
        &'a self,
        to: &'a NodeInfo,
        envelope: pb::Envelope,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            let bytes = wire::encode(&envelope);
            let max = self.ctx.config.max_frame_len;
            let sealed = crate::crypto::session::sealed_len(bytes.len());
            if sealed > max {
                return Err(TransportError::TooLarge { len: sealed, max });
            }
            // One retry: the connection we got may be a duplicate retired in the meantime.
            let mut last = None;
            for _ in 0..2 {
                let conn = self.pool.get_connection(to).await?;
                match conn.send(bytes.clone()).await {
                    Ok(()) => return Ok(()),
                    Err(reason) => last = Some(reason),
                }
            }
            Err(TransportError::Closed {
                peer: to.id,
                reason: last.map(|r| r.to_string()).unwrap_or_default(),
            })
        })
    }

    fn connect<'a>(&'a self, to: &'a NodeInfo) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move { self.pool.get_connection(to).await.map(|_| ()) })
    }

    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn connected_peers(&self) -> Vec<NodeInfo> {
        self.pool.connected()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.ctx.cancel.cancel();
            self.pool.close_all();
            self.ctx.tasks.close();
            self.ctx.tasks.wait().await;
        })
    }

    fn stats(&self) -> TransportStats {
        self.ctx.limits.stats()
    }

    fn disconnect(&self, peer: &NodeId, reason: CloseReason) -> bool {
        self.pool.get(peer).map(|h| h.close(reason)).is_some()
    }
}
