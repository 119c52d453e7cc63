//! The inbound path: validate an authenticated envelope, then route it to a waiting request, a node
//! protocol or a registered application protocol.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use uuid::Uuid;

use super::{DropReason, Message, SwarmEvent, SwarmInner};
use crate::dht::table::Seen;
use crate::peer::NodeInfo;
use crate::wire::pb;

impl SwarmInner {
    /// Handles one envelope from `from`; awaiting the protocol channel pushes back on that peer only.
    pub(super) async fn dispatch(&self, from: NodeInfo, envelope: pb::Envelope) {
        self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
        let meta = envelope.metadata.unwrap_or_default();
        self.stats
            .traffic
            .record_in(&meta.protocol, envelope.payload.len());
        let drop_it = |reason: DropReason| {
            self.stats.record_drop(reason);
            tracing::debug!(peer = %from.id.short(), protocol = %meta.protocol, ?reason, "message dropped");
            self.emit(SwarmEvent::MessageDropped {
                from: from.id,
                protocol: meta.protocol.clone(),
                reason,
            });
        };
        if !self.is_compatible(&meta.client_version) {
            return drop_it(DropReason::IncompatibleVersion);
        }
        if !self.within_skew(meta.timestamp) {
            return drop_it(DropReason::ClockSkew);
        }
        if meta.gossip || meta.protocol == crate::gossip::GOSSIP_PROTOCOL {
            // The session authenticated the sender: it contacted us, it has not answered us.
            self.saw_node(&from, Seen::Inbound);
            return self.on_gossip(from, meta, envelope.payload).await;
        }
        if envelope.payload.len() > self.payload_limit(&meta.protocol) {
            return drop_it(DropReason::PayloadTooLarge);
        }
        let req_id = Uuid::from_slice(&meta.req_id).ok();
        let message = Message {
            sender: from,
            protocol: meta.protocol.clone(),
            payload: Bytes::from(envelope.payload),
            req_id,
            timestamp_ms: meta.timestamp,
            client_version: meta.client_version.clone(),
            author: from.id,
            gossip: false,
            gossip_id: None,
            swarm: self.weak_self(),
        };
        if meta.response {
            // A matched response is recorded as an answer by the requester (`request_raw`, the lookup).
            if let Some(req_id) = req_id
                && self.requests.complete(from.id, req_id, message)
            {
                self.stats.responses_matched.fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.saw_node(&from, Seen::Inbound);
            return drop_it(DropReason::UnmatchedResponse);
        }
        // The session authenticated the sender: it contacted us, it has not answered us.
        self.saw_node(&from, Seen::Inbound);
        if meta.protocol.starts_with(super::protocols::RESERVED_PREFIX)
            && self.serve_internal(&message).await
        {
            return;
        }
        let Some((channel, validator)) = self.protocols.route(&meta.protocol) else {
            return drop_it(DropReason::UnknownProtocol);
        };
        if let Some(validator) = validator
            && !validator(&message)
        {
            self.penalise(&from.id);
            return drop_it(DropReason::Rejected);
        }
        match channel.send(message).await {
            Ok(()) => {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => drop_it(DropReason::ProtocolClosed),
        }
    }

    pub(super) fn weak_self(&self) -> std::sync::Weak<SwarmInner> {
        self.this.get().cloned().unwrap_or_default()
    }
}
