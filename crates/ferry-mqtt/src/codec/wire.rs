//! The data representations of MQTT 3.1.1 §1.5 / 5.0 §1.5: integers, Variable Byte
//! Integers, binary data and UTF-8 strings, read from one packet's bytes and written to
//! an output buffer.
//!
//! [`Reader`] never reads past the packet it was given: running out is
//! [`DecodeError::Truncated`], never "need more bytes" (framing settled that already).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::error::{DecodeError, EncodeError};

/// The largest value a Variable Byte Integer can hold (four bytes of seven bits).
pub const MAX_VARINT: usize = 268_435_455;

/// The longest string or binary field (a 16-bit length prefix).
pub const MAX_FIELD: usize = 65_535;

/// Decodes a Variable Byte Integer from the start of `buf`.
///
/// `Ok(None)` means `buf` ends before the integer does. Otherwise the value and the
/// number of bytes it took. Rejects more than four bytes and non-minimal encodings.
pub(super) fn parse_varint(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value = 0usize;
    for (i, &byte) in buf.iter().enumerate().take(4) {
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            // A trailing zero byte adds nothing: a shorter encoding existed.
            if i > 0 && byte == 0 {
                return Err(DecodeError::VarintNotMinimal);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        return Err(DecodeError::VarintTooLong);
    }
    Ok(None)
}

/// The number of bytes `value` takes as a Variable Byte Integer (1 to 4; values over
/// [`MAX_VARINT`] must be refused before).
pub(super) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes `value` (at most [`MAX_VARINT`]) as a Variable Byte Integer.
pub(super) fn put_varint(out: &mut BytesMut, mut value: usize) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if value == 0 {
            break;
        }
    }
}

/// Writes a two-byte length then `data` (length checked by the caller).
pub(super) fn put_binary(out: &mut BytesMut, data: &[u8]) {
    out.put_u16(data.len() as u16);
    out.put_slice(data);
}

/// Checks that `data` fits a length-prefixed field; returns its encoded size.
pub(super) fn binary_len(data: &[u8]) -> Result<usize, EncodeError> {
    if data.len() > MAX_FIELD {
        return Err(EncodeError::FieldTooLong(data.len()));
    }
    Ok(2 + data.len())
}

/// Checks that `s` is a valid MQTT string (length, no U+0000); returns its encoded size.
pub(super) fn string_len(s: &str) -> Result<usize, EncodeError> {
    if s.as_bytes().contains(&0) {
        return Err(DecodeError::NullCharacter.into());
    }
    binary_len(s.as_bytes())
}

/// Makes a [`ByteString`] of `bytes` if they are an MQTT UTF-8 string: well-formed
/// UTF-8 (which excludes the surrogates U+D800..U+DFFF) without U+0000.
pub(super) fn utf8(bytes: Bytes) -> Result<ByteString, DecodeError> {
    if bytes.contains(&0) {
        return Err(DecodeError::NullCharacter);
    }
    ByteString::try_from(bytes).map_err(|_| DecodeError::InvalidUtf8)
}

/// A cursor over the bytes of one packet (after its fixed header).
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    /// A reader over `buf`.
    pub(crate) fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Whether everything has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(DecodeError::Truncated)
        } else {
            Ok(())
        }
    }

    /// A byte.
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    /// A big-endian Two Byte Integer.
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    /// A big-endian Four Byte Integer.
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    /// A Variable Byte Integer.
    pub(crate) fn varint(&mut self) -> Result<usize, DecodeError> {
        match parse_varint(&self.buf)? {
            Some((value, len)) => {
                self.buf.advance(len);
                Ok(value)
            }
            None => Err(DecodeError::Truncated),
        }
    }

    /// The next `n` bytes, shared with the packet (no copy).
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }

    /// Binary Data: a two-byte length and that many bytes.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// A UTF-8 Encoded String.
    pub(crate) fn string(&mut self) -> Result<ByteString, DecodeError> {
        utf8(self.binary()?)
    }

    /// Everything not read yet.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Fails unless everything has been read.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.buf.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3.1.1 §2.2.3 Table 2.4 / 5.0 §1.5.5 Table 1-1: the bounds of each width.
    const TABLE: &[(usize, &[u8])] = &[
        (0, &[0x00]),
        (127, &[0x7F]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xFF, 0x7F]),
        (16_384, &[0x80, 0x80, 0x01]),
        (2_097_151, &[0xFF, 0xFF, 0x7F]),
        (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
        (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
    ];

    #[test]
    fn varints_match_the_spec_table() {
        for &(value, bytes) in TABLE {
            let mut out = BytesMut::new();
            put_varint(&mut out, value);
            assert_eq!(&out[..], bytes, "encoding {value}");
            assert_eq!(varint_len(value), bytes.len());
            assert_eq!(parse_varint(bytes), Ok(Some((value, bytes.len()))), "decoding {value}");
            // Every proper prefix is incomplete.
            for cut in 0..bytes.len() {
                assert_eq!(parse_varint(&bytes[..cut]), Ok(None));
            }
        }
    }

    #[test]
    fn varints_over_four_bytes_are_refused() {
        assert_eq!(parse_varint(&[0xFF, 0xFF, 0xFF, 0xFF]), Err(DecodeError::VarintTooLong));
        assert_eq!(parse_varint(&[0x80, 0x80, 0x80, 0x80, 0x01]), Err(DecodeError::VarintTooLong));
    }

    #[test]
    fn non_minimal_varints_are_refused() {
        assert_eq!(parse_varint(&[0x80, 0x00]), Err(DecodeError::VarintNotMinimal));
        assert_eq!(parse_varint(&[0xFF, 0x80, 0x00]), Err(DecodeError::VarintNotMinimal));
        assert_eq!(parse_varint(&[0x80, 0x80, 0x80, 0x00]), Err(DecodeError::VarintNotMinimal));
    }

    #[test]
    fn utf8_example_from_the_spec() {
        // 3.1.1 §1.5.3.1 / 5.0 §1.5.4: "A𪛔" is 0x00 0x05 0x41 0xF0 0xAA 0x9B 0x94.
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x05, 0x41, 0xF0, 0xAA, 0x9B, 0x94]));
        assert_eq!(r.string().unwrap(), "A\u{2A6D4}");
        r.finish().unwrap();
    }

    #[test]
    fn strings_must_be_utf8_without_nul() {
        assert_eq!(
            Reader::new(Bytes::from_static(&[0, 2, b'a', 0])).string(),
            Err(DecodeError::NullCharacter)
        );
        assert_eq!(
            Reader::new(Bytes::from_static(&[0, 1, 0xFF])).string(),
            Err(DecodeError::InvalidUtf8)
        );
        // An encoded surrogate (U+D800) is not UTF-8 (5.0 [MQTT-1.5.4-1]).
        assert_eq!(
            Reader::new(Bytes::from_static(&[0, 3, 0xED, 0xA0, 0x80])).string(),
            Err(DecodeError::InvalidUtf8)
        );
        // Overlong encodings are not UTF-8 either.
        assert_eq!(
            Reader::new(Bytes::from_static(&[0, 2, 0xC0, 0x80])).string(),
            Err(DecodeError::InvalidUtf8)
        );
    }

    #[test]
    fn reading_past_the_end_is_truncation() {
        let mut r = Reader::new(Bytes::from_static(&[0, 5, b'a']));
        assert_eq!(r.string(), Err(DecodeError::Truncated));
        assert_eq!(Reader::new(Bytes::from_static(&[1])).u16(), Err(DecodeError::Truncated));
        assert_eq!(Reader::new(Bytes::from_static(&[0x80])).varint(), Err(DecodeError::Truncated));
        let r = Reader::new(Bytes::from_static(&[1, 2]));
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes(2)));
    }

    #[test]
    fn field_lengths_are_checked_before_writing() {
        assert_eq!(binary_len(&[0; 65_535]), Ok(65_537));
        assert_eq!(binary_len(&[0; 65_536]), Err(EncodeError::FieldTooLong(65_536)));
        assert_eq!(string_len("a\0"), Err(EncodeError::Invalid(DecodeError::NullCharacter)));
    }
}
