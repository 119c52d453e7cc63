//! [`Message`]: a validated inbound message with its metadata, as protocols receive it.

use std::sync::Weak;

use bytes::Bytes;
use uuid::Uuid;

use super::SwarmInner;
use crate::error::Error;
use crate::gossip::MessageId;
use crate::identity::NodeId;
use crate::peer::NodeInfo;

/// A message delivered to a registered protocol.
///
/// A direct message comes from its author: [`Message::sender`] and [`Message::author`] are the same node.
/// A gossip message ([`Message::is_gossip`], from [`Swarm::broadcast`](crate::Swarm::broadcast)) comes
/// from a relaying peer: [`Message::author`] is the node that signed it (verified at every hop),
/// [`Message::timestamp_ms`] its signed authoring time and [`Message::gossip_id`] its id.
#[derive(Clone, Debug)]
pub struct Message {
    /// The peer that sent it over its connection (for gossip: the relaying peer).
    pub(crate) sender: NodeInfo,
    /// The protocol it was sent to.
    pub(crate) protocol: String,
    /// The protocol's bytes.
    pub(crate) payload: Bytes,
    /// The request id, when the sender expects a response.
    pub(crate) req_id: Option<Uuid>,
    /// Authoring time, unix milliseconds.
    pub(crate) timestamp_ms: i64,
    /// The sender's client version (the author's, for direct messages).
    pub(crate) client_version: String,
    /// The node that wrote the message (the sender, for direct messages).
    pub(crate) author: NodeId,
    /// True if the message came by gossip.
    pub(crate) gossip: bool,
    /// The gossip message id, for gossip.
    pub(crate) gossip_id: Option<MessageId>,
    /// The swarm that received it, for [`Message::respond`].
    pub(crate) swarm: Weak<SwarmInner>,
}

impl Message {
    /// The payload.
    pub fn data(&self) -> &[u8] {
        &self.payload
    }

    /// The payload as shared bytes.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The peer it came from.
    pub fn sender(&self) -> &NodeInfo {
        &self.sender
    }

    /// The protocol name.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// The request id, if the sender awaits a response.
    pub fn req_id(&self) -> Option<Uuid> {
        self.req_id
    }

    /// True if the sender awaits a response ([`Message::respond`]).
    pub fn is_request(&self) -> bool {
        self.req_id.is_some()
    }

    /// When the author wrote it, unix milliseconds.
    pub fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }

    /// The sending peer's client version: the author's for a direct message, the relaying peer's for
    /// gossip (gossip does not carry the author's).
    pub fn client_version(&self) -> &str {
        &self.client_version
    }

    /// The author: equal to the sender for direct messages; for gossip, the node whose signature over
    /// the message was verified (usually not the relaying sender).
    pub fn author(&self) -> &NodeId {
        &self.author
    }

    /// True if it arrived by gossip ([`Swarm::broadcast`](crate::Swarm::broadcast)).
    pub fn is_gossip(&self) -> bool {
        self.gossip
    }

    /// The gossip message id (the digest its author signed), for gossip; `None` for direct messages.
    pub fn gossip_id(&self) -> Option<MessageId> {
        self.gossip_id
    }

    /// Sends `payload` back to the sender as the response to this request.
    pub async fn respond(&self, payload: impl Into<Bytes>) -> Result<(), Error> {
        let req_id = self.req_id.ok_or(Error::NotARequest)?;
        let swarm = self.swarm.upgrade().ok_or(Error::Shutdown)?;
        swarm
            .send_envelope(
                &self.sender,
                &self.protocol,
                payload.into(),
                Some(req_id),
                true,
            )
            .await
    }
}
