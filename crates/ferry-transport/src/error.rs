//! The transport's errors: what can stop the broker from starting.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A listener could not bind its address.
    #[error("listener `{listener}` cannot bind {addr}")]
    Bind {
        /// The listener's name (`ws`, `mqtt`, …).
        listener: &'static str,
        /// The address from the configuration.
        addr: SocketAddr,
        /// The operating system's answer.
        source: std::io::Error,
    },
    /// A PEM file could not be read or holds nothing usable.
    #[error("TLS: cannot load {what} from {}: {reason}", path.display())]
    Pem {
        /// What the file was meant to hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The TLS settings do not fit together, or rustls refused them.
    #[error("TLS: {0}")]
    Tls(String),
}
