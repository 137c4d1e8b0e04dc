//! A connection's pending output: small pieces are copied together into one buffer,
//! large payloads are queued as shared `Bytes` beside it, and the whole is written with
//! one vectored write per wake-up (it implements [`bytes::Buf`], so
//! `write_all_buf` drains it).

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fastwebsockets::{Frame, OpCode, Payload};

/// Payloads up to this size are copied into the coalescing buffer; larger ones are
/// queued by reference.
const COPY_THRESHOLD: usize = 1024;

/// After a drain, a coalescing buffer that grew past this is released, so an idle
/// connection keeps no large allocation.
const KEEP_CAPACITY: usize = 16 * 1024;

/// Pending output of one connection.
#[derive(Debug, Default)]
pub struct OutBuf {
    /// Sealed segments, written in order before `tail`.
    segments: VecDeque<Bytes>,
    /// The segment still being filled.
    tail: BytesMut,
    /// Total bytes pending.
    len: usize,
}

impl OutBuf {
    /// An empty buffer; allocates nothing until used.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queue raw bytes (stream carriers).
    pub fn push_bytes(&mut self, data: &Bytes) {
        if data.len() <= COPY_THRESHOLD {
            self.tail.extend_from_slice(data);
        } else {
            self.seal();
            self.segments.push_back(data.clone());
        }
        self.len += data.len();
    }

    /// Queue one unmasked, unfragmented server frame (RFC 6455 §5.2).
    pub fn push_frame(&mut self, opcode: OpCode, payload: &Bytes) {
        let mut head = [0u8; 16];
        let n = Frame::new(true, opcode, None, Payload::Borrowed(payload)).fmt_head(&mut head);
        self.tail.put_slice(&head[..n]);
        self.len += n;
        self.push_bytes(payload);
    }

    /// Queue a close frame with `code` and `reason` (cut to fit the 125-byte limit on a
    /// character boundary).
    pub fn push_close(&mut self, code: u16, reason: &str) {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut payload = BytesMut::with_capacity(2 + end);
        payload.put_u16(code);
        payload.put_slice(&reason.as_bytes()[..end]);
        self.push_frame(OpCode::Close, &payload.freeze());
    }

    fn seal(&mut self) {
        if !self.tail.is_empty() {
            self.segments.push_back(self.tail.split().freeze());
        }
    }

    /// Drop oversized spare capacity once everything has been written.
    pub fn shrink_if_drained(&mut self) {
        if self.len == 0 && self.tail.capacity() > KEEP_CAPACITY {
            self.tail = BytesMut::new();
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
            None => &self.tail,
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
                    self.tail.advance(cnt);
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
            dst[n] = IoSlice::new(&self.tail);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(mut b: OutBuf) -> Vec<u8> {
        let mut v = Vec::new();
        while b.has_remaining() {
            let c = b.chunk().to_vec();
            b.advance(c.len());
            v.extend(c);
        }
        v
    }

    #[test]
    fn frames_are_encoded_as_rfc6455_shows() {
        // RFC 6455 §5.7: a single-frame unmasked text message "Hello".
        let mut b = OutBuf::new();
        b.push_frame(OpCode::Text, &Bytes::from_static(b"Hello"));
        assert_eq!(drain(b), [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        // §5.7: 256 bytes binary in one unmasked frame uses the 16-bit length.
        let mut b = OutBuf::new();
        b.push_frame(OpCode::Binary, &Bytes::from(vec![7u8; 256]));
        let out = drain(b);
        assert_eq!(&out[..4], &[0x82, 0x7e, 0x01, 0x00]);
        assert_eq!(out.len(), 4 + 256);
        // §5.7: 64 KiB binary uses the 64-bit length.
        let mut b = OutBuf::new();
        b.push_frame(OpCode::Binary, &Bytes::from(vec![7u8; 65536]));
        assert_eq!(&drain(b)[..10], &[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn close_reason_is_cut_to_fit_on_a_char_boundary() {
        let mut b = OutBuf::new();
        b.push_close(1001, &"é".repeat(100));
        let out = drain(b);
        assert_eq!(&out[..4], &[0x88, 124, 0x03, 0xe9]);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }

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
        let out = drain(b);
        assert_eq!(out.len(), 4097);
        assert_eq!(&out[4095..], b"cd");
    }
}
