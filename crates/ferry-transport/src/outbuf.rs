//! A connection's pending output: small pieces are copied together into one buffer,
//! large payloads are queued as shared `Bytes` beside it (the core's one coalescing
//! rule, [`ferry_core::coalesce`]), and the whole is written with
//! one vectored write per wake-up (it implements [`bytes::Buf`], so
//! `write_all_buf` drains it). The WebSocket half (frame heads, close frames) is in
//! [`crate::ws::out`].

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes};
use ferry_core::Coalescer;

/// After a drain, a coalescing buffer that grew past this is released, so an idle
/// connection keeps no large allocation.
const KEEP_CAPACITY: usize = 16 * 1024;

/// Pending output of one connection.
#[derive(Debug, Default)]
pub(crate) struct OutBuf {
    /// Sealed segments, written in order before `tail`.
    segments: VecDeque<Bytes>,
    /// The segment still being filled.
    tail: Coalescer,
    /// Total bytes pending.
    len: usize,
}

impl OutBuf {
    /// An empty buffer; allocates nothing until used.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Bytes waiting to be written.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queue raw bytes (stream carriers).
    pub(crate) fn push_bytes(&mut self, data: &Bytes) {
        let segments = &mut self.segments;
        self.tail.push_ref(data, |b| segments.push_back(b));
        self.len += data.len();
    }

    /// Queue a few bytes that go just before the next piece (a frame head): always
    /// copied into the coalescing buffer.
    pub(crate) fn push_head(&mut self, head: &[u8]) {
        self.tail.pending_mut().put_slice(head);
        self.len += head.len();
    }

    /// Drop oversized spare capacity once everything has been written.
    pub(crate) fn shrink_if_drained(&mut self) {
        if self.len == 0 {
            self.tail.shrink_if_empty(KEEP_CAPACITY);
        }
    }
}

impl Buf for OutBuf {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        match self.segments.front() {
            Some(seg) => seg,
            None => self.tail.pending(),
        }
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.len, "advance past the end of OutBuf");
        self.len -= cnt;
        while cnt > 0 {
            match self.segments.front_mut() {
                Some(seg) if seg.len() <= cnt => {
                    cnt -= seg.len();
                    self.segments.pop_front();
                }
                Some(seg) => {
                    seg.advance(cnt);
                    return;
                }
                None => {
                    self.tail.pending_mut().advance(cnt);
                    return;
                }
            }
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for seg in &self.segments {
            if n == dst.len() {
                return n;
            }
            dst[n] = IoSlice::new(seg);
            n += 1;
        }
        if n < dst.len() && !self.tail.is_empty() {
            dst[n] = IoSlice::new(self.tail.pending());
            n += 1;
        }
        n
    }
}

#[cfg(test)]
impl OutBuf {
    /// Everything pending, drained in order (for tests).
    pub(crate) fn drained(mut self) -> Vec<u8> {
        let mut v = Vec::new();
        while self.has_remaining() {
            let c = self.chunk().to_vec();
            self.advance(c.len());
            v.extend(c);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_payloads_are_queued_by_reference_in_order() {
        let big = Bytes::from(vec![1u8; 4096]);
        let mut b = OutBuf::new();
        b.push_bytes(&Bytes::from_static(b"ab"));
        b.push_bytes(&big);
        b.push_bytes(&Bytes::from_static(b"cd"));
        assert_eq!(b.len(), 4100);
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(b.chunks_vectored(&mut slices), 3);
        assert_eq!(slices[1].as_ptr(), big.as_ptr());
        b.advance(3);
        assert_eq!(b.len(), 4097);
        let out = b.drained();
        assert_eq!(out.len(), 4097);
        assert_eq!(&out[4095..], b"cd");
    }
}
