//! `[websocket.compression]`: permessage-deflate (RFC 7692) on the WebSocket listeners.

use serde::{Deserialize, Serialize};

/// Whether and how WebSocket messages are compressed.
///
/// Off by default, as on EMQX, Artemis, HiveMQ and NATS: compression trades CPU for
/// bytes on the wire, and pays off on text (STOMP frames, JSON), not on small binary
/// MQTT payloads. When on, the default answer is the no-context-takeover profile, which
/// keeps no compression state per connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    /// Accept a client's `permessage-deflate` offer. `false`: the extension is never
    /// negotiated and messages go out as they are.
    pub enabled: bool,
    /// Deflate level, 0 (store) to 9 (smallest, slowest); 1 is the fastest that
    /// compresses, and the level most servers should use.
    pub level: u32,
    /// Messages shorter than this many bytes go out uncompressed (RFC 7692 lets a sender
    /// choose per message): a reset compressor gains little on them and costs the most.
    pub threshold: usize,
    /// Let a connection keep its compression contexts from message to message (context
    /// takeover) when its client allows it: better ratios on chatty connections, at
    /// about 400 KiB of memory per connection. Off: every connection gets
    /// `server_no_context_takeover; client_no_context_takeover`.
    pub context_takeover: bool,
    /// With `context_takeover`, the most dedicated contexts (one per direction a
    /// connection takes over) kept by all connections together; beyond it new
    /// connections get the no-context-takeover answer.
    pub max_takeover_contexts: usize,
    /// The most bytes a connection's first message may inflate to (it carries the MQTT
    /// or STOMP CONNECT, from a client not yet authenticated); later messages may
    /// inflate up to `websocket.max_message_size`.
    pub max_first_message: usize,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            level: 1,
            threshold: 256,
            context_takeover: false,
            max_takeover_contexts: 1000,
            max_first_message: 64 * 1024,
        }
    }
}

impl CompressionConfig {
    /// The deflate level, capped at 9 (a larger value in the file means "smallest").
    pub fn level(&self) -> u32 {
        self.level.min(9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct File {
        compression: CompressionConfig,
    }

    #[test]
    fn every_key_has_a_default() {
        let file: File = toml::from_str("[compression]\n").unwrap();
        assert_eq!(file.compression, CompressionConfig::default());
        assert!(!file.compression.enabled);
        assert_eq!((file.compression.level, file.compression.threshold), (1, 256));
        assert!(!file.compression.context_takeover);
        assert_eq!(file.compression.max_takeover_contexts, 1000);
    }

    #[test]
    fn keys_parse_and_unknown_keys_are_refused() {
        let file: File = toml::from_str(
            "[compression]\nenabled = true\nlevel = 12\nthreshold = 0\ncontext_takeover = true\nmax_takeover_contexts = 5\n",
        )
        .unwrap();
        let c = file.compression;
        assert!(c.enabled && c.context_takeover);
        assert_eq!((c.level(), c.threshold, c.max_takeover_contexts), (9, 0, 5));
        assert!(toml::from_str::<File>("[compression]\nenable = true\n").is_err());
    }
}
