//! Claude on Amazon Bedrock through `InvokeModel` / `InvokeModelWithResponseStream` (issue 19),
//! registered as provider `bedrock-anthropic`: the request body is Anthropic's Messages body
//! (with `anthropic_version: bedrock-2023-05-31`), and so are the answers.
//!
//! * A whole `InvokeModel` body is an Anthropic `message`: passed on to an Anthropic client
//!   ([`super::anthropic_passthrough::translate_response`]), decoded into a `chat.completion`
//!   for an OpenAI client ([`super::anthropic::decode_response`]).
//! * A stream is the binary AWS event stream (framing in `framing::eventstream`, both CRCs
//!   checked) whose `chunk` events carry `{"bytes": "<base64 of one Anthropic event's JSON>"}`.
//!   Each decoded event goes to the Anthropic pass-through (an Anthropic client: written as
//!   `event: <its type>` SSE, byte for byte but the model) or to the Anthropic decoder and the
//!   OpenAI encoder (an OpenAI client). Bedrock adds `amazon-bedrock-invocationMetrics` to the
//!   `message_stop` event; it passes on (Anthropic clients ignore unknown fields).
//! * An exception message (`throttlingException`, `modelStreamErrorException`,
//!   `validationException`, `serviceUnavailableException`, …) ends the stream with the client
//!   API's error event, its status from `:exception-type` as for Converse
//!   ([`super::bedrock::status_for_exception`]); a bad frame is an `upstream_protocol_error`, a
//!   frame cut off at EOF a `stream_truncated`.

use std::borrow::Cow;

use serde::Deserialize;

use super::anthropic::AnthropicEvents;
use super::anthropic_passthrough::Passthrough;
use super::bedrock::{bad_frame, finish_frames, stream_error};
use super::events::Encoder;
use super::{Translate, Usage};
use crate::error::CoreError;
use crate::error_kind::ErrorKind;
use crate::framing::eventstream::MessageRef;
use crate::framing::EventStreamDecoder;
use crate::json::parse;

/// Where the decoded Anthropic events go: the pass-through, or the decoder and an encoder.
pub trait AnthropicEventSink: std::fmt::Debug + Send + Sync {
    /// One Anthropic event's JSON.
    fn event(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), CoreError>;
    /// An error the upstream reported.
    fn error(&mut self, out: &mut Vec<u8>, status: u16, code: &str, message: &str);
    /// An error of the gateway's vocabulary.
    fn error_of_kind(&mut self, out: &mut Vec<u8>, kind: ErrorKind, message: &str);
    /// The upstream sent something that is not its wire format.
    fn fail(&mut self, out: &mut Vec<u8>, err: &CoreError);
    /// The upstream ended cleanly at a frame boundary.
    fn end_of_stream(&mut self, out: &mut Vec<u8>);
    /// Whether the client's stream is over.
    fn closed(&self) -> bool;
    /// The facts.
    fn usage(&self) -> Option<Usage>;
    fn finish_reason(&self) -> Option<&'static str>;
    fn error_message(&self) -> Option<&str>;
    fn done(&self) -> bool;
    fn failed(&self) -> bool;
}

impl AnthropicEventSink for Passthrough {
    fn event(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), CoreError> {
        Passthrough::event(self, None, data, out)
    }
    fn error(&mut self, out: &mut Vec<u8>, status: u16, _code: &str, message: &str) {
        Passthrough::error(self, out, status, message);
    }
    fn error_of_kind(&mut self, out: &mut Vec<u8>, kind: ErrorKind, message: &str) {
        Passthrough::error_of_kind(self, out, kind, message);
    }
    fn fail(&mut self, out: &mut Vec<u8>, err: &CoreError) {
        Passthrough::fail(self, out, err);
    }
    fn end_of_stream(&mut self, out: &mut Vec<u8>) {
        Passthrough::end_of_stream(self, out);
    }
    fn closed(&self) -> bool {
        Passthrough::closed(self)
    }
    fn usage(&self) -> Option<Usage> {
        Passthrough::usage(self)
    }
    fn finish_reason(&self) -> Option<&'static str> {
        Passthrough::finish_reason(self)
    }
    fn error_message(&self) -> Option<&str> {
        Passthrough::error_message(self)
    }
    fn done(&self) -> bool {
        Passthrough::done(self)
    }
    fn failed(&self) -> bool {
        Passthrough::failed(self)
    }
}

/// The Anthropic decoder writing through the encoder `W`.
#[derive(Debug)]
pub struct Decoded<W> {
    events: AnthropicEvents,
    writer: W,
}

impl<W: Encoder> AnthropicEventSink for Decoded<W> {
    fn event(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), CoreError> {
        self.events.translate_json(data, &mut self.writer, out)
    }
    fn error(&mut self, out: &mut Vec<u8>, status: u16, code: &str, message: &str) {
        self.writer.error(out, status, code, message);
    }
    fn error_of_kind(&mut self, out: &mut Vec<u8>, kind: ErrorKind, message: &str) {
        self.writer.error_of_kind(out, kind, message);
    }
    fn fail(&mut self, out: &mut Vec<u8>, err: &CoreError) {
        self.writer.fail(out, err);
    }
    fn end_of_stream(&mut self, out: &mut Vec<u8>) {
        if !self.writer.closed() {
            self.events.end(&mut self.writer, out);
        }
    }
    fn closed(&self) -> bool {
        self.writer.closed()
    }
    fn usage(&self) -> Option<Usage> {
        self.writer.usage()
    }
    fn finish_reason(&self) -> Option<&'static str> {
        self.writer.finish_reason()
    }
    fn error_message(&self) -> Option<&str> {
        self.writer.error_message()
    }
    fn done(&self) -> bool {
        self.writer.done()
    }
    fn failed(&self) -> bool {
        self.writer.failed()
    }
}

/// A `chunk` event's payload.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    bytes: Option<Cow<'a, str>>,
}

/// Translator for one `InvokeModelWithResponseStream` answer of a Claude model.
#[derive(Debug)]
pub struct BedrockAnthropicStream<S> {
    decoder: EventStreamDecoder,
    state: State<S>,
}

#[derive(Debug)]
struct State<S> {
    sink: S,
    /// Scratch buffer for one decoded event.
    scratch: Vec<u8>,
}

/// The stream for an Anthropic client: the events pass through.
#[must_use]
pub fn passthrough(client_model: Option<String>) -> BedrockAnthropicStream<Passthrough> {
    BedrockAnthropicStream::with_sink(Passthrough::new(client_model.as_deref()))
}

/// The stream for a client whose API `W` encodes: the events are decoded.
#[must_use]
pub fn decoded<W: Encoder>(
    client_model: Option<String>,
    include_usage: bool,
) -> BedrockAnthropicStream<Decoded<W>> {
    BedrockAnthropicStream::with_sink(Decoded {
        events: AnthropicEvents::default(),
        writer: W::for_client(client_model.unwrap_or_default(), include_usage),
    })
}

impl<S: AnthropicEventSink> BedrockAnthropicStream<S> {
    fn with_sink(sink: S) -> Self {
        Self {
            decoder: EventStreamDecoder::new(),
            state: State {
                sink,
                scratch: Vec::new(),
            },
        }
    }

    /// Where the events go, for the facts it keeps.
    #[must_use]
    pub fn sink(&self) -> &S {
        &self.state.sink
    }
}

impl<S: AnthropicEventSink> State<S> {
    fn message(&mut self, message: MessageRef<'_>, out: &mut Vec<u8>) -> Result<(), CoreError> {
        if let Some((status, code, text)) = stream_error(&message) {
            self.sink.error(out, status, code, &text);
            return Ok(());
        }
        if message.header(":event-type") != Some("chunk") || message.payload.is_empty() {
            return Ok(());
        }
        let chunk: Chunk<'_> = parse(message.payload, "stream event")?;
        let Some(encoded) = chunk.bytes else {
            return Ok(());
        };
        self.scratch.clear();
        if !decode_base64(encoded.as_bytes(), &mut self.scratch) {
            return Err(CoreError::EventStream(
                "a chunk's bytes are not base64".to_owned(),
            ));
        }
        let data = std::mem::take(&mut self.scratch);
        let result = self.sink.event(&data, out);
        self.scratch = data;
        result
    }
}

impl<S: AnthropicEventSink> Translate for BedrockAnthropicStream<S> {
    fn feed_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), CoreError> {
        let state = &mut self.state;
        if state.sink.closed() {
            return Ok(());
        }
        let result = self.decoder.feed_with(chunk, |message| {
            if !state.sink.closed() {
                if let Err(err) = state.message(message, out) {
                    state.sink.fail(out, &err);
                }
            }
        });
        if let Err(err) = result {
            state.sink.fail(out, &bad_frame(&err));
        }
        Ok(())
    }

    fn finish_into(&mut self, out: &mut Vec<u8>) -> Result<(), CoreError> {
        let sink = &mut self.state.sink;
        if sink.closed() {
            return Ok(());
        }
        if let Err(message) = finish_frames(&mut self.decoder) {
            sink.error_of_kind(out, ErrorKind::StreamTruncated, &message);
            return Ok(());
        }
        sink.end_of_stream(out);
        Ok(())
    }

    fn usage(&self) -> Option<Usage> {
        self.state.sink.usage()
    }
    fn finish_reason(&self) -> Option<&str> {
        self.state.sink.finish_reason()
    }
    fn error(&self) -> Option<&str> {
        self.state.sink.error_message()
    }
    fn done(&self) -> bool {
        self.state.sink.done()
    }
    fn failed(&self) -> bool {
        self.state.sink.failed()
    }
}

/// Decode standard base64 (RFC 4648 section 4; padding optional, no whitespace) into `out`;
/// false when `input` is not base64.
fn decode_base64(input: &[u8], out: &mut Vec<u8>) -> bool {
    fn value(byte: u8) -> Option<u32> {
        let v = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        Some(u32::from(v))
    }
    let trimmed = input
        .strip_suffix(b"==")
        .or_else(|| input.strip_suffix(b"="))
        .unwrap_or(input);
    if trimmed.len() % 4 == 1 {
        return false;
    }
    out.reserve(trimmed.len() / 4 * 3 + 3);
    for group in trimmed.chunks(4) {
        let mut bits = 0u32;
        for &byte in group {
            let Some(v) = value(byte) else {
                return false;
            };
            bits = (bits << 6) | v;
        }
        // The group's bits, left-aligned to 24: 2, 3 or 4 characters give 1, 2 or 3 bytes.
        let shift = 6 * (4 - u32::try_from(group.len()).unwrap_or(4));
        bits <<= shift;
        let [_, b0, b1, b2] = bits.to_be_bytes();
        let n = group.len() - 1;
        out.extend_from_slice([b0, b1, b2].get(..n).unwrap_or_default());
    }
    true
}

/// Encode `input` as standard base64 with padding: for tests and fakes.
#[must_use]
pub fn encode_base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for group in input.chunks(3) {
        let [a, b, c] = [0, 1, 2].map(|i| group.get(i).copied().unwrap_or(0));
        let bits = (u32::from(a) << 16) | (u32::from(b) << 8) | u32::from(c);
        for i in 0..4 {
            if i <= group.len() {
                let index = usize::try_from((bits >> (18 - 6 * i)) & 63).unwrap_or(0);
                out.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'A')));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One `chunk` event carrying `event` (an Anthropic event's JSON) as Bedrock sends it: for
/// tests and fakes.
#[must_use]
pub fn encode_chunk(event: &[u8]) -> Vec<u8> {
    let payload = format!(
        "{{\"bytes\":\"{}\",\"p\":\"abcdefgh\"}}",
        encode_base64(event)
    );
    crate::framing::eventstream::encode_event("chunk", payload.as_bytes())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::framing::eventstream::encode_message;
    use crate::providers::anthropic_encoder::test_support::events;
    use crate::providers::encoder::test_support::frames;
    use crate::providers::encoder::StreamWriter;
    use serde_json::json;

    #[test]
    fn base64_round_trips() {
        for input in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foob",
            b"fooba",
            b"foobar",
            &[0xff, 0, 0xfe],
        ] {
            let encoded = encode_base64(input);
            let mut out = Vec::new();
            assert!(decode_base64(encoded.as_bytes(), &mut out), "{encoded}");
            assert_eq!(out, input);
            let mut out = Vec::new();
            assert!(decode_base64(
                encoded.trim_end_matches('=').as_bytes(),
                &mut out
            ));
            assert_eq!(out, input);
        }
        assert!(!decode_base64(b"a", &mut Vec::new()));
        assert!(!decode_base64(b"ab!d", &mut Vec::new()));
    }

    const EVENTS: &[&str] = &[
        r#"{"type":"message_start","message":{"id":"msg_bdrk_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"cache_read_input_tokens":0,"cache_creation_input_tokens":0,"output_tokens":1}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Think."}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQB/+=="}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hello"}}"#,
        r#"{"type":"content_block_stop","index":1}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":9}}"#,
        r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":12,"outputTokenCount":9,"invocationLatency":500,"firstByteLatency":200}}"#,
    ];

    fn input() -> Vec<u8> {
        EVENTS
            .iter()
            .flat_map(|e| encode_chunk(e.as_bytes()))
            .collect()
    }

    fn run<T: Translate>(t: &mut T, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        t.feed_into(input, &mut out).unwrap();
        t.finish_into(&mut out).unwrap();
        out
    }

    #[test]
    fn anthropic_client_gets_the_events_as_sse() {
        let mut t = passthrough(None);
        let out = run(&mut t, &input());
        let expected: Vec<u8> = EVENTS
            .iter()
            .flat_map(|e| {
                let v: serde_json::Value = serde_json::from_str(e).unwrap();
                format!("event: {}\ndata: {e}\n\n", v["type"].as_str().unwrap()).into_bytes()
            })
            .collect();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(expected).unwrap()
        );
        assert!(t.done());
        assert_eq!(t.finish_reason(), Some("stop"));
        assert_eq!(t.usage().unwrap().as_tuple(), (12, 9, 21));
    }

    #[test]
    fn anthropic_client_model_is_rewritten() {
        let mut t = passthrough(Some("claude-alias".into()));
        let out = run(&mut t, &input());
        let events = events(&out);
        assert_eq!(events[0].1["message"]["model"], "claude-alias");
        assert_eq!(events[3].1["delta"]["signature"], "EqQB/+==");
    }

    #[test]
    fn openai_client_gets_chat_chunks() {
        let mut t = decoded::<StreamWriter>(Some("m".into()), true);
        let frames = frames(&run(&mut t, &input()));
        assert_eq!(frames[0]["id"], "msg_bdrk_1");
        assert_eq!(
            frames[1]["choices"][0]["delta"]["reasoning_content"],
            "Think."
        );
        assert_eq!(
            frames[2]["choices"][0]["delta"]["thinking_blocks"][0]["signature"],
            "EqQB/+=="
        );
        assert_eq!(frames[3]["choices"][0]["delta"]["content"], "Hello");
        assert_eq!(frames[4]["choices"][0]["finish_reason"], "stop");
        assert_eq!(frames[5]["usage"]["total_tokens"], 21);
        assert_eq!(frames[6], "[DONE]");
    }

    #[test]
    fn exceptions_end_the_stream_with_their_status() {
        for (kind, anthropic_type, status) in [
            ("throttlingException", "rate_limit_error", 429),
            ("modelStreamErrorException", "api_error", 500),
            ("serviceUnavailableException", "overloaded_error", 503),
            ("validationException", "invalid_request_error", 400),
        ] {
            let mut input = encode_chunk(EVENTS[0].as_bytes());
            input.extend(encode_message(
                &[
                    (":exception-type", kind),
                    (":content-type", "application/json"),
                    (":message-type", "exception"),
                ],
                br#"{"message":"slow down"}"#,
            ));
            let mut t = passthrough(None);
            let out = run(&mut t, &input);
            let (name, data) = events(&out).pop().unwrap();
            assert_eq!(name, "error");
            assert_eq!(
                data,
                json!({"type": "error", "error": {"type": anthropic_type, "message": "slow down"}})
            );
            assert_eq!(t.error(), Some("slow down"));
            let mut t = decoded::<StreamWriter>(None, true);
            let frames = frames(&run(&mut t, &input));
            assert_eq!(frames.last().unwrap()["error"]["status"], status);
            assert_eq!(frames.last().unwrap()["error"]["code"], kind);
        }
    }

    #[test]
    fn bad_base64_bad_crc_and_cut_frames_end_with_errors() {
        let mut input = encode_chunk(EVENTS[0].as_bytes());
        input.extend(crate::framing::eventstream::encode_event(
            "chunk",
            br#"{"bytes":"!!!"}"#,
        ));
        let mut t = passthrough(None);
        let out = run(&mut t, &input);
        assert_eq!(events(&out).len(), 2);
        assert!(t.failed());

        let mut input = encode_chunk(EVENTS[0].as_bytes());
        let last = input.len() - 1;
        input[last] ^= 1;
        let mut t = passthrough(None);
        run(&mut t, &input);
        assert!(t.failed());

        let input = encode_chunk(EVENTS[0].as_bytes());
        let mut t = passthrough(None);
        let out = run(&mut t, &input[..input.len() - 2]);
        assert_eq!(events(&out)[0].0, "error");
        assert!(t.error().unwrap().contains("cut short"));
    }
}
