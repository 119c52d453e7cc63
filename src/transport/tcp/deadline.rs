//! The read deadline: once the first byte of a frame arrives, the whole frame must arrive within
//! `net.read_timeout`, or the connection closes with [`CloseReason::ReadTimeout`].
//!
//! [`TrackedCodec`] is the [`FrameCodec`] that also remembers whether a frame has started arriving (bytes
//! seen since the last complete frame); [`ReadDeadline`] reads frames from a [`Framed`] of it and arms one
//! timer per frame that does not arrive in one read. An idle connection has no deadline (the keepalive
//! watches it).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::io::AsyncRead;
use tokio::time::{Instant, Sleep};
use tokio_util::codec::{Decoder, Encoder, Framed};

use crate::transport::CloseReason;
use crate::wire::{FrameCodec, WireError};

/// A [`FrameCodec`] that knows whether a frame is partly received.
#[derive(Debug)]
pub(crate) struct TrackedCodec {
    /// The framing.
    inner: FrameCodec,
    /// Bytes of a frame not yet complete have arrived.
    started: bool,
}

impl TrackedCodec {
    /// Frames of up to `max_frame_len` bytes.
    pub(crate) fn new(max_frame_len: usize) -> Self {
        Self {
            inner: FrameCodec::new(max_frame_len),
            started: false,
        }
    }

    fn track(
        &mut self,
        had_bytes: bool,
        src: &BytesMut,
        decoded: Result<Option<BytesMut>, WireError>,
    ) -> Result<Option<BytesMut>, WireError> {
        match &decoded {
            // What is left over already belongs to the next frame.
            Ok(Some(_)) => self.started = !src.is_empty(),
            // The codec may have consumed the length prefix: `started` stays set until the frame is done.
            Ok(None) => self.started |= had_bytes,
            Err(_) => {}
        }
        decoded
    }
}

impl Decoder for TrackedCodec {
    type Item = BytesMut;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, WireError> {
        let had_bytes = !src.is_empty();
        let decoded = self.inner.decode(src);
        self.track(had_bytes, src, decoded)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, WireError> {
        let had_bytes = !src.is_empty();
        let decoded = self.inner.decode_eof(src);
        self.track(had_bytes, src, decoded)
    }
}

impl Encoder<Bytes> for TrackedCodec {
    type Error = WireError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), WireError> {
        self.inner.encode(item, dst)
    }
}

/// Reads frames under the per-frame read deadline.
pub(crate) struct ReadDeadline {
    /// `net.read_timeout`.
    timeout: Duration,
    /// The timer of the frame in progress (allocated once, reset per frame).
    timer: Pin<Box<Sleep>>,
    /// Whether `timer` runs for the current frame.
    armed: bool,
}

impl ReadDeadline {
    /// A deadline of `timeout` per frame.
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
            armed: false,
        }
    }

    /// The next frame; `None` at the end of the stream; [`CloseReason::ReadTimeout`] if a started frame
    /// is not complete in time.
    pub(crate) async fn next<T: AsyncRead + Unpin>(
        &mut self,
        framed: &mut Framed<T, TrackedCodec>,
    ) -> Option<Result<BytesMut, CloseReason>> {
        std::future::poll_fn(|cx| self.poll_next(cx, framed)).await
    }

    fn poll_next<T: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        framed: &mut Framed<T, TrackedCodec>,
    ) -> Poll<Option<Result<BytesMut, CloseReason>>> {
        if let Poll::Ready(frame) = Pin::new(&mut *framed).poll_next(cx) {
            self.armed = false;
            return Poll::Ready(frame.map(|r| r.map_err(CloseReason::from)));
        }
        if !framed.codec().started {
            self.armed = false;
            return Poll::Pending;
        }
        if !self.armed {
            self.armed = true;
            self.timer.as_mut().reset(Instant::now() + self.timeout);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(CloseReason::ReadTimeout))),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_dripped_frame_times_out_from_its_first_byte() {
        let (mut peer, ours) = tokio::io::duplex(64);
        let mut framed = Framed::new(ours, TrackedCodec::new(1024));
        let mut deadline = ReadDeadline::new(Duration::from_secs(3));
        // A whole frame in one write passes, however long the idle time before it.
        tokio::time::sleep(Duration::from_secs(100)).await;
        peer.write_all(&[0, 0, 0, 2, 7, 7]).await.unwrap();
        let frame = deadline.next(&mut framed).await.unwrap().unwrap();
        assert_eq!(&frame[..], &[7, 7]);
        // Then one byte a second: the header completes (and is consumed) before the deadline, the body
        // does not.
        let start = Instant::now();
        let drip = async {
            for b in [0u8, 0, 0, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10] {
                peer.write_all(&[b]).await.unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        let read = deadline.next(&mut framed);
        let (_, result) = tokio::join!(drip, async {
            let r = read.await;
            (r, Instant::now())
        });
        let (frame, at) = result;
        assert!(
            matches!(frame, Some(Err(CloseReason::ReadTimeout))),
            "{frame:?}"
        );
        assert_eq!(at - start, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_left_after_a_frame_start_the_next_deadline() {
        let (mut peer, ours) = tokio::io::duplex(64);
        let mut framed = Framed::new(ours, TrackedCodec::new(1024));
        let mut deadline = ReadDeadline::new(Duration::from_secs(2));
        // A frame and the first byte of the next in one write.
        peer.write_all(&[0, 0, 0, 1, 9, 0]).await.unwrap();
        assert!(matches!(deadline.next(&mut framed).await, Some(Ok(_))));
        let start = Instant::now();
        let r = deadline.next(&mut framed).await;
        assert!(matches!(r, Some(Err(CloseReason::ReadTimeout))), "{r:?}");
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
        drop(peer);
    }
}
