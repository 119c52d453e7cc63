//! The protocol registry: protocol name to the bounded channel of its [`Message`]s and its optional
//! [`Validator`].

use std::sync::Arc;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio::sync::mpsc;

use super::message::Message;
use crate::error::Error;

/// Prefix of the names the node uses for its own protocols.
pub const RESERVED_PREFIX: &str = "/kadmesh/";
/// Longest protocol name accepted.
pub const MAX_PROTOCOL_NAME: usize = 128;

/// A protocol's check of each inbound message before delivery: `true` accepts it, `false` rejects it
/// (not delivered, not relayed, the sending peer penalised). Runs synchronously on the receive path, so
/// it must be quick and must not block.
pub type Validator = Arc<dyn Fn(&Message) -> bool + Send + Sync>;

/// Per-protocol settings for [`Swarm::register_protocol_with`](super::Swarm::register_protocol_with);
/// `None` takes the swarm's default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProtocolOptions {
    /// Largest payload received or sent on this protocol (default `swarm.max_payload`): larger inbound
    /// messages are dropped ([`DropReason::PayloadTooLarge`](super::DropReason::PayloadTooLarge)), larger
    /// outbound ones refused ([`Error::PayloadTooLarge`]).
    pub max_payload: Option<usize>,
    /// Capacity of the protocol's message channel (default `swarm.protocol_queue`).
    pub queue: Option<usize>,
}

/// One registered protocol.
struct Registered {
    /// The sending side of the protocol's channel.
    tx: mpsc::Sender<Message>,
    /// Its validator, if it registered one.
    validator: Option<Validator>,
    /// Its own payload maximum, if it set one.
    max_payload: Option<usize>,
}

/// Registered protocols.
#[derive(Default)]
pub struct ProtocolRegistry {
    /// Name to the protocol's channel and validator.
    channels: DashMap<String, Registered>,
}

/// Checks that `name` is a usable application protocol name.
pub fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > MAX_PROTOCOL_NAME {
        return Err(Error::InvalidProtocolName(name.to_owned()));
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Err(Error::ReservedProtocol(name.to_owned()));
    }
    Ok(())
}

impl ProtocolRegistry {
    /// Registers `name` with a channel of `capacity`; errors on a duplicate or reserved name.
    pub fn register(&self, name: &str, capacity: usize) -> Result<mpsc::Receiver<Message>, Error> {
        self.register_with(name, capacity, None)
    }

    /// Like [`ProtocolRegistry::register`], with a validator run on each message before delivery.
    pub fn register_with(
        &self,
        name: &str,
        capacity: usize,
        validator: Option<Validator>,
    ) -> Result<mpsc::Receiver<Message>, Error> {
        self.register_full(name, capacity, validator, None)
    }

    /// Like [`ProtocolRegistry::register_with`], with the protocol's own payload maximum (`None`: the
    /// swarm's default).
    pub fn register_full(
        &self,
        name: &str,
        capacity: usize,
        validator: Option<Validator>,
        max_payload: Option<usize>,
    ) -> Result<mpsc::Receiver<Message>, Error> {
        check_name(name)?;
        match self.channels.entry(name.to_owned()) {
            // A protocol whose receiver was dropped may be registered again.
            Entry::Occupied(e) if !e.get().tx.is_closed() => {
                Err(Error::ProtocolAlreadyRegistered(name.to_owned()))
            }
            e => {
                let (tx, rx) = mpsc::channel(capacity);
                e.insert_entry(Registered {
                    tx,
                    validator,
                    max_payload,
                });
                Ok(rx)
            }
        }
    }

    /// The channel of `name`, if registered (a clone: no map guard outlives the call).
    pub fn sender(&self, name: &str) -> Option<mpsc::Sender<Message>> {
        self.channels.get(name).map(|r| r.tx.clone())
    }

    /// The channel and validator of `name`, if registered (clones: no map guard outlives the call).
    pub fn route(&self, name: &str) -> Option<(mpsc::Sender<Message>, Option<Validator>)> {
        self.channels
            .get(name)
            .map(|r| (r.tx.clone(), r.validator.clone()))
    }

    /// The payload maximum `name` registered with, if it set one.
    pub fn max_payload(&self, name: &str) -> Option<usize> {
        self.channels.get(name).and_then(|r| r.max_payload)
    }

    /// Drops every channel, so receivers see the end of their stream.
    pub fn clear(&self) {
        self.channels.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_reserved_and_bad_names_are_errors() {
        let r = ProtocolRegistry::default();
        let rx = r.register("chat", 4).unwrap();
        assert!(matches!(
            r.register("chat", 4),
            Err(Error::ProtocolAlreadyRegistered(_))
        ));
        assert!(matches!(
            r.register("/kadmesh/findnode/1", 4),
            Err(Error::ReservedProtocol(_))
        ));
        assert!(matches!(
            r.register("", 4),
            Err(Error::InvalidProtocolName(_))
        ));
        assert!(matches!(
            r.register(&"x".repeat(129), 4),
            Err(Error::InvalidProtocolName(_))
        ));
        drop(rx);
        assert!(
            r.register("chat", 4).is_ok(),
            "re-register after the receiver is gone"
        );
        assert!(r.sender("chat").is_some());
        assert!(r.sender("nope").is_none());
        assert_eq!(r.max_payload("chat"), None);
        let _big = r.register_full("blobs", 4, None, Some(10)).unwrap();
        assert_eq!(r.max_payload("blobs"), Some(10));
        assert_eq!(r.max_payload("nope"), None);
    }
}
