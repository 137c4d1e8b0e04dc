//! Reading and writing a connection's socket inside the driver's `select!`, cancel-safe:
//! the read sizing ([`ReadSize`]), reads into an empty buffer through a per-thread
//! scratch buffer ([`read_some`]), and one vectored write of everything pending
//! ([`write_out`]).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Poll};

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::io::{poll_read_buf, poll_write_buf};

use crate::outbuf::OutBuf;

/// Room made for the first read, and the least ever made.
pub(super) const READ_MIN: usize = 256;
/// The most room made for one read.
const READ_MAX: usize = 64 * 1024;

/// How much room to make for the next read: doubles while reads fill the room it
/// made, halves while they use less than a quarter, so a busy connection reads in large
/// chunks and an idle one reads through the thread's scratch buffer.
#[derive(Debug)]
pub(super) struct ReadSize(pub(super) usize);

impl ReadSize {
    /// A read of `read` bytes came back.
    pub(super) fn adapt(&mut self, read: usize) {
        if read >= self.0 {
            self.0 = (self.0 * 2).min(READ_MAX);
        } else if read < self.0 / 4 {
            self.0 = (self.0 / 2).max(READ_MIN);
        }
    }
}

/// Reads up to this size into an empty buffer go through the thread's scratch buffer.
const SCRATCH_SIZE: usize = 4096;

thread_local! {
    /// Where a read into an empty buffer lands before it is copied into a buffer of
    /// exactly its length: one per worker thread, so that a connection waiting for input
    /// holds no read buffer of its own.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
}

/// Read at most `size` bytes into `buf`. When `buf` is empty and the read small (an idle
/// or lightly used connection) the bytes go through [`SCRATCH`], so nothing is held
/// while the read waits; otherwise straight into room made in `buf`.
///
/// A plain function around `poll_fn`, not an `async fn`: the future is in every
/// connection's task, and this keeps it at the three references it needs.
pub(super) fn read_some<'a, R: AsyncRead + Unpin>(
    rd: &'a mut R,
    buf: &'a mut BytesMut,
    size: usize,
) -> impl Future<Output = std::io::Result<usize>> + 'a {
    std::future::poll_fn(move |cx| {
        if buf.is_empty() && size <= SCRATCH_SIZE {
            return SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let mut room = ReadBuf::new(&mut scratch[..size]);
                ready!(Pin::new(&mut *rd).poll_read(cx, &mut room))?;
                buf.extend_from_slice(room.filled());
                Poll::Ready(Ok(room.filled().len()))
            });
        }
        buf.reserve(size);
        poll_read_buf(Pin::new(&mut *rd), cx, &mut (&mut *buf).limit(size))
    })
}

/// Write everything in `out`, in vectored writes, then flush once (a no-op on TCP; it
/// pushes TLS records out). Cancel-safe: what was written has left `out`.
pub(super) fn write_out<'a, W: AsyncWrite + Unpin>(wr: &'a mut W, out: &'a mut OutBuf) -> impl Future<Output = std::io::Result<()>> + 'a {
    std::future::poll_fn(move |cx| {
        while !out.is_empty() {
            if ready!(poll_write_buf(Pin::new(&mut *wr), cx, out))? == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
        }
        Pin::new(&mut *wr).poll_flush(cx)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_size_grows_with_full_reads_and_shrinks_when_idle() {
        let mut size = ReadSize(READ_MIN);
        for _ in 0..20 {
            let full = size.0;
            size.adapt(full);
        }
        assert_eq!(size.0, READ_MAX, "bulk transfers read in large chunks");
        for _ in 0..20 {
            size.adapt(10);
        }
        assert_eq!(size.0, READ_MIN, "small reads bring it back down");
        size.adapt(READ_MIN / 2);
        assert_eq!(size.0, READ_MIN, "a moderate read keeps the size");
    }
}
