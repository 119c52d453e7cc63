//! Session security: the sans-IO handshake and the sealed-frame session.

pub mod handshake;
pub mod session;
