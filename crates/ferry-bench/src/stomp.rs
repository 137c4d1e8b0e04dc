//! STOMP client sessions on Ferry's own codec (`ferry_stomp::codec`): CONNECT,
//! SUBSCRIBE with a receipt, SEND (with or without receipts), MESSAGE and ACK.

use bytes::{Bytes, BytesMut};
use ferry_stomp::codec::{encode, encode_head, Command, Decoded, Decoder, Frame, Limits, Version, FRAME_END};

use crate::cli::AckMode;
use crate::client::{read_more, stomp_destination, write_now, ClientError, SessionSpec};
use crate::outbox::Framing;
use crate::transport::Conn;

/// The subscription id and receipt of the one SUBSCRIBE a session sends.
const SUB_ID: &str = "0";
const SUB_RECEIPT: &str = "sub-0";

/// Sends CONNECT (STOMP 1.2, no heart-beats), waits for CONNECTED, then subscribes to
/// `subscribe_to` (MQTT syntax, mapped to a `/topic/` destination) with a receipt and
/// waits for it. Bytes read past the last answer stay in `buf`.
pub(crate) async fn open(
    conn: &mut Conn,
    buf: &mut BytesMut,
    spec: &SessionSpec,
    subscribe_to: Option<&str>,
    publish_to: &str,
) -> Result<(StompTx, StompRx), ClientError> {
    let framing = conn.outbox.framing();
    let mut scratch = BytesMut::new();
    let mut out = BytesMut::new();
    let connect = Frame::new(Command::Connect)
        .with_header("accept-version", "1.2")
        .with_header("host", "/")
        .with_header("heart-beat", "0,0");
    push(&connect, Version::V1_2, framing, &mut scratch, &mut out)?;
    write_now(conn, &out).await?;
    let limits = Limits {
        max_body: 16 << 20,
        ..Limits::default()
    };
    let mut decoder = Decoder::new(limits);
    let connected = next_frame(conn, &mut decoder, buf).await?;
    if connected.command != Command::Connected {
        return Err(ClientError::Unexpected(format!("{} before CONNECTED", connected.command)));
    }
    let version = connected.header("version").and_then(Version::from_token).unwrap_or(Version::V1_0);
    decoder.set_version(version);
    if let Some(filter) = subscribe_to {
        let subscribe = Frame::new(Command::Subscribe)
            .with_header("id", SUB_ID)
            .with_header("destination", stomp_destination(filter))
            .with_header("ack", spec.ack.header())
            .with_header("receipt", SUB_RECEIPT);
        out.clear();
        push(&subscribe, version, framing, &mut scratch, &mut out)?;
        write_now(conn, &out).await?;
        let receipt = next_frame(conn, &mut decoder, buf).await?;
        if receipt.command != Command::Receipt || receipt.header("receipt-id") != Some(SUB_RECEIPT) {
            return Err(ClientError::Unexpected(format!(
                "{} instead of the SUBSCRIBE receipt",
                receipt.command
            )));
        }
    }
    let tx = StompTx {
        version,
        destination: stomp_destination(publish_to),
        receipts: spec.receipts,
        next_receipt: 0,
        head: None,
        framing,
        scratch: BytesMut::new(),
    };
    let rx = StompRx {
        decoder,
        version,
        ack: spec.ack,
        framing,
        scratch,
    };
    Ok((tx, rx))
}

/// The next frame (heart-beats skipped); an ERROR frame is a refusal.
async fn next_frame(conn: &mut Conn, decoder: &mut Decoder, buf: &mut BytesMut) -> Result<Frame, ClientError> {
    loop {
        match decoder.decode(buf).map_err(|e| ClientError::Decode(e.to_string()))? {
            Some(Decoded::Frame(frame)) if frame.command == Command::Error => return Err(refusal(&frame)),
            Some(Decoded::Frame(frame)) => return Ok(frame),
            Some(Decoded::HeartBeat) => continue,
            None => read_more(conn, buf).await?,
        }
    }
}

fn refusal(error: &Frame) -> ClientError {
    let message = error.header("message").unwrap_or("");
    let body = String::from_utf8_lossy(&error.body);
    ClientError::Refused(format!("ERROR {message} {}", body.trim()))
}

/// Encodes `frame` into `scratch`, then frames it onto `out`.
fn push(frame: &Frame, version: Version, framing: Framing, scratch: &mut BytesMut, out: &mut BytesMut) -> Result<(), ClientError> {
    scratch.clear();
    encode(frame, version, scratch).map_err(|e| ClientError::Encode(e.to_string()))?;
    framing.push(out, scratch);
    scratch.clear();
    Ok(())
}

/// The publishing side of a STOMP session.
pub(crate) struct StompTx {
    version: Version,
    destination: String,
    receipts: bool,
    next_receipt: u64,
    /// The encoded head of a receipt-less SEND for a body of this length.
    head: Option<(usize, BytesMut)>,
    framing: Framing,
    scratch: BytesMut,
}

impl StompTx {
    /// Appends a SEND of `payload` to `out`; true when it asks for a receipt. Without
    /// receipts every SEND has the same head, encoded once by the codec and reused.
    pub(crate) fn publish(&mut self, payload: Bytes, out: &mut BytesMut) -> Result<bool, ClientError> {
        if self.receipts {
            self.next_receipt += 1;
            let send = Frame::new(Command::Send)
                .with_header("destination", self.destination.as_str())
                .with_header("receipt", self.next_receipt.to_string())
                .with_body(payload);
            push(&send, self.version, self.framing, &mut self.scratch, out)?;
            return Ok(true);
        }
        if self.head.as_ref().is_none_or(|(len, _)| *len != payload.len()) {
            let send = Frame::new(Command::Send)
                .with_header("destination", self.destination.as_str())
                .with_body(payload.clone());
            let mut head = BytesMut::new();
            encode_head(&send, self.version, &mut head).map_err(|e| ClientError::Encode(e.to_string()))?;
            self.head = Some((payload.len(), head));
        }
        if let Some((_, head)) = &self.head {
            self.scratch.clear();
            self.scratch.extend_from_slice(head);
            self.scratch.extend_from_slice(&payload);
            self.scratch.extend_from_slice(FRAME_END);
            self.framing.push(out, &mut self.scratch);
            self.scratch.clear();
        }
        Ok(false)
    }

    /// Appends a DISCONNECT to `out`.
    pub(crate) fn disconnect(&mut self, out: &mut BytesMut) {
        // A DISCONNECT without headers always encodes.
        let _ = push(&Frame::new(Command::Disconnect), self.version, self.framing, &mut self.scratch, out);
    }
}

/// The receiving side of a STOMP session.
pub(crate) struct StompRx {
    decoder: Decoder,
    version: Version,
    ack: AckMode,
    framing: Framing,
    scratch: BytesMut,
}

impl StompRx {
    /// See [`crate::client::Rx::input`]. `ack: client` sends one cumulative ACK for the
    /// last message of each call, `client-individual` one per message.
    pub(crate) fn input(
        &mut self,
        buf: &mut BytesMut,
        replies: &mut BytesMut,
        on_message: &mut dyn FnMut(&[u8]),
    ) -> Result<u64, ClientError> {
        let mut confirmed = 0;
        let mut last: Option<Frame> = None;
        while let Some(decoded) = self.decoder.decode(buf).map_err(|e| ClientError::Decode(e.to_string()))? {
            let Decoded::Frame(frame) = decoded else { continue };
            match frame.command {
                Command::Message => {
                    on_message(&frame.body);
                    match self.ack {
                        AckMode::Auto => {}
                        AckMode::ClientIndividual => self.push_ack(&frame, replies)?,
                        AckMode::Client => last = Some(frame),
                    }
                }
                Command::Receipt => confirmed += 1,
                Command::Error => return Err(refusal(&frame)),
                other => return Err(ClientError::Unexpected(other.to_string())),
            }
        }
        if let Some(frame) = last {
            self.push_ack(&frame, replies)?;
        }
        Ok(confirmed)
    }

    /// ACK for `message`: by its `ack` header in 1.2, by subscription and message-id before.
    fn push_ack(&mut self, message: &Frame, replies: &mut BytesMut) -> Result<(), ClientError> {
        let missing = |h: &str| ClientError::Unexpected(format!("MESSAGE without {h} header"));
        let ack = match self.version {
            Version::V1_2 => {
                let id = message.header("ack").ok_or_else(|| missing("ack"))?;
                Frame::new(Command::Ack).with_header("id", id)
            }
            Version::V1_1 => {
                let id = message.header("message-id").ok_or_else(|| missing("message-id"))?;
                let sub = message.header("subscription").unwrap_or(SUB_ID);
                Frame::new(Command::Ack)
                    .with_header("subscription", sub)
                    .with_header("message-id", id)
            }
            Version::V1_0 => {
                let id = message.header("message-id").ok_or_else(|| missing("message-id"))?;
                Frame::new(Command::Ack).with_header("message-id", id)
            }
        };
        push(&ack, self.version, self.framing, &mut self.scratch, replies)
    }
}
