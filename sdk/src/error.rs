//! Errors shared across the SDK: the boxed source error, and the communication
//! contract's errors (the event inbox returns them too).

/// A boxed error, the source of the `Other`/`Unavailable` variants below.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why [`crate::CommunicationPlugin::send_message`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SendMessageError {
    /// The recipient does not exist or cannot receive.
    #[error("unknown recipient")]
    UnknownRecipient,
    /// The message was refused (too large, a content type not supported, …).
    #[error("message refused: {0}")]
    Rejected(String),
    /// The transport is not available; retry later.
    #[error("transport unavailable: {0}")]
    Unavailable(#[source] BoxError),
}

/// Why [`crate::CommunicationPlugin::receive_messages`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveMessagesError {
    /// The transport is not available; retry later.
    #[error("transport unavailable: {0}")]
    Unavailable(#[source] BoxError),
}
