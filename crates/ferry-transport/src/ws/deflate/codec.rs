//! Per-message compression (RFC 7692 §7.2) over flate2's pure-Rust zlib-rs backend:
//! raw deflate, window bits 9..=15, a sync flush per message with its `00 00 ff ff`
//! tail stripped on the way out and appended on the way in.
//!
//! Memory: a connection under no context takeover owns no zlib state. Each worker
//! thread keeps one compressor per window size in use and one decompressor, reset
//! after every message ([`MessageDeflater`] and [`MessageInflater`] borrow them for the
//! duration of one call). Only a connection that negotiated context takeover gets
//! contexts of its own, allocated on its first compressed message and counted by the
//! [`ContextBudget`](super::negotiate::ContextBudget) slot it holds.
//!
//! Inflation is capped while it runs: the output grows in steps and never past
//! `limit + 1` bytes, so a small frame that would inflate to a gigabyte fails with
//! [`InflateError::TooBig`] having allocated at most the limit.
//!
//! A compressed message is the same bytes for every subscriber under no context
//! takeover, so each thread remembers the last few it compressed, keyed by the
//! identity of the (shared, immutable) payload: a fan-out to a thousand subscribers on
//! one thread compresses once.

use std::cell::Cell;

use bytes::Bytes;
use ferry_core::CloseCode;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::negotiate::{ContextGuard, Negotiated};
use crate::ws::assembler::Violation;

/// What a sync flush ends with; stripped from every compressed message (RFC 7692
/// §7.2.1) and appended before inflating one (§7.2.2).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Payloads up to this size are remembered once compressed, for the next subscriber.
const CACHE_MAX_PAYLOAD: usize = 64 * 1024;
/// How many compressed payloads each thread remembers.
const CACHE_ENTRIES: usize = 8;

/// Why an inflated message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// The output passed the limit (close 1009).
    #[error("message too big once inflated")]
    TooBig,
    /// Not a valid deflate stream (close 1007).
    #[error("invalid compressed data")]
    Invalid,
}

impl InflateError {
    /// The WebSocket close code for this refusal.
    pub fn close_code(self) -> CloseCode {
        match self {
            Self::TooBig => CloseCode::MESSAGE_TOO_BIG,
            Self::Invalid => CloseCode::INVALID_PAYLOAD,
        }
    }
}

impl From<InflateError> for Violation {
    fn from(e: InflateError) -> Self {
        Violation {
            code: e.close_code(),
            reason: match e {
                InflateError::TooBig => "message too big",
                InflateError::Invalid => "invalid compressed data",
            },
        }
    }
}

/// A dedicated compressor failed (it does not on valid state): the connection must
/// close (1011), since the peer's window no longer matches ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deflate failed")]
pub struct DeflateError;

/// The sending half of one connection's permessage-deflate.
#[derive(Debug)]
pub struct MessageDeflater {
    level: u32,
    threshold: usize,
    window_bits: u8,
    /// Context takeover: the connection's own compressor, made on first use.
    dedicated: Option<Dedicated<Compress>>,
}

/// The receiving half of one connection's permessage-deflate.
#[derive(Debug)]
pub struct MessageInflater {
    /// Context takeover by the client: the connection's own decompressor.
    dedicated: Option<Dedicated<Decompress>>,
}

/// A context of one connection's own, and the budget slot that pays for it.
struct Dedicated<T> {
    context: Option<Box<T>>,
    _slot: ContextGuard,
}

impl<T> Dedicated<T> {
    fn new(slot: ContextGuard) -> Self {
        Self {
            context: None,
            _slot: slot,
        }
    }
}

impl<T> std::fmt::Debug for Dedicated<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedicated").field("allocated", &self.context.is_some()).finish()
    }
}

impl Negotiated {
    /// The two halves of the connection's compression, with the `level` and `threshold`
    /// of the listener's configuration.
    pub fn into_codecs(self, level: u32, threshold: usize) -> (MessageInflater, MessageDeflater) {
        let inflater = MessageInflater {
            dedicated: self.client_slot.map(Dedicated::new),
        };
        let deflater = MessageDeflater {
            level: level.min(9),
            threshold,
            window_bits: self.agreed.server_window_bits.clamp(9, 15),
            dedicated: self.server_slot.map(Dedicated::new),
        };
        (inflater, deflater)
    }
}

impl MessageDeflater {
    /// A no-context-takeover deflater (the thread's shared compressors).
    pub fn shared(level: u32, threshold: usize, window_bits: u8) -> Self {
        Self {
            level: level.min(9),
            threshold,
            window_bits: window_bits.clamp(9, 15),
            dedicated: None,
        }
    }

    /// Whether this connection keeps its compressor between messages.
    pub fn takes_over(&self) -> bool {
        self.dedicated.is_some()
    }

    /// The compressed form of one message, to send with RSV1 set; `None` to send
    /// `payload` as it is (under the threshold, or, without context takeover, not
    /// smaller once compressed). An error only comes from a dedicated compressor (the
    /// connection then closes with 1011).
    pub fn compress(&mut self, payload: &Bytes) -> Result<Option<Bytes>, DeflateError> {
        if payload.len() < self.threshold {
            return Ok(None);
        }
        let (level, bits) = (self.level, self.window_bits);
        match &mut self.dedicated {
            Some(own) => {
                let context = own
                    .context
                    .get_or_insert_with(|| Box::new(Compress::new_with_window_bits(Compression::new(level), false, bits)));
                deflate_with(context, payload).map(|out| Some(finish(out)))
            }
            None => {
                // The shared compressor is reset after every message, failed or not: on
                // a failure this message simply goes out uncompressed.
                let compressed = with_thread_contexts(|t| t.compress_shared(payload, level, bits)).ok();
                Ok(compressed.filter(|c| c.len() < payload.len()))
            }
        }
    }
}

impl MessageInflater {
    /// A no-context-takeover inflater (the thread's shared decompressor).
    pub fn shared() -> Self {
        Self { dedicated: None }
    }

    /// Whether this connection keeps its decompressor between messages.
    pub fn takes_over(&self) -> bool {
        self.dedicated.is_some()
    }

    /// Inflate one whole compressed message (all its frames' payloads joined, the tail
    /// not included), refusing it the moment the output passes `limit` bytes.
    pub fn inflate(&mut self, compressed: &[u8], limit: usize) -> Result<Bytes, InflateError> {
        let mut out = Vec::new();
        match &mut self.dedicated {
            Some(own) => {
                let context = own.context.get_or_insert_with(|| Box::new(Decompress::new(false)));
                let result = inflate_into(context, compressed, limit, &mut out);
                if matches!(result, Ok(true)) {
                    // A final block ended the stream: start a fresh one for the next
                    // message (its window is lost, as with a BFINAL sender's own).
                    context.reset(false);
                }
                result?;
            }
            None => with_thread_contexts(|t| {
                let context = t.decompress.get_or_insert_with(|| Decompress::new(false));
                let result = inflate_into(context, compressed, limit, &mut out);
                context.reset(false);
                result
            })
            .map(|_| ())?,
        }
        Ok(finish(out))
    }
}

/// One worker thread's shared contexts, for no-context-takeover connections.
#[derive(Default)]
struct ThreadContexts {
    /// One compressor per window size (index `bits - 9`), with its level.
    compress: [Option<(u32, Compress)>; 7],
    decompress: Option<Decompress>,
    /// Recently compressed payloads: (payload, window bits, level) → compressed form.
    /// Holding the payload keeps its address from being reused
    /// while the entry lives, so the address identifies the bytes.
    recent: [Option<Recent>; CACHE_ENTRIES],
    next: usize,
}

struct Recent {
    payload: Bytes,
    bits: u8,
    level: u32,
    compressed: Bytes,
}

thread_local! {
    /// Taken out for the length of one call and put back, so that no borrow can fail.
    static CONTEXTS: Cell<Option<Box<ThreadContexts>>> = const { Cell::new(None) };
}

/// Run `f` on this thread's shared contexts (on fresh ones while the thread exits).
fn with_thread_contexts<R>(f: impl FnOnce(&mut ThreadContexts) -> R) -> R {
    let mut contexts = CONTEXTS.try_with(Cell::take).ok().flatten().unwrap_or_default();
    let result = f(&mut contexts);
    let _ = CONTEXTS.try_with(|cell| cell.set(Some(contexts)));
    result
}

impl ThreadContexts {
    /// `payload` compressed on this thread's shared compressor (reset after), or as
    /// the previous subscriber's copy had it.
    fn compress_shared(&mut self, payload: &Bytes, level: u32, bits: u8) -> Result<Bytes, DeflateError> {
        let cacheable = payload.len() <= CACHE_MAX_PAYLOAD;
        if cacheable {
            let hit =
                self.recent.iter().flatten().find(|r| {
                    r.payload.as_ptr() == payload.as_ptr() && r.payload.len() == payload.len() && r.bits == bits && r.level == level
                });
            if let Some(hit) = hit {
                return Ok(hit.compressed.clone());
            }
        }
        let slot = &mut self.compress[usize::from(bits.clamp(9, 15) - 9)];
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, Compress::new_with_window_bits(Compression::new(level), false, bits)));
        }
        let Some((_, context)) = slot.as_mut() else {
            return Err(DeflateError);
        };
        let result = deflate_with(context, payload);
        context.reset();
        let compressed = finish(result?);
        if cacheable {
            self.recent[self.next] = Some(Recent {
                payload: payload.clone(),
                bits,
                level,
                compressed: compressed.clone(),
            });
            self.next = (self.next + 1) % CACHE_ENTRIES;
        }
        Ok(compressed)
    }
}

/// `payload` compressed on this thread's shared compressor whether or not it shrinks
/// (for byte-exact tests).
#[cfg(test)]
pub(crate) fn deflate_shared(payload: &Bytes, level: u32, bits: u8) -> Bytes {
    with_thread_contexts(|t| t.compress_shared(payload, level, bits)).unwrap_or_default()
}

/// Compress `input` as one message with a sync flush, the tail stripped.
fn deflate_with(context: &mut Compress, input: &[u8]) -> Result<Vec<u8>, DeflateError> {
    // Deflate's worst case is a few bytes per 16 KiB stored block over the input.
    let mut out = Vec::with_capacity(input.len() + (input.len() >> 10) + 64);
    let start = context.total_in();
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        let consumed = usize::try_from(context.total_in() - start).map_err(|_| DeflateError)?;
        let rest = input.get(consumed..).ok_or(DeflateError)?;
        context
            .compress_vec(rest, &mut out, FlushCompress::Sync)
            .map_err(|_| DeflateError)?;
        let all_in = context.total_in() - start == input.len() as u64;
        if all_in && out.len() < out.capacity() {
            break;
        }
    }
    if !out.ends_with(&TAIL) {
        return Err(DeflateError);
    }
    out.truncate(out.len() - TAIL.len());
    Ok(out)
}

/// Inflate `compressed` followed by [`TAIL`] into `out`, growing it in steps and never
/// past `limit + 1` bytes. `Ok(true)`: a final block ended the stream.
fn inflate_into(context: &mut Decompress, compressed: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<bool, InflateError> {
    let cap = limit.saturating_add(1);
    out.reserve_exact(compressed.len().saturating_mul(4).clamp(256, 64 * 1024).min(cap));
    for chunk in [compressed, &TAIL[..]] {
        let mut rest = chunk;
        loop {
            if out.len() == out.capacity() {
                if out.len() > limit {
                    return Err(InflateError::TooBig);
                }
                out.reserve_exact(out.len().max(1024).min(cap - out.len()));
            }
            let (in_before, out_before) = (context.total_in(), out.len());
            let status = context
                .decompress_vec(rest, out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Invalid)?;
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            let consumed = usize::try_from(context.total_in() - in_before).map_err(|_| InflateError::Invalid)?;
            rest = rest.get(consumed..).ok_or(InflateError::Invalid)?;
            if status == Status::StreamEnd {
                // A final block (RFC 7692 §7.2.3.4): what follows it is padding.
                return Ok(true);
            }
            let full = out.len() == out.capacity();
            if rest.is_empty() && !full {
                break;
            }
            if consumed == 0 && out.len() == out_before && !full {
                return Err(InflateError::Invalid);
            }
        }
    }
    Ok(false)
}

/// A message as `Bytes`, without much spare room kept behind it (it may be cached,
/// retained or queued for a long time).
fn finish(mut out: Vec<u8>) -> Bytes {
    if out.capacity() > out.len() + out.len() / 4 + 64 {
        out.shrink_to_fit();
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::deflate::config::CompressionConfig;
    use crate::ws::deflate::negotiate::{negotiate, ContextBudget};
    use hyper::header::HeaderValue;

    /// Bytes that do not compress (xorshift).
    fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    /// Text that compresses, with repeats further apart than a small window.
    fn text(len: usize) -> Vec<u8> {
        let words = noise(4096, 7);
        let mut out = Vec::with_capacity(len);
        let mut i = 0usize;
        while out.len() < len {
            out.extend_from_slice(b"MESSAGE\ndestination:/topic/sensors.room");
            out.push(b'a' + words[i % words.len()] % 26);
            out.extend_from_slice(&words[(i * 37) % 4000..(i * 37) % 4000 + 40]);
            i += 1;
        }
        out.truncate(len);
        out
    }

    pub(super) fn takeover() -> (MessageInflater, MessageDeflater, Arc<ContextBudget>) {
        takeover_with_threshold(0)
    }

    fn takeover_with_threshold(threshold: usize) -> (MessageInflater, MessageDeflater, Arc<ContextBudget>) {
        let config = CompressionConfig {
            enabled: true,
            context_takeover: true,
            ..CompressionConfig::default()
        };
        let budget = ContextBudget::new(2);
        let offer = HeaderValue::from_static("permessage-deflate");
        let negotiated = negotiate([&offer], &config, &budget).unwrap();
        let (inflater, deflater) = negotiated.into_codecs(1, threshold);
        (inflater, deflater, budget)
    }

    use std::sync::Arc;

    const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

    #[test]
    fn rfc7692_hello_without_context_takeover() {
        // §7.2.3.1: "Hello" compressed, the tail removed.
        for _ in 0..3 {
            let out = deflate_shared(&Bytes::from(&b"Hello"[..]), 1, 15);
            assert_eq!(&out[..], HELLO, "the same bytes every time: the context is reset");
        }
        // Seven bytes for five: a deflater sends it as it is.
        let mut deflater = MessageDeflater::shared(1, 0, 15);
        assert_eq!(deflater.compress(&Bytes::from_static(b"Hello")), Ok(None));
        let mut inflater = MessageInflater::shared();
        for _ in 0..3 {
            assert_eq!(&inflater.inflate(&HELLO, 5).unwrap()[..], b"Hello");
        }
    }

    #[test]
    fn rfc7692_other_encodings_of_hello() {
        let mut inflater = MessageInflater::shared();
        // §7.2.3.3: a stored (uncompressed) block.
        let stored = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
        assert_eq!(&inflater.inflate(&stored, 5).unwrap()[..], b"Hello");
        // §7.2.3.4: a block with BFINAL set, then a padding octet.
        let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(&inflater.inflate(&bfinal, 5).unwrap()[..], b"Hello");
        // And the shared decompressor is fine for the next message.
        assert_eq!(&inflater.inflate(&HELLO, 5).unwrap()[..], b"Hello");
        // §7.2.3.6: an empty message is a single 00 octet.
        assert!(inflater.inflate(&[0x00], 0).unwrap().is_empty());
    }

    #[test]
    fn rfc7692_hello_twice_with_context_takeover() {
        // §7.2.3.2: the second "Hello" refers back into the first.
        let (mut inflater, mut deflater, budget) = takeover();
        assert!(deflater.takes_over() && inflater.takes_over());
        let first = deflater.compress(&Bytes::from_static(b"Hello")).unwrap().unwrap();
        let second = deflater.compress(&Bytes::from_static(b"Hello")).unwrap().unwrap();
        assert_eq!(&first[..], HELLO);
        // zlib-rs encodes the back-reference as `02 13 00 00`, the RFC's zlib as
        // `f2 00 11 00 00`: both are the same deflate, and both inflate below.
        assert!(second.len() < first.len(), "{second:02x?}");
        assert_eq!(&inflater.inflate(&first, 5).unwrap()[..], b"Hello");
        assert_eq!(&inflater.inflate(&second, 5).unwrap()[..], b"Hello");
        // The RFC's own second message inflates in the same context.
        assert_eq!(&inflater.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], 5).unwrap()[..], b"Hello");
        assert_eq!(budget.in_use(), 2);
        drop((inflater, deflater));
        assert_eq!(budget.in_use(), 0, "the contexts' slots are given back");
    }

    #[test]
    fn round_trips_at_window_bits_9_and_15() {
        for bits in [9u8, 12, 15] {
            for len in [300usize, 5000, 100_000] {
                let message = Bytes::from(text(len));
                let mut deflater = MessageDeflater::shared(1, 256, bits);
                let compressed = deflater.compress(&message).unwrap().unwrap();
                let most = if len < 1000 { len } else { len * 3 / 4 };
                assert!(compressed.len() < most, "bits {bits}, len {len}: {}", compressed.len());
                let mut inflater = MessageInflater::shared();
                assert_eq!(inflater.inflate(&compressed, len).unwrap(), message, "bits {bits}, len {len}");
                // A window of 2^bits: a decompressor limited to it accepts the stream.
                let mut strict = Decompress::new_with_window_bits(false, bits);
                let mut out = Vec::new();
                inflate_into(&mut strict, &compressed, len, &mut out).unwrap();
                assert_eq!(out, message[..], "bits {bits}, len {len}, strict window");
            }
        }
        for level in [0, 6, 9] {
            let message = Bytes::from(text(20_000));
            let compressed = deflate_shared(&message, level, 15);
            assert_eq!(
                MessageInflater::shared().inflate(&compressed, 20_000).unwrap(),
                message,
                "level {level}"
            );
        }
        // Context takeover keeps working across many messages.
        let (mut inflater, mut deflater, _budget) = takeover();
        for i in 0..50 {
            let message = Bytes::from(text(1000 + i * 97));
            let compressed = deflater.compress(&message).unwrap().unwrap();
            assert_eq!(inflater.inflate(&compressed, 1 << 20).unwrap(), message, "message {i}");
        }
    }

    #[test]
    fn a_decompression_bomb_is_refused_without_inflating_it() {
        // 1 MiB of zeros compresses to about 1 KiB.
        let zeros = Bytes::from(vec![0u8; 1 << 20]);
        let bomb = MessageDeflater::shared(9, 0, 15).compress(&zeros).unwrap().unwrap();
        assert!(bomb.len() < 2048, "{}", bomb.len());
        let limit = 64 * 1024;
        assert_eq!(MessageInflater::shared().inflate(&bomb, limit), Err(InflateError::TooBig));
        // Never more room than the limit and one byte.
        let mut out = Vec::new();
        let mut context = Decompress::new(false);
        assert_eq!(inflate_into(&mut context, &bomb, limit, &mut out), Err(InflateError::TooBig));
        assert!(out.capacity() <= limit + 1, "{}", out.capacity());
        // The limit itself is allowed, one byte less is not.
        assert_eq!(MessageInflater::shared().inflate(&bomb, 1 << 20).unwrap(), zeros);
        assert_eq!(MessageInflater::shared().inflate(&bomb, (1 << 20) - 1), Err(InflateError::TooBig));
        let (mut inflater, _, _budget) = takeover();
        assert_eq!(inflater.inflate(&bomb, limit), Err(InflateError::TooBig));
        assert_eq!(Violation::from(InflateError::TooBig).code, 1009);
    }

    #[test]
    fn a_bad_stream_is_invalid() {
        let mut inflater = MessageInflater::shared();
        // BTYPE 11 is reserved; then garbage; then a stored block whose length check fails.
        for bad in [&[0x06][..], &[0xff, 0xff, 0xff, 0xff], &[0x00, 0x05, 0x00, 0x00, 0x00, b'x']] {
            assert_eq!(inflater.inflate(bad, 1 << 20), Err(InflateError::Invalid), "{bad:02x?}");
        }
        // The shared decompressor was reset: the next good message inflates.
        assert_eq!(&inflater.inflate(&HELLO, 5).unwrap()[..], b"Hello");
        assert_eq!(Violation::from(InflateError::Invalid).code, 1007);
        let (mut own, _, _budget) = takeover();
        assert_eq!(own.inflate(&[0x06], 100), Err(InflateError::Invalid));
    }

    #[test]
    fn small_and_incompressible_messages_go_out_as_they_are() {
        let mut deflater = MessageDeflater::shared(1, 256, 15);
        assert_eq!(deflater.compress(&Bytes::from(text(255))), Ok(None), "under the threshold");
        assert!(deflater.compress(&Bytes::from(text(256))).unwrap().is_some());
        assert_eq!(deflater.compress(&Bytes::from(noise(4096, 1))), Ok(None), "would not shrink");
        // Under context takeover a compressed message is always sent compressed: the
        // peer's window must hold it.
        let (mut inflater, mut deflater, _budget) = takeover();
        let noisy = Bytes::from(noise(4096, 2));
        let compressed = deflater.compress(&noisy).unwrap().unwrap();
        assert_eq!(inflater.inflate(&compressed, 4096).unwrap(), noisy);
    }

    #[test]
    fn compressed_and_inflated_messages_keep_no_spare_room() {
        let mut wasteful = Vec::with_capacity(10_000);
        wasteful.extend_from_slice(b"small");
        let kept: Vec<u8> = finish(wasteful).into();
        assert!(kept.capacity() < 100, "{}", kept.capacity());
        // A dedicated compressor's output is not cached: its Bytes is unique.
        let (mut inflater, mut deflater, _budget) = takeover();
        let zeros = Bytes::from(vec![0u8; 60_000]);
        let compressed: Vec<u8> = deflater.compress(&zeros).unwrap().unwrap().into();
        assert!(compressed.len() < 1000);
        assert!(
            compressed.capacity() <= compressed.len() + compressed.len() / 4 + 64,
            "{}",
            compressed.capacity()
        );
        let inflated: Vec<u8> = inflater.inflate(&compressed, 100_000).unwrap().into();
        assert!(inflated.capacity() <= 60_000 + 60_000 / 4 + 64, "{}", inflated.capacity());
    }

    #[test]
    fn a_payload_shared_by_subscribers_is_compressed_once_per_thread() {
        let message = Bytes::from(text(2000));
        let a = MessageDeflater::shared(1, 0, 15).compress(&message).unwrap().unwrap();
        let b = MessageDeflater::shared(1, 0, 15).compress(&message.clone()).unwrap().unwrap();
        assert_eq!(a.as_ptr(), b.as_ptr(), "the second subscriber gets the same bytes");
        // Other parameters, or equal bytes elsewhere, are compressed on their own.
        let c = MessageDeflater::shared(1, 0, 10).compress(&message).unwrap().unwrap();
        assert_ne!(a.as_ptr(), c.as_ptr());
        let copy = Bytes::from(message.to_vec());
        let d = MessageDeflater::shared(1, 0, 15).compress(&copy).unwrap().unwrap();
        assert_ne!(a.as_ptr(), d.as_ptr());
        assert_eq!(a, d);
    }

    #[test]
    fn a_connection_without_context_takeover_holds_no_zlib_state() {
        assert_eq!(std::mem::size_of::<MessageInflater>(), 16);
        assert!(std::mem::size_of::<MessageDeflater>() <= 32);
        let (inflater, deflater) = {
            let config = CompressionConfig {
                enabled: true,
                ..CompressionConfig::default()
            };
            let offer = HeaderValue::from_static("permessage-deflate");
            negotiate([&offer], &config, &ContextBudget::new(10)).unwrap().into_codecs(1, 256)
        };
        assert!(!inflater.takes_over() && !deflater.takes_over());
    }

    #[test]
    fn dedicated_contexts_are_made_on_first_use() {
        let (mut inflater, mut deflater, _budget) = takeover_with_threshold(100);
        let allocated = |d: &MessageDeflater| d.dedicated.as_ref().is_some_and(|d| d.context.is_some());
        assert!(deflater.takes_over() && !allocated(&deflater));
        assert_eq!(deflater.compress(&Bytes::from(text(99))), Ok(None), "under the threshold");
        assert!(!allocated(&deflater), "nothing compressed yet");
        assert!(deflater.compress(&Bytes::from(text(200))).unwrap().is_some());
        assert!(allocated(&deflater));
        assert!(inflater.dedicated.as_ref().is_some_and(|d| d.context.is_none()));
        inflater.inflate(&HELLO, 5).unwrap();
        assert!(inflater.dedicated.as_ref().is_some_and(|d| d.context.is_some()));
    }
}

#[cfg(test)]
mod measure {
    use std::time::Instant;

    use super::*;

    /// A STOMP MESSAGE frame with a 1 KiB JSON body, as the fan-out bench sends.
    fn stomp_json(i: usize) -> Bytes {
        let mut body = String::from("{\"readings\":[");
        let mut n = 0;
        while body.len() < 1000 {
            body.push_str(&format!(
                "{{\"sensor\":\"room-{}\",\"temperature\":{}.{},\"humidity\":{},\"ok\":true}},",
                (i + n) % 17,
                18 + (i * 7 + n) % 9,
                (i + n * 3) % 10,
                40 + (i + n) % 30
            ));
            n += 1;
        }
        body.push_str("{}]}");
        let frame = format!(
            "MESSAGE\nsubscription:sub-0\nmessage-id:{i}\ndestination:/topic/sensors.room1.temp\ncontent-type:application/json\ncontent-length:{}\n\n{body}\0",
            body.len()
        );
        Bytes::from(frame)
    }

    /// `cargo test --release -p ferry-transport --lib deflate::codec::measure -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, run by hand in release"]
    fn cost_per_message() {
        let messages: Vec<Bytes> = (0..2000).map(stomp_json).collect();
        let raw: usize = messages.iter().map(Bytes::len).sum();
        for level in [1, 6] {
            let mut deflater = MessageDeflater::shared(level, 256, 15);
            let start = Instant::now();
            let compressed: Vec<Bytes> = messages
                .iter()
                .map(|m| deflater.compress(&Bytes::from(m.to_vec())).unwrap().unwrap())
                .collect();
            let deflate_ns = start.elapsed().as_nanos() / messages.len() as u128;
            let wire: usize = compressed.iter().map(Bytes::len).sum();
            let mut inflater = MessageInflater::shared();
            let start = Instant::now();
            for c in &compressed {
                inflater.inflate(c, 1 << 20).unwrap();
            }
            let inflate_ns = start.elapsed().as_nanos() / messages.len() as u128;
            println!(
                "no context takeover, level {level}: {} B -> {} B per message ({:.1}x), deflate {deflate_ns} ns, inflate {inflate_ns} ns",
                raw / messages.len(),
                wire / messages.len(),
                raw as f64 / wire as f64
            );
        }
        let (mut inflater, mut deflater, _budget) = tests::takeover();
        let start = Instant::now();
        let compressed: Vec<Bytes> = messages.iter().map(|m| deflater.compress(m).unwrap().unwrap()).collect();
        let deflate_ns = start.elapsed().as_nanos() / messages.len() as u128;
        let wire: usize = compressed.iter().map(Bytes::len).sum();
        let start = Instant::now();
        for c in &compressed {
            inflater.inflate(c, 1 << 20).unwrap();
        }
        let inflate_ns = start.elapsed().as_nanos() / messages.len() as u128;
        println!(
            "context takeover, level 1: {} B per message ({:.1}x), deflate {deflate_ns} ns, inflate {inflate_ns} ns",
            wire / messages.len(),
            raw as f64 / wire as f64
        );
        let mut cached = MessageDeflater::shared(1, 256, 15);
        let one = messages[0].clone();
        cached.compress(&one).unwrap();
        let start = Instant::now();
        for _ in 0..100_000 {
            cached.compress(&one).unwrap();
        }
        println!("the same payload again (fan-out): {} ns", start.elapsed().as_nanos() / 100_000);
    }
}
