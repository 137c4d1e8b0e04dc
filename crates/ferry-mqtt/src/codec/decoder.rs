//! The sans-IO decoder: a stream buffer in, whole packets out.

use bytes::{Buf, Bytes, BytesMut};

use super::connect;
use super::control;
use super::error::DecodeError;
use super::frame;
use super::packet::{ConnAck, Packet, PacketType, Version};
use super::publish;
use super::subscribe;

/// Which end of a connection a [`Decoder`] serves: it decodes what the other end sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The broker: decodes client-to-server packets (CONNECT, SUBSCRIBE, …).
    Server,
    /// A client (tests, `ferry-bench`): decodes server-to-client packets (CONNACK, …).
    Client,
}

impl Role {
    /// The other end.
    pub fn peer(self) -> Role {
        match self {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        }
    }
}

/// Decodes the packets of one connection from its stream buffer.
///
/// ```
/// use bytes::BytesMut;
/// use ferry_mqtt::codec::{Decoder, Packet, Version};
///
/// let mut decoder = Decoder::server(1 << 20);
/// // The CONNECT of client "c" with protocol level 4 (MQTT 3.1.1), then half a PINGREQ.
/// let mut buf = BytesMut::from(&b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c\xc0"[..]);
/// let Some(Packet::Connect(connect)) = decoder.decode(&mut buf)? else { panic!() };
/// assert_eq!((connect.client_id.as_ref(), decoder.version()), ("c", Some(Version::V3_1_1)));
/// assert_eq!(decoder.decode(&mut buf)?, None); // incomplete: read more
/// buf.extend_from_slice(b"\x00");
/// assert_eq!(decoder.decode(&mut buf)?, Some(Packet::PingReq));
/// # Ok::<(), ferry_mqtt::codec::DecodeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Decoder {
    role: Role,
    version: Option<Version>,
    max_packet_size: usize,
    awaiting_connect: bool,
}

impl Decoder {
    /// A broker-side decoder for a new connection: the first packet must be a CONNECT,
    /// whose protocol name and level settle the version for the rest of the connection.
    /// Packets larger than `max_packet_size` bytes in all (fixed header included, as
    /// 5.0's Maximum Packet Size counts) are refused from their fixed header.
    pub fn server(max_packet_size: usize) -> Decoder {
        Decoder {
            role: Role::Server,
            version: None,
            max_packet_size,
            awaiting_connect: true,
        }
    }

    /// A broker-side decoder for a connection whose CONNECT has been handled.
    pub fn server_with_version(version: Version, max_packet_size: usize) -> Decoder {
        Decoder {
            role: Role::Server,
            version: Some(version),
            max_packet_size,
            awaiting_connect: false,
        }
    }

    /// A client-side decoder for a connection that sent a CONNECT for `version`.
    pub fn client(version: Version, max_packet_size: usize) -> Decoder {
        Decoder {
            role: Role::Client,
            version: Some(version),
            max_packet_size,
            awaiting_connect: false,
        }
    }

    /// Which end this decoder serves.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The connection's protocol version, once known: set by the CONNECT's protocol name
    /// and level even when the rest of that CONNECT then fails to decode.
    pub fn version(&self) -> Option<Version> {
        self.version
    }

    /// The largest packet accepted, in bytes.
    pub fn max_packet_size(&self) -> usize {
        self.max_packet_size
    }

    /// Changes the largest packet accepted.
    pub fn set_max_packet_size(&mut self, max_packet_size: usize) {
        self.max_packet_size = max_packet_size;
    }

    /// Takes the next packet off the front of `buf`.
    ///
    /// `Ok(None)` means `buf` does not hold a whole packet yet (nothing is consumed; read
    /// more and call again). The fixed header is checked as soon as it is in, so a wrong
    /// packet type, wrong flags or an oversized remaining length fail before the rest of
    /// the packet is buffered. This method does not reserve room for the announced
    /// packet: memory grows only with bytes actually received.
    ///
    /// An error means the connection must close (after the CONNACK of
    /// [`Decoder::refusal`], or a 5.0 DISCONNECT with [`DecodeError::reason_code`]); the
    /// decoder is not meant to be used after one.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let v5 = self.version == Some(Version::V5);
        let Some(&byte1) = buf.first() else {
            return Ok(None);
        };
        self.check_type(frame::packet_type(byte1, v5)?)?;
        let Some(header) = frame::parse(buf, v5)? else {
            return Ok(None);
        };
        let size = header.frame_len();
        if size > self.max_packet_size {
            if self.version.is_none() {
                // An oversized CONNECT: its protocol name and level (at most the first 9
                // bytes of its body) say which CONNACK can refuse it, so wait for them.
                let start = buf.len().min(header.header_len);
                let have = &buf[start..buf.len().min(header.header_len + 9)];
                match connect::detect(&Bytes::copy_from_slice(have)) {
                    Ok(version) => self.version = Some(version),
                    Err(_) if have.len() < 9 => return Ok(None),
                    Err(_) => {}
                }
            }
            return Err(DecodeError::PacketTooLarge {
                size,
                max: self.max_packet_size,
            });
        }
        if buf.len() < size {
            return Ok(None);
        }
        let mut frame = buf.split_to(size);
        frame.advance(header.header_len);
        let body = frame.freeze();
        let sender = self.role.peer();
        let version = match self.version {
            Some(version) => version,
            None => {
                // Only a CONNECT gets here (check_type): it settles the version.
                let version = connect::detect(&body)?;
                self.version = Some(version);
                version
            }
        };
        let packet = match header.packet_type {
            PacketType::Connect => {
                let connect = connect::decode_connect(body)?;
                self.awaiting_connect = false;
                Packet::Connect(connect)
            }
            PacketType::ConnAck => Packet::ConnAck(connect::decode_connack(body, version)?),
            PacketType::Publish => Packet::Publish(publish::decode_publish(header.flags, body, version, sender)?),
            PacketType::PubAck => Packet::PubAck(publish::decode_ack(PacketType::PubAck, body, version, sender)?),
            PacketType::PubRec => Packet::PubRec(publish::decode_ack(PacketType::PubRec, body, version, sender)?),
            PacketType::PubRel => Packet::PubRel(publish::decode_ack(PacketType::PubRel, body, version, sender)?),
            PacketType::PubComp => Packet::PubComp(publish::decode_ack(PacketType::PubComp, body, version, sender)?),
            PacketType::Subscribe => Packet::Subscribe(subscribe::decode_subscribe(body, version, sender)?),
            PacketType::SubAck => Packet::SubAck(subscribe::decode_suback(body, version, sender)?),
            PacketType::Unsubscribe => Packet::Unsubscribe(subscribe::decode_unsubscribe(body, version, sender)?),
            PacketType::UnsubAck => Packet::UnsubAck(subscribe::decode_unsuback(body, version, sender)?),
            PacketType::PingReq => {
                control::decode_empty(body)?;
                Packet::PingReq
            }
            PacketType::PingResp => {
                control::decode_empty(body)?;
                Packet::PingResp
            }
            PacketType::Disconnect => Packet::Disconnect(control::decode_disconnect(body, version, sender)?),
            PacketType::Auth => Packet::Auth(control::decode_auth(body, sender)?),
        };
        Ok(Some(packet))
    }

    /// Refuses packets the peer may not send at this point, from the first byte alone.
    fn check_type(&self, packet: PacketType) -> Result<(), DecodeError> {
        if self.awaiting_connect {
            return match packet {
                PacketType::Connect => Ok(()),
                other => Err(DecodeError::FirstPacketNotConnect(other)),
            };
        }
        let allowed = match self.role {
            Role::Server => packet.sent_by_client() && packet != PacketType::Connect,
            Role::Client => packet.sent_by_server(),
        };
        if allowed {
            Ok(())
        } else {
            Err(DecodeError::UnexpectedPacket(packet))
        }
    }

    /// The CONNACK to send before closing when `err` came from decoding the connection's
    /// CONNECT, with the version to encode it in: 3.1.1 requires one for an unsupported
    /// protocol level (return code 0x01) and a rejected client identifier (0x02); 5.0
    /// allows one with the reason code of any CONNECT error (§4.13.1). `None`: just close.
    pub fn refusal(&self, err: &DecodeError) -> Option<(Version, ConnAck)> {
        if self.role != Role::Server || !self.awaiting_connect {
            return None;
        }
        err.connack_refusal(self.version)
            .map(|(version, code)| (version, ConnAck::refused(code)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{encode, Ack, ReasonCode};
    use super::*;

    const CONNECT_V4: &[u8] = b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c";

    #[test]
    fn bytes_arrive_one_at_a_time() {
        let mut all = CONNECT_V4.to_vec();
        all.extend_from_slice(&[0x32, 0x06, 0x00, 0x01, b'a', 0x00, 0x01, b'x', 0xC0, 0x00]);
        let mut dec = Decoder::server(1024);
        let mut buf = BytesMut::new();
        let mut packets = Vec::new();
        for &b in &all {
            buf.extend_from_slice(&[b]);
            while let Some(p) = dec.decode(&mut buf).unwrap() {
                packets.push(p.packet_type());
            }
        }
        assert_eq!(packets, [PacketType::Connect, PacketType::Publish, PacketType::PingReq]);
        assert!(buf.is_empty());
    }

    #[test]
    fn incomplete_consumes_nothing() {
        let mut dec = Decoder::server(1024);
        let mut buf = BytesMut::from(&CONNECT_V4[..10]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert_eq!(&buf[..], &CONNECT_V4[..10]);
        assert_eq!(dec.version(), None);
    }

    #[test]
    fn an_oversized_connect_waits_for_its_version_then_fails() {
        // A 5.0 CONNECT announcing 100,000 bytes (remaining length a0 8d 06) to a decoder
        // that takes 100: refused once its protocol name and level are in, which makes
        // the refusal a 5.0 CONNACK 0x95 (MQTT 5 §3.1.2.2, §4.13.1).
        let head = [0x10, 0xa0, 0x8d, 0x06];
        let mut dec = Decoder::server(100);
        let mut buf = BytesMut::from(&head[..]);
        assert_eq!(dec.decode(&mut buf), Ok(None), "the level is not in yet");
        buf.extend_from_slice(&[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05]);
        assert_eq!(dec.decode(&mut buf), Err(DecodeError::PacketTooLarge { size: 100_004, max: 100 }));
        assert_eq!(dec.version(), Some(Version::V5));
        let refusal = DecodeError::PacketTooLarge { size: 100_004, max: 100 }.connack_refusal(dec.version());
        assert_eq!(refusal, Some((Version::V5, ReasonCode::PACKET_TOO_LARGE)));
        // A 3.1.1 one: the version is known, and 3.1.1 has no CONNACK code for it.
        let mut dec = Decoder::server(100);
        let mut buf = BytesMut::from(&head[..]);
        buf.extend_from_slice(&[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04]);
        assert!(matches!(dec.decode(&mut buf), Err(DecodeError::PacketTooLarge { .. })));
        assert_eq!(dec.version(), Some(Version::V3_1_1));
    }

    #[test]
    fn oversized_packets_fail_from_the_fixed_header() {
        let mut dec = Decoder::server_with_version(Version::V3_1_1, 100);
        // A PUBLISH announcing 2,097,152 bytes: refused after its 5 header bytes.
        let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x80, 0x01][..]);
        assert_eq!(dec.decode(&mut buf), Err(DecodeError::PacketTooLarge { size: 2_097_157, max: 100 }));
        // The limit counts the whole packet: 100 bytes pass, 101 do not.
        let mut dec = Decoder::server_with_version(Version::V3_1_1, 100);
        let mut ok = vec![0x30, 98, 0x00, 0x01, b'a'];
        ok.resize(100, b'x');
        assert!(dec.decode(&mut BytesMut::from(&ok[..])).unwrap().is_some());
        let mut too_big = vec![0x30, 99, 0x00, 0x01, b'a'];
        too_big.resize(101, b'x');
        assert_eq!(
            dec.decode(&mut BytesMut::from(&too_big[..2])),
            Err(DecodeError::PacketTooLarge { size: 101, max: 100 })
        );
    }

    #[test]
    fn the_first_packet_must_be_connect() {
        let mut dec = Decoder::server(1024);
        // Known from the first byte.
        assert_eq!(
            dec.decode(&mut BytesMut::from(&[0x30][..])),
            Err(DecodeError::FirstPacketNotConnect(PacketType::Publish))
        );
        assert_eq!(dec.refusal(&DecodeError::FirstPacketNotConnect(PacketType::Publish)), None);
    }

    #[test]
    fn a_second_connect_is_a_protocol_error() {
        let mut dec = Decoder::server(1024);
        let mut buf = BytesMut::from(CONNECT_V4);
        buf.extend_from_slice(CONNECT_V4);
        assert!(dec.decode(&mut buf).unwrap().is_some());
        let err = dec.decode(&mut buf).unwrap_err();
        assert_eq!(err, DecodeError::UnexpectedPacket(PacketType::Connect));
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        assert_eq!(dec.refusal(&err), None);
    }

    #[test]
    fn packets_in_the_wrong_direction_are_refused() {
        let mut server = Decoder::server_with_version(Version::V5, 1024);
        for bytes in [
            &[0x20, 0x03, 0, 0, 0][..],
            &[0x90, 0x04, 0, 1, 0, 0],
            &[0xB0, 0x04, 0, 1, 0, 0],
            &[0xD0, 0x00],
        ] {
            assert!(
                matches!(server.decode(&mut BytesMut::from(bytes)), Err(DecodeError::UnexpectedPacket(_))),
                "{bytes:02x?}"
            );
        }
        let mut client = Decoder::client(Version::V5, 1024);
        for bytes in [
            CONNECT_V4,
            &[0x82, 0x06, 0, 1, 0, 1, b'a', 0],
            &[0xA2, 0x05, 0, 1, 0, 1, b'a'],
            &[0xC0, 0x00],
        ] {
            assert!(
                matches!(client.decode(&mut BytesMut::from(bytes)), Err(DecodeError::UnexpectedPacket(_))),
                "{bytes:02x?}"
            );
        }
        // Both ways: PUBACK.
        assert!(client.decode(&mut BytesMut::from(&[0x40, 0x02, 0, 1][..])).is_ok());
    }

    #[test]
    fn refusals_for_connect_errors() {
        // MQTT level 3 (3.1's level under 3.1.1's name): CONNACK 0x01 in 3.x form.
        let mut dec = Decoder::server(1024);
        let err = dec
            .decode(&mut BytesMut::from(&b"\x10\x0d\x00\x04MQTT\x03\x02\x00\x3c\x00\x01c"[..]))
            .unwrap_err();
        assert_eq!(err, DecodeError::UnsupportedProtocolVersion { level: 3 });
        let (version, connack) = dec.refusal(&err).unwrap();
        let mut out = BytesMut::new();
        encode(&Packet::ConnAck(connack), version, &mut out).unwrap();
        assert_eq!(&out[..], [0x20, 0x02, 0x00, 0x01]);
        // A malformed 5.0 CONNECT: CONNACK 0x81 in 5.0 form.
        let mut dec = Decoder::server(1024);
        let err = dec
            .decode(&mut BytesMut::from(&b"\x10\x0d\x00\x04MQTT\x05\x03\x00\x3c\x00\x00\x00"[..]))
            .unwrap_err();
        assert_eq!(err, DecodeError::ConnectReservedFlag);
        assert_eq!(dec.version(), Some(Version::V5));
        let (version, connack) = dec.refusal(&err).unwrap();
        let mut out = BytesMut::new();
        encode(&Packet::ConnAck(connack), version, &mut out).unwrap();
        assert_eq!(&out[..], [0x20, 0x03, 0x00, 0x81, 0x00]);
        // A malformed 3.1.1 CONNECT: no CONNACK.
        let mut dec = Decoder::server(1024);
        let err = dec
            .decode(&mut BytesMut::from(&b"\x10\x0d\x00\x04MQTT\x04\x03\x00\x3c\x00\x01c"[..]))
            .unwrap_err();
        assert_eq!(dec.refusal(&err), None);
        // Errors after the CONNECT never get a CONNACK.
        let dec = Decoder::server_with_version(Version::V5, 1024);
        assert_eq!(dec.refusal(&DecodeError::Truncated), None);
    }

    #[test]
    fn encode_then_decode_a_stream() {
        let mut out = BytesMut::new();
        for pkid in 1..=3 {
            encode(&Packet::PubAck(Ack::new(pkid)), Version::V5, &mut out).unwrap();
        }
        let mut dec = Decoder::server_with_version(Version::V5, 1024);
        for pkid in 1..=3 {
            assert_eq!(dec.decode(&mut out), Ok(Some(Packet::PubAck(Ack::new(pkid)))));
        }
        assert_eq!(dec.decode(&mut out), Ok(None));
    }
}
