//! Record framing, with no I/O: `len:u32 | crc32c:u32 | lsn:u64 | kind:u8 | body`, all
//! little-endian. `len` is the body's length; the CRC-32C covers `len`, `lsn`, `kind` and
//! the body (every byte of the record but the CRC itself).
//!
//! An all-zero header is the end of the data (segments are preallocated with zeros, and
//! no record has LSN 0).

use crate::error::Lsn;

/// Bytes before a record's body.
pub const RECORD_HEADER_LEN: usize = 17;

/// The largest body a frame can describe.
pub const MAX_BODY_LEN: usize = u32::MAX as usize;

/// The CRC of a record from the CRC of its body (so the body's CRC can be computed
/// before the record's LSN is known, outside any lock).
pub fn record_crc(len: u32, lsn: Lsn, kind: u8, body_crc: u32, body_len: usize) -> u32 {
    let mut head = [0u8; 13];
    head[..4].copy_from_slice(&len.to_le_bytes());
    head[4..12].copy_from_slice(&lsn.to_le_bytes());
    head[12] = kind;
    crc32c::crc32c_combine(crc32c::crc32c(&head), body_crc, body_len)
}

/// Appends the frame of one record to `out`. `body_crc` is `crc32c(body)`. The body must
/// be at most [`MAX_BODY_LEN`] bytes (the store checks it first).
pub fn encode_with_crc(out: &mut Vec<u8>, lsn: Lsn, kind: u8, body: &[u8], body_crc: u32) {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let crc = record_crc(len, lsn, kind, body_crc, body.len());
    out.reserve(RECORD_HEADER_LEN + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(body);
}

/// Appends the frame of one record to `out`, its CRC computed over the bytes just
/// written (`len` and then the contiguous `lsn | kind | body`).
pub fn encode(out: &mut Vec<u8>, lsn: Lsn, kind: u8, body: &[u8]) {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let start = out.len();
    out.reserve(RECORD_HEADER_LEN + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(body);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), &out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Bodies from this size on are better CRC'd before the LSN is known (outside the store's
/// queue lock) and combined with the header's CRC ([`record_crc`]); below it, one pass
/// over the framed bytes ([`encode`]) is cheaper than the combination.
pub const CRC_AHEAD_FROM: usize = 16 << 10;

/// A record read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Its LSN.
    pub lsn: Lsn,
    /// Its kind.
    pub kind: u8,
    /// Its body.
    pub body: &'a [u8],
    /// Its whole length, header included.
    pub len: usize,
}

/// What [`decode`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole, valid record.
    Record(Frame<'a>),
    /// An all-zero header (or fewer than a header's bytes, all zero): no more data here.
    End,
    /// Bytes that are not a valid record: a short header or body, or a CRC mismatch.
    Bad(&'static str),
}

/// Reads the record at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < RECORD_HEADER_LEN {
        return if buf.iter().all(|&b| b == 0) {
            Decoded::End
        } else {
            Decoded::Bad("short record header")
        };
    }
    let header = &buf[..RECORD_HEADER_LEN];
    if header.iter().all(|&b| b == 0) {
        return Decoded::End;
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let mut lsn_bytes = [0u8; 8];
    lsn_bytes.copy_from_slice(&buf[8..16]);
    let lsn = u64::from_le_bytes(lsn_bytes);
    let kind = buf[16];
    let body_len = len as usize;
    let Some(body) = buf.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN.saturating_add(body_len)) else {
        return Decoded::Bad("record runs past the end of the file");
    };
    let end = RECORD_HEADER_LEN + body_len;
    if crc32c::crc32c_append(crc32c::crc32c(&buf[..4]), &buf[8..end]) != crc {
        return Decoded::Bad("record CRC mismatch");
    }
    if lsn == 0 {
        return Decoded::Bad("record with LSN 0");
    }
    Decoded::Record(Frame {
        lsn,
        kind,
        body,
        len: RECORD_HEADER_LEN + body_len,
    })
}

/// The whole length of the encoded record at the start of `buf` (which the caller knows
/// holds one, e.g. the writer's own batch).
pub(crate) fn encoded_len(buf: &[u8]) -> usize {
    match buf.get(..4) {
        Some(b) => RECORD_HEADER_LEN + u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
        None => buf.len(),
    }
}

/// The LSN of the encoded record at the start of `buf`.
pub(crate) fn encoded_lsn(buf: &[u8]) -> Lsn {
    let mut b = [0u8; 8];
    if let Some(src) = buf.get(8..16) {
        b.copy_from_slice(src);
    }
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_exact_example() {
        let mut out = Vec::new();
        encode(&mut out, 1, 7, b"hi");
        // len = 2, crc32c over [02 00 00 00 | 01 00 00 00 00 00 00 00 | 07 | 'h' 'i'] = 0x7b6e_13aa
        // (computed independently with a bitwise CRC-32C, polynomial 0x82F63B78).
        let expected = [
            0x02, 0x00, 0x00, 0x00, // len
            0xaa, 0x13, 0x6e, 0x7b, // crc32c
            0x01, 0, 0, 0, 0, 0, 0, 0,    // lsn
            0x07, // kind
            b'h', b'i',
        ];
        assert_eq!(out, expected);
        assert_eq!(
            decode(&out),
            Decoded::Record(Frame {
                lsn: 1,
                kind: 7,
                body: b"hi",
                len: 19
            })
        );
    }

    #[test]
    fn both_encodings_agree() {
        for n in [0usize, 1, 64, CRC_AHEAD_FROM + 3] {
            let body: Vec<u8> = (0..n).map(|i| (i * 13) as u8).collect();
            let (mut a, mut b) = (vec![9u8], vec![9u8]);
            encode(&mut a, 77, 4, &body);
            encode_with_crc(&mut b, 77, 4, &body, crc32c::crc32c(&body));
            assert_eq!(a, b);
            assert!(matches!(decode(&a[1..]), Decoded::Record(Frame { lsn: 77, kind: 4, .. })));
        }
    }

    #[test]
    fn crc_from_body_crc_matches_whole_crc() {
        for n in [0usize, 1, 13, 64, 1000] {
            let body: Vec<u8> = (0..n).map(|i| (i * 31) as u8).collect();
            let mut whole = Vec::new();
            whole.extend_from_slice(&(n as u32).to_le_bytes());
            whole.extend_from_slice(&42u64.to_le_bytes());
            whole.push(9);
            whole.extend_from_slice(&body);
            assert_eq!(record_crc(n as u32, 42, 9, crc32c::crc32c(&body), n), crc32c::crc32c(&whole));
        }
    }

    #[test]
    fn end_short_and_bad() {
        assert_eq!(decode(&[]), Decoded::End);
        assert_eq!(decode(&[0; 40]), Decoded::End);
        assert_eq!(decode(&[0, 0, 1]), Decoded::Bad("short record header"));
        let mut out = Vec::new();
        encode(&mut out, 5, 1, b"hello");
        assert_eq!(decode(&out[..out.len() - 1]), Decoded::Bad("record runs past the end of the file"));
        for bit in 0..out.len() * 8 {
            let mut flipped = out.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(matches!(decode(&flipped), Decoded::Bad(_)), "bit {bit} went unnoticed");
        }
        let empty_body = {
            let mut v = Vec::new();
            encode(&mut v, 3, 0, b"");
            v
        };
        assert!(matches!(decode(&empty_body), Decoded::Record(Frame { lsn: 3, len: 17, .. })));
    }
}
