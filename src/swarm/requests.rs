//! Pending requests: `(peer, req_id)` to the waiting caller, so only the asked peer can answer.

use dashmap::DashMap;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::message::Message;
use crate::identity::NodeId;

/// Outstanding requests of one node.
#[derive(Default)]
pub struct RequestTable {
    /// `(peer asked, request id)` to the caller's waiting channel.
    pending: DashMap<(NodeId, Uuid), oneshot::Sender<Message>>,
}

/// Removes its entry when dropped, so a timed-out or cancelled caller leaves nothing behind.
pub struct PendingRequest<'a> {
    /// The table.
    table: &'a RequestTable,
    /// The entry's key.
    key: (NodeId, Uuid),
    /// Resolves with the response.
    pub rx: oneshot::Receiver<Message>,
}

impl Drop for PendingRequest<'_> {
    fn drop(&mut self) {
        self.table.pending.remove(&self.key);
    }
}

impl RequestTable {
    /// Registers a request to `peer` with a fresh id.
    pub fn insert(&self, peer: NodeId) -> (Uuid, PendingRequest<'_>) {
        let req_id = Uuid::new_v4();
        let (tx, rx) = oneshot::channel();
        self.pending.insert((peer, req_id), tx);
        (
            req_id,
            PendingRequest {
                table: self,
                key: (peer, req_id),
                rx,
            },
        )
    }

    /// Hands `response` to the caller waiting for `(from, req_id)`; false if none waits (any more).
    pub fn complete(&self, from: NodeId, req_id: Uuid, response: Message) -> bool {
        match self.pending.remove(&(from, req_id)) {
            Some((_, tx)) => tx.send(response).is_ok(),
            None => false,
        }
    }

    /// Number of outstanding requests.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True if none is outstanding.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Releases every waiting caller (their receivers see the sender dropped).
    pub fn clear(&self) {
        self.pending.clear();
    }
}
