//! The one error type of the core. The Python binding turns every variant into
//! `agentgateway._core.CoreError` (a `ValueError`) in one place.

use std::fmt;

use crate::error_kind::ErrorKind;

/// Why the core could not translate an upstream response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// No translator is registered under this provider name.
    UnknownProvider(String),
    /// No client API is known under this name (`"openai"`, `"anthropic"`).
    UnknownClientApi(String),
    /// No error kind of the vocabulary ([`ErrorKind`]) has this name.
    UnknownErrorKind(String),
    /// An upstream payload is not valid JSON.
    InvalidJson {
        /// Which payload: "stream chunk", "response body", ...
        what: &'static str,
        /// serde_json's description, with line and column.
        detail: String,
    },
    /// An upstream payload is valid JSON but not an object.
    NotAnObject {
        /// Which payload: "stream chunk", "response body", ...
        what: &'static str,
    },
    /// An upstream event grew past the size limit without ending.
    EventTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The upstream's HTTP/1.1 response is malformed or cut short.
    Http(String),
    /// A successful HTTP answer whose body is the provider's error (e.g. Anthropic's
    /// `{"type": "error", ...}` with status 200): what the provider said, and the HTTP status its
    /// error type stands for.
    Upstream {
        status: u16,
        code: String,
        message: String,
    },
    /// The upstream's AWS event stream is malformed (bad CRC, bad length, bad headers).
    EventStream(String),
    /// A bug in the core (for instance a caught panic, `guard.rs`); the call cannot go on.
    Internal {
        /// What failed: "the SigV4 signer", "the Bedrock eventstream translator", ...
        what: &'static str,
        /// Why (the panic's message).
        detail: String,
    },
}

impl CoreError {
    #[cold]
    #[inline(never)]
    pub(crate) fn invalid_utf8(what: &'static str, err: &std::str::Utf8Error) -> Self {
        Self::InvalidJson {
            what,
            detail: format!("invalid UTF-8 at byte {}", err.valid_up_to()),
        }
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn from_json(what: &'static str, err: &serde_json::Error) -> Self {
        if err.is_data() {
            // Syntactically valid JSON of the wrong type at the top level.
            Self::NotAnObject { what }
        } else {
            Self::InvalidJson {
                what,
                detail: err.to_string(),
            }
        }
    }

    /// The kind of error the client is told about when this one ends a stream or a response.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidJson { .. }
            | Self::NotAnObject { .. }
            | Self::Http(_)
            | Self::EventStream(_) => ErrorKind::UpstreamProtocolError,
            Self::EventTooLarge { .. } => ErrorKind::EventTooLarge,
            Self::Upstream { .. } => ErrorKind::UpstreamReported,
            Self::UnknownProvider(_)
            | Self::UnknownClientApi(_)
            | Self::UnknownErrorKind(_)
            | Self::Internal { .. } => ErrorKind::Internal,
        }
    }

    /// An internal error (a bug in the core): `what` failed, `detail` says how.
    #[cold]
    #[inline(never)]
    pub fn internal(what: &'static str, detail: impl fmt::Display) -> Self {
        Self::Internal {
            what,
            detail: detail.to_string(),
        }
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownProvider(name) => write!(f, "unknown provider {name:?}"),
            Self::UnknownClientApi(name) => write!(f, "unknown client API {name:?}"),
            Self::UnknownErrorKind(name) => write!(f, "unknown error kind {name:?}"),
            Self::InvalidJson { what, detail } => {
                write!(f, "upstream {what} is not valid JSON: {detail}")
            }
            Self::NotAnObject { what } => write!(f, "upstream {what} is not a JSON object"),
            Self::EventTooLarge { limit } => {
                write!(f, "upstream stream event larger than {limit} bytes")
            }
            Self::Http(detail) | Self::EventStream(detail) => write!(f, "{detail}"),
            Self::Upstream { message, .. } => write!(f, "{message}"),
            Self::Internal { what, detail } => write!(f, "{what} failed: {detail}"),
        }
    }
}

impl std::error::Error for CoreError {}
