//! [`Message`]: a validated inbound message with its metadata, as protocols receive it.

use std::sync::Weak;

use bytes::Bytes;
use uuid::Uuid;

use super::SwarmInner;
use crate::error::Error;
use crate::identity::NodeId;
use crate::peer::NodeInfo;

/// A message delivered to a registered protocol.
#[derive(Clone, Debug)]
pub struct Message {
    /// The peer that sent it over its connection.
    pub(crate) sender: NodeInfo,
    /// The protocol it was sent to.
    pub(crate) protocol: String,
    /// The protocol's bytes.
    pub(crate) payload: Bytes,
    /// The request id, when the sender expects a response.
    pub(crate) req_id: Option<Uuid>,
    /// Authoring time, unix milliseconds.
    pub(crate) timestamp_ms: i64,
    /// The author's client version.
    pub(crate) client_version: String,
    /// The node that wrote the message (the sender, for direct messages).
    pub(crate) author: NodeId,
    /// True if the message came by gossip.
    pub(crate) gossip: bool,
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

    /// The author's client version.
    pub fn client_version(&self) -> &str {
        &self.client_version
    }

    /// The author (equal to the sender for direct messages).
    pub fn author(&self) -> &NodeId {
        &self.author
    }

    /// True if it arrived by gossip.
    pub fn is_gossip(&self) -> bool {
        self.gossip
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
