//! Raw MQTT bytes, written here independently of the broker's codec: the string
//! encoding, a fixed header with its remaining length, and one packet read off a stream.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// An MQTT UTF-8 string: a two-byte big-endian length, then the bytes.
pub fn string(s: &str) -> Vec<u8> {
    let mut v = u16::try_from(s.len()).expect("a string under 64 KiB").to_be_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

/// `n` as a variable byte integer (MQTT 5 §1.5.5), appended to `out`.
pub fn varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n % 128) as u8;
        n /= 128;
        out.push(if n > 0 { byte | 0x80 } else { byte });
        if n == 0 {
            return;
        }
    }
}

/// A packet: the first byte (type and flags), the remaining length as a variable byte
/// integer, then `body`.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![first];
    varint(body.len(), &mut v);
    v.extend_from_slice(body);
    v
}

/// The next packet: (first byte, body). `None` if none starts within 5 s or the stream
/// ends inside one.
pub async fn read_packet<S: AsyncRead + Unpin>(s: &mut S) -> Option<(u8, Vec<u8>)> {
    let mut first = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut first))
        .await
        .ok()?
        .ok()?;
    let (mut len, mut mul) = (0usize, 1usize);
    loop {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.ok()?;
        len += usize::from(b[0] & 127) * mul;
        mul *= 128;
        if b[0] & 128 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    Some((first[0], body))
}
