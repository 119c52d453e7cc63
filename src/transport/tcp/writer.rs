//! The sending side of a connection: seals frames and writes them with as few syscalls and task hops as
//! possible.
//!
//! A sender seals its frame into the connection's output buffer under a short, synchronous lock. If the
//! buffer was empty it writes at once from its own task (`try_write`, no await, no hop to another task);
//! whatever the socket does not take stays buffered and the connection's flush task writes it when the
//! socket is writable again. Under load frames pile up in the buffer and go out together, many per
//! syscall. When the buffer holds `max_buffer` bytes, senders wait (backpressure). A write that makes no
//! progress for `write_timeout` fails with [`CloseReason::WriteTimeout`] (the peer stopped reading).

use std::io;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::crypto::session::Sealer;
use crate::transport::CloseReason;

/// What the lock protects.
struct State {
    /// Seals outgoing frames (owns the send sequence number).
    sealer: Sealer,
    /// Length-prefixed sealed frames not yet written.
    out: BytesMut,
    /// Set once the writer refuses new frames (closing or retiring).
    closed: bool,
}

/// The write half of a connection with its sealer and output buffer.
pub(crate) struct FrameWriter {
    /// Sealer, buffer and closed flag; never held across an await.
    state: Mutex<State>,
    /// The socket.
    half: OwnedWriteHalf,
    /// Wakes the flush task when bytes are left over.
    pending: Notify,
    /// Wakes senders waiting for buffer space.
    drained: Notify,
    /// Buffered bytes at which senders wait.
    max_buffer: usize,
    /// Largest sealed frame allowed.
    max_frame_len: usize,
    /// Longest a write may make no progress.
    write_timeout: Duration,
}

/// Outcome of one attempt to queue a frame.
enum Queued {
    /// Queued (and maybe written).
    Done,
    /// The buffer is full; wait for `drained` and try again.
    Full,
}

impl std::fmt::Debug for FrameWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameWriter")
            .field("max_buffer", &self.max_buffer)
            .finish_non_exhaustive()
    }
}

impl FrameWriter {
    /// Wraps the write half of an authenticated connection.
    pub(crate) fn new(
        half: OwnedWriteHalf,
        sealer: Sealer,
        max_buffer: usize,
        max_frame_len: usize,
        write_timeout: Duration,
    ) -> Self {
        Self {
            state: Mutex::new(State {
                sealer,
                out: BytesMut::with_capacity(16 * 1024),
                closed: false,
            }),
            half,
            pending: Notify::new(),
            drained: Notify::new(),
            max_buffer,
            max_frame_len,
            write_timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state inconsistent in a way that matters more
        // than losing the connection; keep going with the inner value.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Seals `plaintext` and queues it, writing at once when the socket is idle. Waits while the buffer
    /// is full.
    pub(crate) async fn send(&self, plaintext: &[u8]) -> Result<(), CloseReason> {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            // Register interest before looking, so a drain between the look and the await is not missed.
            drained.as_mut().enable();
            match self.try_queue(plaintext)? {
                Queued::Done => return Ok(()),
                Queued::Full => drained.await,
            }
        }
    }

    /// Queues `plaintext` if there is room now (true), else drops it (false; keepalive control frames).
    pub(crate) fn send_now(&self, plaintext: &[u8]) -> Result<bool, CloseReason> {
        self.try_queue(plaintext)
            .map(|queued| matches!(queued, Queued::Done))
    }

    fn try_queue(&self, plaintext: &[u8]) -> Result<Queued, CloseReason> {
        let mut state = self.lock();
        if state.closed {
            return Err(CloseReason::Shutdown);
        }
        if state.out.len() >= self.max_buffer {
            return Ok(Queued::Full);
        }
        let sealed = state.sealer.seal(plaintext)?;
        if sealed.len() > self.max_frame_len {
            return Err(CloseReason::Frame(format!(
                "sealed frame of {} bytes exceeds the limit of {} bytes",
                sealed.len(),
                self.max_frame_len
            )));
        }
        let was_empty = state.out.is_empty();
        // Frame lengths fit in u32: max_frame_len is validated to be at most u32::MAX.
        state.out.put_u32(sealed.len() as u32);
        state.out.put_slice(&sealed);
        if was_empty {
            self.write_some(&mut state)?;
        }
        let left_over = !state.out.is_empty();
        drop(state);
        if left_over {
            self.pending.notify_one();
        }
        Ok(Queued::Done)
    }

    /// Writes as much of the buffer as the socket takes now, without waiting.
    fn write_some(&self, state: &mut State) -> Result<(), CloseReason> {
        while !state.out.is_empty() {
            match self.half.try_write(&state.out) {
                Ok(0) => return Err(CloseReason::Write("socket closed".into())),
                Ok(n) => state.out.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CloseReason::Write(e.to_string())),
            }
        }
        Ok(())
    }

    /// The flush loop: writes left-over bytes whenever senders leave some. Returns only on a write
    /// error; the caller stops it by dropping the future.
    pub(crate) async fn run(&self) -> Result<(), CloseReason> {
        loop {
            self.pending.notified().await;
            self.flush_pending().await?;
        }
    }

    /// Writes until the buffer is empty, waiting for writability as needed; fails with
    /// [`CloseReason::WriteTimeout`] once no byte was written for `write_timeout`.
    pub(crate) async fn flush_pending(&self) -> Result<(), CloseReason> {
        let mut progress_at = Instant::now();
        loop {
            let (empty, progressed) = {
                let mut state = self.lock();
                let before = state.out.len();
                self.write_some(&mut state)?;
                (state.out.is_empty(), state.out.len() < before)
            };
            self.drained.notify_waiters();
            if empty {
                return Ok(());
            }
            if progressed {
                progress_at = Instant::now();
            }
            tokio::time::timeout_at(progress_at + self.write_timeout, self.half.writable())
                .await
                .map_err(|_| CloseReason::WriteTimeout)?
                .map_err(|e| CloseReason::Write(e.to_string()))?;
        }
    }

    /// Refuses new frames from now on; returns true the first time.
    pub(crate) fn close(&self) -> bool {
        let mut state = self.lock();
        let first = !state.closed;
        state.closed = true;
        drop(state);
        self.drained.notify_waiters();
        first
    }

    /// Half-closes the socket so the peer reads the end of the stream after what was written.
    pub(crate) fn shutdown_write(&self) {
        let _ = socket2::SockRef::from(self.half.as_ref()).shutdown(std::net::Shutdown::Write);
    }
}
