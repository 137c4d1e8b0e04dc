//! Arbitrary bytes into `ferry_mqtt::codec`'s decoder, in every role and version.
//!
//! The first input byte picks the decoder (its low three bits) and the size of the
//! chunks the rest is fed in (its high bits), so that "incomplete, read more" is
//! exercised at every offset. For every packet decoded, the target checks that:
//!
//! * it re-encodes, to exactly `encoded_len` bytes, and those bytes decode to the same
//!   packet with nothing left over, and re-encode to the same bytes;
//! * mqttbytes, the independent parser (`codec::oracle`), reads the original bytes and
//!   the re-encoded ones the same way, where it can be trusted;
//!
//! and for every error, that its reason code and CONNACK refusal can be produced and
//! encoded. Any panic is a finding.

#![no_main]

use bytes::BytesMut;
use ferry_mqtt::codec::{encode_to_bytes, encoded_len, oracle, Decoder, Packet, Role, Version};
use libfuzzer_sys::fuzz_target;

const MAX_PACKET_SIZE: usize = 64 * 1024;

fn decoder(mode: u8) -> Decoder {
    match mode & 0b111 {
        0 | 7 => Decoder::server(MAX_PACKET_SIZE),
        1 => Decoder::server_with_version(Version::V3_1, MAX_PACKET_SIZE),
        2 => Decoder::server_with_version(Version::V3_1_1, MAX_PACKET_SIZE),
        3 => Decoder::server_with_version(Version::V5, MAX_PACKET_SIZE),
        4 => Decoder::client(Version::V3_1, MAX_PACKET_SIZE),
        5 => Decoder::client(Version::V3_1_1, MAX_PACKET_SIZE),
        _ => Decoder::client(Version::V5, MAX_PACKET_SIZE),
    }
}

/// A fresh decoder in the state `dec` was in before it decoded `packet`.
fn fresh(dec: &Decoder, version: Version, packet: &Packet) -> Decoder {
    match (dec.role(), packet) {
        (Role::Server, Packet::Connect(_)) => Decoder::server(MAX_PACKET_SIZE),
        (Role::Server, _) => Decoder::server_with_version(version, MAX_PACKET_SIZE),
        (Role::Client, _) => Decoder::client(version, MAX_PACKET_SIZE),
    }
}

fn check_packet(dec: &Decoder, frame: &[u8], packet: &Packet) {
    let version = dec.version().expect("a decoded packet settles the version");
    let bytes = match encode_to_bytes(packet, version) {
        Ok(bytes) => bytes,
        Err(e) => panic!("decoded {packet:?} but cannot encode it for {version}: {e}"),
    };
    assert_eq!(encoded_len(packet, version), Ok(bytes.len()));
    let mut buf = BytesMut::from(&bytes[..]);
    let mut again = fresh(dec, version, packet);
    match again.decode(&mut buf) {
        Ok(Some(back)) => assert_eq!(&back, packet, "round trip changed the packet"),
        other => panic!("re-encoded {packet:?} as {bytes:02x?}, which decodes to {other:?}"),
    }
    assert!(buf.is_empty(), "re-encoding left {} extra bytes", buf.len());
    assert_eq!(
        encode_to_bytes(packet, version).ok(),
        Some(bytes.clone()),
        "encoding is not deterministic"
    );
    if let Err(e) = oracle::check(frame, version, packet) {
        panic!("oracle on input {frame:02x?}: {e}");
    }
    if let Err(e) = oracle::check(&bytes, version, packet) {
        panic!("oracle on re-encoded {bytes:02x?}: {e}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let chunk = 1 + usize::from(mode >> 3) * 8;
    let mut dec = decoder(mode);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    loop {
        let pending = buf.len();
        match dec.decode(&mut buf) {
            Ok(Some(packet)) => {
                let start = fed - pending;
                let frame = &input[start..start + (pending - buf.len())];
                check_packet(&dec, frame, &packet);
            }
            Ok(None) => {
                assert_eq!(buf.len(), pending, "an incomplete packet must not consume bytes");
                if fed == input.len() {
                    break;
                }
                let next = (fed + chunk).min(input.len());
                buf.extend_from_slice(&input[fed..next]);
                fed = next;
            }
            Err(e) => {
                let _ = e.reason_code();
                let _ = e.to_string();
                if let Some((version, connack)) = dec.refusal(&e) {
                    if let Err(err) = encode_to_bytes(&Packet::ConnAck(connack), version) {
                        panic!("refusal for {e} cannot be encoded: {err}");
                    }
                }
                break;
            }
        }
    }
});
