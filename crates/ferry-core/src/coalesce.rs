//! The one output-coalescing rule every writer follows: pieces up to [`COPY_LIMIT`] are
//! copied back to back into a pending buffer (one write, one WebSocket message); larger
//! ones are passed on by reference, so a shared payload is never copied. The adapters'
//! writers and the transport's outbuf all coalesce through [`Coalescer`].

use bytes::{Bytes, BytesMut};

/// Pieces up to this many bytes are copied; larger ones are shared.
pub const COPY_LIMIT: usize = 1024;

/// A pending buffer and the rule that fills it.
#[derive(Debug, Default)]
pub struct Coalescer {
    pending: BytesMut,
}

impl Coalescer {
    /// An empty coalescer; allocates nothing until used.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a piece of `len` bytes is copied rather than shared.
    pub fn copies(len: usize) -> bool {
        len <= COPY_LIMIT
    }

    /// Add `piece`: copied when small; otherwise what is pending, then `piece` itself
    /// (moved, not cloned), are handed to `emit` in order.
    pub fn push(&mut self, piece: Bytes, mut emit: impl FnMut(Bytes)) {
        if Self::copies(piece.len()) {
            self.pending.extend_from_slice(&piece);
        } else {
            if let Some(p) = self.take() {
                emit(p);
            }
            emit(piece);
        }
    }

    /// [`Coalescer::push`] for a piece the caller keeps: cloned (a reference count)
    /// only when it is shared rather than copied.
    pub fn push_ref(&mut self, piece: &Bytes, emit: impl FnMut(Bytes)) {
        if Self::copies(piece.len()) {
            self.pending.extend_from_slice(piece);
        } else {
            self.push(piece.clone(), emit);
        }
    }

    /// The pending bytes, to encode into directly.
    pub fn pending_mut(&mut self) -> &mut BytesMut {
        &mut self.pending
    }

    /// The pending bytes.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// What is pending, if anything, leaving the buffer empty (its spare capacity kept).
    pub fn take(&mut self) -> Option<Bytes> {
        (!self.pending.is_empty()).then(|| self.pending.split().freeze())
    }

    /// Release the buffer when it is empty and its capacity grew past `keep`, so an
    /// idle connection holds no large allocation.
    pub fn shrink_if_empty(&mut self, keep: usize) {
        if self.pending.is_empty() && self.pending.capacity() > keep {
            self.pending = BytesMut::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_pieces_are_copied_together_and_large_ones_shared_in_order() {
        let mut c = Coalescer::new();
        let mut out = Vec::new();
        c.push(Bytes::from_static(b"ab"), |b| out.push(b));
        c.push_ref(&Bytes::from_static(b"cd"), |b| out.push(b));
        assert!(out.is_empty());
        let big = Bytes::from(vec![7u8; COPY_LIMIT + 1]);
        c.push(big.clone(), |b| out.push(b));
        assert_eq!(out.len(), 2);
        assert_eq!(&out[0][..], b"abcd");
        assert_eq!(out[1].as_ptr(), big.as_ptr(), "shared, not copied");
        assert!(c.take().is_none());
        let edge = Bytes::from(vec![1u8; COPY_LIMIT]);
        c.push_ref(&edge, |b| out.push(b));
        assert_eq!(c.take().map(|b| b.len()), Some(COPY_LIMIT), "the limit itself is copied");
    }
}
