//! One error vocabulary (DESIGN.md, "One error vocabulary"; issue 15): every error the gateway
//! sends a client, as a whole response or as the last event of a stream, from the Rust core or from
//! Python (`agentgateway.errors` reads this table through `_core.error_kind`), has its HTTP status,
//! its OpenAI `type` and its `code` from here, so a fault reads the same whatever the provider.
//!
//! | kind                      | status | `type`                  | `code`                    |
//! |---------------------------|--------|-------------------------|---------------------------|
//! | `invalid_request`         | 400    | `invalid_request_error` | null (or the field's own) |
//! | `model_not_found`         | 404    | `invalid_request_error` | `model_not_found`         |
//! | `upstream_error` (1)      | 502    | `server_error`          | `upstream_error`          |
//! | `upstream_unreachable`    | 502    | `server_error`          | `upstream_unreachable`    |
//! | `upstream_timeout`        | 504    | `server_error`          | `upstream_timeout`        |
//! | `upstream_protocol_error` | 502    | `server_error`          | `upstream_protocol_error` |
//! | `event_too_large`         | 502    | `server_error`          | `event_too_large`         |
//! | `stream_truncated`        | 502    | `server_error`          | `stream_truncated`        |
//! | `internal_error`          | 500    | `server_error`          | `internal_error`          |
//!
//! (1) An error the upstream reported keeps the status it stands for and the upstream's own name
//! for it as `code`; its `type` is [`error_type_for_status`] of that status (an OpenAI-shaped
//! error keeps its own `type`). The row is the fallback for an upstream that gives neither.
//!
//! The OpenAI `type` of a status ([`error_type_for_status`]) is what OpenAI itself sends:
//! `server_error` for every 5xx (its 500s and its in-stream errors say so; `api_error` is
//! Anthropic's word and `upstream_error` was only ours). The openai SDKs pick their exception class
//! from the HTTP status, never from `type`, so the `type` is for the people and code reading it.

use crate::json::write_str;

/// The message of the error event sent when the upstream stream stops before its end.
pub const TRUNCATED_MESSAGE: &str = "upstream stream ended before the response was complete";

/// An error the gateway can send a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// 400: the client's request is wrong (the `code` and `param` name what).
    InvalidRequest,
    /// 404: no configured entry serves the requested model.
    ModelNotFound,
    /// The upstream reported an error: its status and its own name for it are kept; the row is
    /// the fallback for an upstream that gives neither.
    UpstreamReported,
    /// 502: connecting to the upstream failed, or it dropped the connection.
    UpstreamUnreachable,
    /// 504: the upstream did not answer (or went silent) within the configured timeout.
    UpstreamTimeout,
    /// 502: the upstream sent something that is not its wire format (a garbage event, a bad
    /// frame, an unreadable body).
    UpstreamProtocolError,
    /// 502: an upstream stream event grew past the core's limit without ending.
    EventTooLarge,
    /// 502: the upstream stream stopped before the answer was complete.
    StreamTruncated,
    /// 500: a bug in the gateway.
    Internal,
}

impl ErrorKind {
    /// Every kind, in the table's order.
    pub const ALL: &'static [Self] = &[
        Self::InvalidRequest,
        Self::ModelNotFound,
        Self::UpstreamReported,
        Self::UpstreamUnreachable,
        Self::UpstreamTimeout,
        Self::UpstreamProtocolError,
        Self::EventTooLarge,
        Self::StreamTruncated,
        Self::Internal,
    ];

    /// The table: `(name, status, OpenAI type, code)`, one row per kind.
    const fn row(self) -> (&'static str, u16, &'static str, Option<&'static str>) {
        const SERVER: &str = "server_error";
        const INVALID: &str = "invalid_request_error";
        match self {
            Self::InvalidRequest => ("invalid_request", 400, INVALID, None),
            Self::ModelNotFound => ("model_not_found", 404, INVALID, Some("model_not_found")),
            Self::UpstreamReported => ("upstream_error", 502, SERVER, Some("upstream_error")),
            Self::UpstreamUnreachable => (
                "upstream_unreachable",
                502,
                SERVER,
                Some("upstream_unreachable"),
            ),
            Self::UpstreamTimeout => ("upstream_timeout", 504, SERVER, Some("upstream_timeout")),
            Self::UpstreamProtocolError => (
                "upstream_protocol_error",
                502,
                SERVER,
                Some("upstream_protocol_error"),
            ),
            Self::EventTooLarge => ("event_too_large", 502, SERVER, Some("event_too_large")),
            Self::StreamTruncated => ("stream_truncated", 502, SERVER, Some("stream_truncated")),
            Self::Internal => ("internal_error", 500, SERVER, Some("internal_error")),
        }
    }

    /// The kind's name (as Python asks for it).
    #[must_use]
    pub const fn name(self) -> &'static str {
        self.row().0
    }

    /// The HTTP status.
    #[must_use]
    pub const fn status(self) -> u16 {
        self.row().1
    }

    /// The OpenAI error `type`.
    #[must_use]
    pub const fn openai_type(self) -> &'static str {
        self.row().2
    }

    /// The OpenAI error `code` (`None` for [`Self::InvalidRequest`], whose code names the field).
    #[must_use]
    pub const fn code(self) -> Option<&'static str> {
        self.row().3
    }

    /// The kind named `name`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|kind| kind.name() == name)
    }

    /// Append this kind's error event (see [`write_error_event`]).
    pub fn write_event(self, out: &mut Vec<u8>, message: &str) {
        write_error_event(out, message, self.status(), self.openai_type(), self.code());
    }
}

/// The OpenAI error `type` for a status (of an upstream's error, or of ours), as OpenAI sends it.
#[must_use]
pub fn error_type_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

/// The status an OpenAI error `type` stands for, when it is one of OpenAI's (the inverse of
/// [`error_type_for_status`], for an error that names its type but not its status).
#[must_use]
pub fn status_for_error_type(kind: &str) -> Option<u16> {
    match kind {
        "invalid_request_error" => Some(400),
        "authentication_error" => Some(401),
        "permission_error" => Some(403),
        "not_found_error" => Some(404),
        "rate_limit_error" => Some(429),
        "server_error" | "api_error" => Some(500),
        _ => None,
    }
}

/// The Anthropic error `type` for a status (of an upstream's error, or of ours), as Anthropic's
/// API sends it (its errors table): 400 `invalid_request_error`, 401 `authentication_error`,
/// 402 `billing_error`, 403 `permission_error`, 404 `not_found_error`, 413 `request_too_large`,
/// 429 `rate_limit_error`, 504 `timeout_error`, 503 and 529 `overloaded_error` (an unavailable
/// upstream reads as overloaded to an Anthropic client), any other 4xx `invalid_request_error`,
/// anything else `api_error`.
#[must_use]
pub fn anthropic_error_type_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// Append an Anthropic error object, `{"type":"error","error":{"type","message"}}` (the body of
/// an Anthropic error response and the data of its `error` event), its type the one `status`
/// stands for ([`anthropic_error_type_for_status`]).
pub fn write_anthropic_error(out: &mut Vec<u8>, message: &str, status: u16) {
    out.extend_from_slice(b"{\"type\":\"error\",\"error\":{\"type\":\"");
    out.extend_from_slice(anthropic_error_type_for_status(status).as_bytes());
    out.extend_from_slice(b"\",\"message\":");
    write_str(out, message);
    out.extend_from_slice(b"}}");
}

/// Append the Anthropic stream's error event, `event: error` with [`write_anthropic_error`]'s
/// object: what an Anthropic client reads as a failure after the 200 (its SDKs raise on it).
pub fn write_anthropic_error_event(out: &mut Vec<u8>, message: &str, status: u16) {
    out.extend_from_slice(b"event: error\ndata: ");
    write_anthropic_error(out, message, status);
    out.extend_from_slice(b"\n\n");
}

/// Append an error event, the one shape of every in-stream error the gateway sends:
/// `data: {"error": {"message", "type", "param": null, "code", "status"}}`. The openai SDKs raise
/// `APIError` when they read it (its `type`, `code` and `body["status"]` are these fields); nothing
/// may follow it on the client's stream.
pub fn write_error_event(
    out: &mut Vec<u8>,
    message: &str,
    status: u16,
    kind: &str,
    code: Option<&str>,
) {
    out.extend_from_slice(b"data: {\"error\":{\"message\":");
    write_str(out, message);
    out.extend_from_slice(b",\"type\":");
    write_str(out, kind);
    out.extend_from_slice(b",\"param\":null,\"code\":");
    match code {
        Some(code) => write_str(out, code),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"status\":");
    out.extend_from_slice(status.to_string().as_bytes());
    out.extend_from_slice(b"}}\n\n");
}

/// Append the event of an error the upstream reported: its message, the HTTP status it stands
/// for, the OpenAI `type` of that status, and the upstream's own name for it as `code`.
pub fn write_upstream_error_event(out: &mut Vec<u8>, message: &str, status: u16, code: &str) {
    write_error_event(
        out,
        message,
        status,
        error_type_for_status(status),
        Some(code),
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn event(out: &[u8]) -> Value {
        let text = std::str::from_utf8(out).unwrap();
        let data = text
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        serde_json::from_str(data).unwrap()
    }

    #[test]
    fn every_kind_has_a_unique_name_and_code_and_is_found_by_its_name() {
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(ErrorKind::from_name(kind.name()), Some(*kind));
            for other in &ErrorKind::ALL[i + 1..] {
                assert_ne!(kind.name(), other.name());
                assert!(kind.code().is_none() || kind.code() != other.code());
            }
            // A kind's type is the one its status stands for, except the OpenAI-given
            // `model_not_found`, which OpenAI sends as an invalid request.
            if *kind != ErrorKind::ModelNotFound {
                assert_eq!(kind.openai_type(), error_type_for_status(kind.status()));
            }
        }
        assert_eq!(ErrorKind::from_name("nope"), None);
    }

    #[test]
    fn status_table_speaks_openai() {
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "invalid_request_error"),
            (422, "invalid_request_error"),
            (429, "rate_limit_error"),
            (500, "server_error"),
            (502, "server_error"),
            (503, "server_error"),
            (529, "server_error"),
        ] {
            assert_eq!(error_type_for_status(status), kind, "{status}");
            if status != 413 && status != 422 && status < 500 {
                assert_eq!(status_for_error_type(kind), Some(status));
            }
        }
        assert_eq!(status_for_error_type("server_error"), Some(500));
        assert_eq!(status_for_error_type("insufficient_quota"), None);
    }

    #[test]
    fn anthropic_types_by_status() {
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (422, "invalid_request_error"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (503, "overloaded_error"),
            (504, "timeout_error"),
            (529, "overloaded_error"),
        ] {
            assert_eq!(anthropic_error_type_for_status(status), kind, "{status}");
        }
        let mut out = Vec::new();
        write_anthropic_error_event(&mut out, "slow \"down\"", 429);
        let text = std::str::from_utf8(&out).unwrap();
        let data = text.strip_prefix("event: error\ndata: ").unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(data.trim_end()).unwrap(),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow \"down\""}})
        );
    }

    #[test]
    fn an_event_has_every_field() {
        let mut out = Vec::new();
        ErrorKind::StreamTruncated.write_event(&mut out, TRUNCATED_MESSAGE);
        assert_eq!(
            event(&out),
            json!({"error": {"message": TRUNCATED_MESSAGE, "type": "server_error", "param": null,
                             "code": "stream_truncated", "status": 502}})
        );
        let mut out = Vec::new();
        write_upstream_error_event(&mut out, "slow \"down\"", 429, "rate_limit_error");
        assert_eq!(
            event(&out),
            json!({"error": {"message": "slow \"down\"", "type": "rate_limit_error", "param": null,
                             "code": "rate_limit_error", "status": 429}})
        );
        let mut out = Vec::new();
        ErrorKind::InvalidRequest.write_event(&mut out, "bad");
        assert_eq!(event(&out)["error"]["code"], Value::Null);
    }
}
