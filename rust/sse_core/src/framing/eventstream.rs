//! Incremental, sans-IO decoder of the AWS event stream encoding
//! (`application/vnd.amazon.eventstream`, used by Bedrock's `ConverseStream`; WIRE.md section 3).
//!
//! A message is
//!
//! ```text
//! [total length: u32 BE][headers length: u32 BE][prelude CRC32: u32 BE, over the first 8 bytes]
//! [headers: (name length: u8, name, value type: u8, value)*][payload][message CRC32: u32 BE]
//! ```
//!
//! where the message CRC covers every byte before it. Both CRCs are checked (CRC-32/ISO-HDLC, the
//! zlib one): a mismatch is an error, never a message. The prelude is checked as soon as its 12
//! bytes are in, so a corrupted length cannot make the decoder wait for (or buffer) gigabytes.
//! Header values of every type are understood (so that any header can be skipped); the decoder
//! keeps the string ones, which are all Bedrock sends (`:message-type`, `:event-type`,
//! `:exception-type`, `:content-type`).
//!
//! Messages can be split anywhere across reads: messages lying whole in a read are lent to the
//! caller in place ([`EventStreamDecoder::feed_with`]); only an unfinished message is kept between
//! calls, each of its bytes copied once, so the cost stays linear in the bytes read.
//!
//! Why not the `aws-smithy-eventstream` crate: it brings the smithy runtime types (`bytes`,
//! `aws-smithy-types`) for what is ~150 lines here, and its decoder owns a `Bytes` buffer per
//! message; this one borrows, and reports a truncated stream at EOF.

use std::fmt;

/// The smallest message: a 12-byte prelude, no headers, no payload, a 4-byte CRC.
const MIN_MESSAGE_BYTES: usize = 16;
const PRELUDE_BYTES: usize = 12;
/// The largest message the decoder accepts (the AWS SDKs' limit is 16 MiB too).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// The largest headers section the AWS SDKs accept.
const MAX_HEADERS_BYTES: usize = 128 * 1024;

/// One decoded message. String headers are kept in order; other header types are checked and
/// skipped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventMessage {
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl EventMessage {
    /// The value of the string header `name`, if present.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A checked message borrowed from the decoder's input (no copy, no allocation): its payload, and
/// its headers read on demand.
#[derive(Debug, Clone, Copy)]
pub struct MessageRef<'a> {
    headers: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> MessageRef<'a> {
    /// The value of the string header `name`, if present.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&'a str> {
        Headers(self.headers)
            .map_while(Result::ok)
            .find_map(|(key, value)| match value {
                Some(value) if key == name => Some(value),
                _ => None,
            })
    }

    /// An owned copy.
    #[must_use]
    pub fn to_owned_message(&self) -> EventMessage {
        EventMessage {
            headers: Headers(self.headers)
                .map_while(Result::ok)
                .filter_map(|(key, value)| Some((key.to_owned(), value?.to_owned())))
                .collect(),
            payload: self.payload.to_vec(),
        }
    }
}

/// Why the bytes are not a valid event stream. After an error the decoder is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventStreamError {
    PreludeCrc {
        expected: u32,
        actual: u32,
    },
    MessageCrc {
        expected: u32,
        actual: u32,
    },
    /// A length field out of range.
    BadLength(String),
    /// A malformed headers section.
    BadHeaders(String),
    /// The stream ended inside a message: this many bytes of it had arrived.
    Truncated {
        buffered: usize,
    },
}

impl fmt::Display for EventStreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PreludeCrc { expected, actual } => write!(
                f,
                "event stream prelude CRC mismatch (expected {expected:#010x}, computed {actual:#010x})"
            ),
            Self::MessageCrc { expected, actual } => write!(
                f,
                "event stream message CRC mismatch (expected {expected:#010x}, computed {actual:#010x})"
            ),
            Self::BadLength(detail) => write!(f, "event stream message length invalid: {detail}"),
            Self::BadHeaders(detail) => write!(f, "event stream headers invalid: {detail}"),
            Self::Truncated { buffered } => write!(
                f,
                "event stream ended inside a message ({buffered} bytes of it received)"
            ),
        }
    }
}

impl std::error::Error for EventStreamError {}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(raw))
}

fn be_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let raw: [u8; 2] = bytes.get(at..at + 2)?.try_into().ok()?;
    Some(u16::from_be_bytes(raw))
}

/// Incremental decoder: feed bytes as they arrive, collect the complete messages.
#[derive(Debug, Default)]
pub struct EventStreamDecoder {
    /// The unfinished message so far (at most one message long).
    buf: Vec<u8>,
    /// Its total length, once its prelude has been read and checked.
    expected: Option<usize>,
    failed: bool,
}

impl EventStreamDecoder {
    /// A decoder at the start of a stream.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of an unfinished message held between calls.
    #[must_use]
    pub fn pending_len(&self) -> usize {
        self.buf.len()
    }

    /// Decode `chunk`, appending complete messages to `out`. On error, the messages completed
    /// before the bad one are in `out`, and the decoder refuses further input.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        out: &mut Vec<EventMessage>,
    ) -> Result<(), EventStreamError> {
        self.feed_with(chunk, |message| out.push(message.to_owned_message()))
    }

    /// Decode `chunk`, calling `on_message` with each complete message in order (borrowed: nothing
    /// is copied for messages that lie whole in `chunk`). On error, the messages before the bad
    /// one have been passed, and the decoder refuses further input.
    pub fn feed_with(
        &mut self,
        mut chunk: &[u8],
        mut on_message: impl FnMut(MessageRef<'_>),
    ) -> Result<(), EventStreamError> {
        if self.failed {
            return Ok(());
        }
        while !chunk.is_empty() {
            // Whole messages lying in the chunk are decoded in place, without copying.
            if self.buf.is_empty() && self.expected.is_none() && chunk.len() >= PRELUDE_BYTES {
                let total = self.check_prelude(chunk)?;
                if chunk.len() >= total {
                    let (message, rest) = chunk.split_at(total);
                    on_message(self.decode(message)?);
                    chunk = rest;
                    continue;
                }
                self.expected = Some(total);
                self.buf.reserve(total);
            }
            let want = match self.expected {
                Some(total) => total,
                None => PRELUDE_BYTES,
            };
            let take = want.saturating_sub(self.buf.len()).min(chunk.len());
            let (head, rest) = chunk.split_at(take);
            self.buf.extend_from_slice(head);
            chunk = rest;
            if self.buf.len() < want {
                break;
            }
            if self.expected.is_none() {
                let mut prelude = [0u8; PRELUDE_BYTES];
                prelude
                    .copy_from_slice(self.buf.get(..PRELUDE_BYTES).unwrap_or(&[0; PRELUDE_BYTES]));
                let total = self.check_prelude(&prelude)?;
                self.expected = Some(total);
                self.buf.reserve(total.saturating_sub(self.buf.len()));
                continue;
            }
            let mut message = std::mem::take(&mut self.buf);
            self.expected = None;
            on_message(self.decode(&message)?);
            // Keep the allocation for the next message split across reads (unless it was huge).
            message.clear();
            if message.capacity() <= 64 * 1024 {
                self.buf = message;
            }
        }
        Ok(())
    }

    /// The stream ended: an error when it ended inside a message.
    pub fn finish(&mut self) -> Result<(), EventStreamError> {
        if self.failed || self.buf.is_empty() {
            return Ok(());
        }
        let buffered = self.buf.len();
        self.buf = Vec::new();
        self.failed = true;
        Err(EventStreamError::Truncated { buffered })
    }

    fn fail(&mut self, err: EventStreamError) -> EventStreamError {
        self.failed = true;
        self.buf = Vec::new();
        err
    }

    /// Check the prelude at the start of `bytes` (at least 12 bytes); return the total length.
    fn check_prelude(&mut self, bytes: &[u8]) -> Result<usize, EventStreamError> {
        let (Some(total), Some(headers), Some(expected), Some(prelude)) = (
            be_u32(bytes, 0),
            be_u32(bytes, 4),
            be_u32(bytes, 8),
            bytes.get(..8),
        ) else {
            return Err(self.fail(EventStreamError::BadLength("short prelude".into())));
        };
        let actual = crc32fast::hash(prelude);
        if actual != expected {
            return Err(self.fail(EventStreamError::PreludeCrc { expected, actual }));
        }
        let total = total as usize;
        let headers = headers as usize;
        if !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BYTES).contains(&total) {
            return Err(self.fail(EventStreamError::BadLength(format!(
                "total length {total} outside {MIN_MESSAGE_BYTES}..={MAX_MESSAGE_BYTES}"
            ))));
        }
        if headers > MAX_HEADERS_BYTES || headers > total - MIN_MESSAGE_BYTES {
            return Err(self.fail(EventStreamError::BadLength(format!(
                "headers length {headers} does not fit in a message of {total} bytes"
            ))));
        }
        Ok(total)
    }

    /// Decode one complete message whose prelude was checked.
    fn decode<'m>(&mut self, message: &'m [u8]) -> Result<MessageRef<'m>, EventStreamError> {
        let crc_at = message.len() - 4;
        let expected = be_u32(message, crc_at).unwrap_or_default();
        let actual = crc32fast::hash(message.get(..crc_at).unwrap_or_default());
        if actual != expected {
            return Err(self.fail(EventStreamError::MessageCrc { expected, actual }));
        }
        let headers_len = be_u32(message, 4).unwrap_or_default() as usize;
        let headers_end = PRELUDE_BYTES + headers_len;
        let headers = message.get(PRELUDE_BYTES..headers_end).unwrap_or_default();
        if let Some(Err(err)) = Headers(headers).find(Result::is_err) {
            return Err(self.fail(err));
        }
        let payload = message.get(headers_end..crc_at).unwrap_or_default();
        Ok(MessageRef { headers, payload })
    }
}

/// Iterates over a headers section: `(name, Some(value))` for string headers, `(name, None)` for
/// the other types (checked and skipped); an error ends it.
struct Headers<'a>(&'a [u8]);

impl<'a> Iterator for Headers<'a> {
    type Item = Result<(&'a str, Option<&'a str>), EventStreamError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let item = next_header(self.0);
        match item {
            Ok((name, value, rest)) => {
                self.0 = rest;
                Some(Ok((name, value)))
            }
            Err(err) => {
                self.0 = &[];
                Some(Err(err))
            }
        }
    }
}

type Header<'a> = (&'a str, Option<&'a str>, &'a [u8]);

fn next_header(bytes: &[u8]) -> Result<Header<'_>, EventStreamError> {
    let bad = |what: &str| EventStreamError::BadHeaders(what.to_owned());
    let Some((&name_len, rest)) = bytes.split_first() else {
        return Err(bad("empty header"));
    };
    let name_len = usize::from(name_len);
    if name_len == 0 {
        return Err(bad("empty header name"));
    }
    let name = rest
        .get(..name_len)
        .ok_or_else(|| bad("header name cut short"))?;
    let name = std::str::from_utf8(name).map_err(|_| bad("header name is not UTF-8"))?;
    let rest = rest.get(name_len..).unwrap_or_default();
    let (&kind, rest) = rest
        .split_first()
        .ok_or_else(|| bad("header type missing"))?;
    let fixed = match kind {
        0 | 1 => Some(0),
        2 => Some(1),
        3 => Some(2),
        4 => Some(4),
        5 | 8 => Some(8),
        9 => Some(16),
        6 | 7 => None,
        other => return Err(bad(&format!("unknown header value type {other}"))),
    };
    if let Some(len) = fixed {
        let rest = rest
            .get(len..)
            .ok_or_else(|| bad("header value cut short"))?;
        return Ok((name, None, rest));
    }
    let len = usize::from(be_u16(rest, 0).ok_or_else(|| bad("header value cut short"))?);
    let value = rest
        .get(2..2 + len)
        .ok_or_else(|| bad("header value cut short"))?;
    let rest = rest.get(2 + len..).unwrap_or_default();
    if kind == 7 {
        let value = std::str::from_utf8(value).map_err(|_| bad("string header is not UTF-8"))?;
        Ok((name, Some(value), rest))
    } else {
        Ok((name, None, rest))
    }
}

/// Encode one `:message-type event` message with a JSON payload: for tests and fakes.
#[must_use]
pub fn encode_event(kind: &str, payload: &[u8]) -> Vec<u8> {
    encode_message(
        &[
            (":event-type", kind),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload,
    )
}

/// Encode one message with string headers: for tests and fakes (the gateway only decodes).
#[must_use]
pub fn encode_message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut head = Vec::new();
    for (name, value) in headers {
        head.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        head.extend_from_slice(name.as_bytes());
        head.push(7);
        head.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
        head.extend_from_slice(value.as_bytes());
    }
    let total = PRELUDE_BYTES + head.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&u32::try_from(head.len()).unwrap_or(u32::MAX).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn event(kind: &str, payload: &str) -> Vec<u8> {
        encode_event(kind, payload.as_bytes())
    }

    #[test]
    fn decodes_messages_split_at_every_offset() {
        let mut input = event("messageStart", r#"{"role":"assistant"}"#);
        input.extend(event("contentBlockDelta", r#"{"delta":{"text":"hé"}}"#));
        input.extend(encode_message(&[], b""));
        for cut in 0..=input.len() {
            let mut decoder = EventStreamDecoder::new();
            let mut out = Vec::new();
            decoder.feed(&input[..cut], &mut out).unwrap();
            decoder.feed(&input[cut..], &mut out).unwrap();
            decoder.finish().unwrap();
            assert_eq!(out.len(), 3, "cut at {cut}");
            assert_eq!(out[0].header(":event-type"), Some("messageStart"));
            assert_eq!(out[1].payload, r#"{"delta":{"text":"hé"}}"#.as_bytes());
            assert_eq!(out[2], EventMessage::default());
        }
    }

    #[test]
    fn every_header_type_is_skipped_and_strings_kept() {
        // From the AWS SDKs' test vectors: one header of each type.
        let mut head = Vec::new();
        let mut push = |name: &str, kind: u8, value: &[u8]| {
            head.push(name.len() as u8);
            head.extend_from_slice(name.as_bytes());
            head.push(kind);
            head.extend_from_slice(value);
        };
        push("t", 0, b"");
        push("f", 1, b"");
        push("b", 2, &[7]);
        push("s", 3, &[0, 7]);
        push("i", 4, &[0, 0, 0, 7]);
        push("l", 5, &[0; 8]);
        push("a", 6, &[0, 2, 1, 2]);
        push("str", 7, &[0, 2, b'o', b'k']);
        push("ts", 8, &[0; 8]);
        push("u", 9, &[0; 16]);
        let total = 12 + head.len() + 2 + 4;
        let mut message = Vec::new();
        message.extend_from_slice(&(total as u32).to_be_bytes());
        message.extend_from_slice(&(head.len() as u32).to_be_bytes());
        message.extend_from_slice(&crc32fast::hash(&message).to_be_bytes());
        message.extend_from_slice(&head);
        message.extend_from_slice(b"{}");
        message.extend_from_slice(&crc32fast::hash(&message).to_be_bytes());
        let mut out = Vec::new();
        EventStreamDecoder::new().feed(&message, &mut out).unwrap();
        assert_eq!(out[0].headers, vec![("str".to_owned(), "ok".to_owned())]);
        assert_eq!(out[0].payload, b"{}");
    }

    #[test]
    fn a_corrupted_byte_anywhere_is_an_error_never_a_message() {
        let input = event("messageStop", r#"{"stopReason":"end_turn"}"#);
        for at in 0..input.len() {
            let mut bad = input.clone();
            bad[at] ^= 0x01;
            let mut decoder = EventStreamDecoder::new();
            let mut out = Vec::new();
            let result = decoder.feed(&bad, &mut out).and_then(|()| decoder.finish());
            assert!(result.is_err(), "flip at {at} accepted");
            assert!(out.is_empty(), "flip at {at} produced {out:?}");
        }
    }

    #[test]
    fn prelude_crc_is_checked_before_waiting_for_the_body() {
        let mut input = event("messageStop", "{}");
        input[0] = 0x7F; // a huge length, with the prelude CRC now wrong
        let mut decoder = EventStreamDecoder::new();
        let err = decoder.feed(&input[..12], &mut Vec::new()).unwrap_err();
        assert!(matches!(err, EventStreamError::PreludeCrc { .. }), "{err}");
    }

    #[test]
    fn a_stream_ending_inside_a_message_is_reported() {
        let input = event("messageStop", "{}");
        let mut decoder = EventStreamDecoder::new();
        let mut out = Vec::new();
        decoder.feed(&input[..input.len() - 1], &mut out).unwrap();
        assert_eq!(
            decoder.finish(),
            Err(EventStreamError::Truncated {
                buffered: input.len() - 1
            })
        );
        assert!(out.is_empty());
    }

    #[test]
    fn lengths_out_of_range_are_errors() {
        for (total, headers) in [(15u32, 0u32), (20, 5), (MAX_MESSAGE_BYTES as u32 + 1, 0)] {
            let mut prelude = Vec::new();
            prelude.extend_from_slice(&total.to_be_bytes());
            prelude.extend_from_slice(&headers.to_be_bytes());
            prelude.extend_from_slice(&crc32fast::hash(&prelude).to_be_bytes());
            let err = EventStreamDecoder::new()
                .feed(&prelude, &mut Vec::new())
                .unwrap_err();
            assert!(matches!(err, EventStreamError::BadLength(_)), "{err}");
        }
    }
}
