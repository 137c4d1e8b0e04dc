//! The admin crate's errors.

/// Why the admin API cannot start or serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The API key file is unusable.
    #[error("admin API keys: {0}")]
    Keys(String),
    /// The admin listener is bound to a non-loopback address without API keys.
    #[error(
        "the admin listener binds {0}, which is not a loopback address, and [admin] api_keys_file names no keys: \
         refusing to serve an unauthenticated admin API (bind it to 127.0.0.1, or set admin.api_keys_file)"
    )]
    PublicWithoutKeys(std::net::SocketAddr),
}
