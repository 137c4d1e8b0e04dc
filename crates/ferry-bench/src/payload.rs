//! The header every benchmark payload starts with: who published it, its sequence
//! number and when it was sent.
//!
//! ```text
//! offset  0   2   3   4        12               28               44
//!         FB  1   D   PPPPPPPP SSSSSSSSSSSSSSSS TTTTTTTTTTTTTTTT ....padding
//!         |   |   |   |        |                |
//!         |   |   |   |        |                sent at, ns of CLOCK_MONOTONIC (16 hex digits)
//!         |   |   |   |        sequence number of this publisher (16 hex digits)
//!         |   |   |   publisher id (8 hex digits)
//!         |   |   kind: D data, E end of stream (the sequence is then the count sent)
//!         |   format version
//!         magic
//! ```
//!
//! The header is ASCII on purpose: the same payload travels as an MQTT payload and as a
//! STOMP body in a WebSocket *text* frame (which must be UTF-8), so one format serves
//! every protocol and the `cross` scenario. `CLOCK_MONOTONIC` is shared by every process
//! on the machine, so a subscriber in another load process (`--role sub`) can still
//! compute latencies.

use std::fmt;

/// Bytes taken by the header; payloads must be at least this long.
pub(crate) const HEADER_LEN: usize = 44;

const MAGIC: &[u8; 3] = b"FB1";
const PAD: u8 = b'.';

/// What a payload carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// A measured message.
    Data,
    /// The publisher's last word: [`Header::seq`] is how many data messages it sent.
    End,
}

/// A decoded payload header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Header {
    /// Data or end of stream.
    pub kind: Kind,
    /// The publisher, unique across the load processes of one run.
    pub publisher: u32,
    /// The publisher's sequence number, from 0 (for [`Kind::End`]: the count sent).
    pub seq: u64,
    /// When the message was encoded, in nanoseconds of `CLOCK_MONOTONIC`.
    pub sent_ns: u64,
}

/// Why a payload is not one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PayloadError {
    /// Shorter than [`HEADER_LEN`].
    #[error("payload of {0} bytes is shorter than the {HEADER_LEN}-byte header")]
    TooShort(usize),
    /// Does not start with `FB1`.
    #[error("payload does not start with the ferry-bench magic")]
    BadMagic,
    /// An unknown kind letter.
    #[error("unknown payload kind {0:#04x}")]
    BadKind(u8),
    /// A field with a character that is not a lowercase hex digit.
    #[error("payload header field is not hexadecimal")]
    BadHex,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Data => "data",
            Kind::End => "end",
        })
    }
}

/// A payload of `size` bytes (at least [`HEADER_LEN`]) whose header is to be filled in
/// by [`write`]; the rest is padding.
pub(crate) fn template(size: usize) -> Vec<u8> {
    vec![PAD; size.max(HEADER_LEN)]
}

/// A payload of `size` bytes whose body after the header is JSON text: sensor readings
/// with varying values, so that it compresses as a real feed does (a few times, not the
/// thousand times a run of one byte would).
pub(crate) fn json_template(size: usize) -> Vec<u8> {
    let mut buf = template(size);
    let mut body = String::with_capacity(buf.len());
    let mut seed: u32 = 0x9e37_79b9;
    let mut i = 0u32;
    while body.len() < buf.len() - HEADER_LEN {
        // A small linear congruential generator: the same body every run.
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let tenths = (seed >> 16) % 400;
        body.push_str(&format!(
            "{{\"sensor\":\"room-{i}\",\"celsius\":{}.{},\"unit\":\"C\",\"ok\":true}},",
            10 + tenths / 10,
            tenths % 10
        ));
        i += 1;
    }
    let room = buf.len() - HEADER_LEN;
    buf[HEADER_LEN..].copy_from_slice(&body.as_bytes()[..room]);
    buf
}

/// Writes `header` over the first [`HEADER_LEN`] bytes of `buf`.
///
/// # Panics
///
/// If `buf` is shorter than [`HEADER_LEN`] (a programming error: payload sizes are
/// checked when the command line is read).
pub(crate) fn write(buf: &mut [u8], header: &Header) {
    let buf = &mut buf[..HEADER_LEN];
    buf[..3].copy_from_slice(MAGIC);
    buf[3] = match header.kind {
        Kind::Data => b'D',
        Kind::End => b'E',
    };
    put_hex(&mut buf[4..12], u64::from(header.publisher));
    put_hex(&mut buf[12..28], header.seq);
    put_hex(&mut buf[28..44], header.sent_ns);
}

/// Reads the header at the start of `payload`.
pub(crate) fn read(payload: &[u8]) -> Result<Header, PayloadError> {
    if payload.len() < HEADER_LEN {
        return Err(PayloadError::TooShort(payload.len()));
    }
    if &payload[..3] != MAGIC {
        return Err(PayloadError::BadMagic);
    }
    let kind = match payload[3] {
        b'D' => Kind::Data,
        b'E' => Kind::End,
        other => return Err(PayloadError::BadKind(other)),
    };
    let publisher = get_hex(&payload[4..12])?;
    Ok(Header {
        kind,
        // 8 hex digits always fit.
        publisher: u32::try_from(publisher).map_err(|_| PayloadError::BadHex)?,
        seq: get_hex(&payload[12..28])?,
        sent_ns: get_hex(&payload[28..44])?,
    })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `value` as `out.len()` lowercase hex digits (the high digits are dropped if it does
/// not fit, which 8 digits for a u32 and 16 for a u64 never do).
fn put_hex(out: &mut [u8], mut value: u64) {
    for slot in out.iter_mut().rev() {
        *slot = HEX[(value & 0xf) as usize];
        value >>= 4;
    }
}

/// Nibble value of each byte; 0xff for anything but `0-9a-f`.
const UNHEX: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut i = 0;
    while i < 16 {
        table[HEX[i] as usize] = i as u8;
        i += 1;
    }
    table
};

fn get_hex(digits: &[u8]) -> Result<u64, PayloadError> {
    let mut value = 0u64;
    let mut bad = 0u8;
    for &d in digits {
        let nibble = UNHEX[d as usize];
        bad |= nibble;
        value = (value << 4) | u64::from(nibble & 0xf);
    }
    // Valid nibbles are below 16: any 0xff shows in the high bits.
    if bad & 0xf0 != 0 {
        return Err(PayloadError::BadHex);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for header in [
            Header {
                kind: Kind::Data,
                publisher: 0,
                seq: 0,
                sent_ns: 0,
            },
            Header {
                kind: Kind::Data,
                publisher: 7,
                seq: 123_456_789,
                sent_ns: 987_654_321_000,
            },
            Header {
                kind: Kind::End,
                publisher: u32::MAX,
                seq: u64::MAX,
                sent_ns: u64::MAX,
            },
        ] {
            let mut buf = template(64);
            write(&mut buf, &header);
            assert_eq!(buf.len(), 64);
            assert_eq!(read(&buf), Ok(header));
            assert!(buf[HEADER_LEN..].iter().all(|&b| b == PAD), "padding untouched");
            assert!(std::str::from_utf8(&buf).is_ok(), "ASCII, so it fits a WebSocket text frame");
        }
    }

    #[test]
    fn the_layout_is_fixed() {
        let mut buf = template(HEADER_LEN);
        write(
            &mut buf,
            &Header {
                kind: Kind::Data,
                publisher: 0x2a,
                seq: 0x10,
                sent_ns: 0xabc,
            },
        );
        assert_eq!(&buf[..], b"FB1D0000002a00000000000000100000000000000abc");
    }

    #[test]
    fn templates_are_at_least_a_header() {
        assert_eq!(template(1).len(), HEADER_LEN);
        assert_eq!(template(1000).len(), 1000);
    }

    #[test]
    fn foreign_payloads_are_refused() {
        let mut good = template(HEADER_LEN);
        write(
            &mut good,
            &Header {
                kind: Kind::End,
                publisher: 1,
                seq: 2,
                sent_ns: 3,
            },
        );
        assert_eq!(read(&good[..HEADER_LEN - 1]), Err(PayloadError::TooShort(HEADER_LEN - 1)));
        assert_eq!(read(b"hello"), Err(PayloadError::TooShort(5)));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(read(&bad), Err(PayloadError::BadMagic));
        let mut bad = good.clone();
        bad[3] = b'Q';
        assert_eq!(read(&bad), Err(PayloadError::BadKind(b'Q')));
        for at in [4, 20, 43] {
            let mut bad = good.clone();
            bad[at] = b'G';
            assert_eq!(read(&bad), Err(PayloadError::BadHex), "byte {at}");
        }
        let mut bad = good.clone();
        bad[13] = b'A'; // uppercase is not what we write
        assert_eq!(read(&bad), Err(PayloadError::BadHex));
    }
}
