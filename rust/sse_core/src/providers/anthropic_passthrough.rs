//! Anthropic upstream → Anthropic client (issue 19): the Messages event stream and whole
//! `message` bodies pass through byte for byte (thinking signatures, citations, server tool
//! blocks, block and delta types newer than this code), with one edit: the top-level `model` of a
//! body, and the `message.model` of `message_start`, become the client's model name when one is
//! given. Like the OpenAI pass-through ([`super::openai`]), payloads are split into top-level
//! members only (no value tree) and an event needing no edit is copied verbatim.
//!
//! The facts are read on the way: usage (`message_start`'s, updated by `message_delta`'s, with
//! cache reads and writes), the stop reason (reported in OpenAI's terms), an upstream `error`
//! event (sent on as it came; nothing after it). The same reader serves Claude on Vertex AI
//! (same wire) and Claude on Bedrock's `InvokeModelWithResponseStream`, whose events arrive
//! base64-encoded in an AWS event stream ([`super::bedrock_anthropic`]).
//!
//! Ends: `message_stop` is the normal end. EOF after a `message_delta` with a stop reason but no
//! `message_stop` is completed with one; EOF before it, an event that is not a JSON object, or an
//! event over [`MAX_EVENT_BYTES`] end the client's stream with an Anthropic `error` event
//! (`api_error`, the message naming the gateway's error kind) after the good events.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::anthropic::{finish_reason, AnthropicUsage, ErrorBody};
use super::encoder::FinishReason;
use super::openai::{is_cut_off, MAX_EVENT_BYTES};
use super::sse_writer::write_data;
use super::{Translate, Usage};
use crate::error::CoreError;
use crate::error_kind::{write_anthropic_error_event, ErrorKind, TRUNCATED_MESSAGE};
use crate::framing::{SseEvent, SseParser};
use crate::json::{is_null, parse, string_literal, with_model, write_spliced, Object};

/// What the pass-through reads of an event (the rest is only checked to be JSON).
#[derive(Deserialize)]
struct EventView<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    #[serde(borrow, default)]
    delta: Option<&'a RawValue>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
    #[serde(borrow, default)]
    error: Option<ErrorBody<'a>>,
}

#[derive(Deserialize)]
struct MessageDeltaView<'a> {
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
}

/// What the pass-through reads of a `message` (a whole body, or `message_start`'s).
#[derive(Deserialize)]
struct MessageView<'a> {
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

/// Pass a whole Messages body on: the top-level `model` rewritten to `client_model` (verbatim
/// when `None` or equal), the usage read.
pub fn translate_response(
    body: &[u8],
    client_model: Option<&str>,
) -> Result<(Vec<u8>, Option<Usage>), CoreError> {
    let object = Object::parse(body, "response body")?;
    let kind = object
        .get("type")
        .and_then(|raw| serde_json::from_str::<Cow<'_, str>>(raw).ok());
    if kind.as_deref() == Some("error") {
        let error: ErrorBody<'_> = object
            .get("error")
            .and_then(|raw| serde_json::from_str(raw).ok())
            .unwrap_or_default();
        return Err(error.into_error());
    }
    let usage = object
        .get("usage")
        .filter(|v| !is_null(v))
        .and_then(|raw| serde_json::from_str::<AnthropicUsage>(raw).ok())
        .map(AnthropicUsage::to_openai);
    let edited = client_model.and_then(|model| with_model(body, &object, &string_literal(model)));
    Ok((edited.unwrap_or_else(|| body.to_vec()), usage))
}

/// The pass-through of one Messages event stream, whatever carries the events (see the module
/// docs): fed one event's JSON at a time.
#[derive(Debug)]
pub struct Passthrough {
    /// The client's model name as a JSON string literal.
    client_model: Option<Vec<u8>>,
    usage: AnthropicUsage,
    seen_usage: bool,
    finish_reason: Option<FinishReason>,
    error: Option<String>,
    done: bool,
    failed: bool,
}

impl Passthrough {
    /// `client_model`: the model name to show the client (`None` keeps the upstream's).
    #[must_use]
    pub fn new(client_model: Option<&str>) -> Self {
        Self {
            client_model: client_model.map(string_literal),
            usage: AnthropicUsage::default(),
            seen_usage: false,
            finish_reason: None,
            error: None,
            done: false,
            failed: false,
        }
    }

    /// Whether the client's stream is over (`message_stop` or an error sent).
    #[must_use]
    pub fn closed(&self) -> bool {
        self.done || self.error.is_some()
    }

    /// Pass one event on: `name` is its SSE event name (`None`: its JSON `type`), `data` its JSON.
    pub fn event(
        &mut self,
        name: Option<&str>,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CoreError> {
        if self.closed() {
            return Ok(());
        }
        let view: EventView<'_> = parse(data, "stream event")?;
        let kind = view.kind.as_deref().unwrap_or_default();
        let mut edited = None;
        match kind {
            "message_start" => {
                if let Some(message) = view.message {
                    edited = self.message_start(data, message)?;
                }
            }
            "message_delta" => {
                let reason = view
                    .delta
                    .and_then(|raw| serde_json::from_str::<MessageDeltaView<'_>>(raw.get()).ok())
                    .and_then(|d| d.stop_reason.map(|r| finish_reason(&r)));
                if reason.is_some() {
                    self.finish_reason = reason;
                }
                if let Some(usage) = view.usage {
                    self.usage.update(&usage);
                    self.seen_usage = true;
                }
            }
            "message_stop" => self.done = true,
            "error" => {
                self.error = Some(view.error.unwrap_or_default().message().to_owned());
            }
            _ => {}
        }
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.unwrap_or(kind).as_bytes());
        out.push(b'\n');
        write_data(out, edited.as_deref().unwrap_or(data));
        Ok(())
    }

    /// Read `message_start`'s message; the event rewritten when its model must change.
    fn message_start(
        &mut self,
        data: &[u8],
        message: &RawValue,
    ) -> Result<Option<Vec<u8>>, CoreError> {
        if let Ok(view) = serde_json::from_str::<MessageView<'_>>(message.get()) {
            if let Some(usage) = view.usage {
                self.usage.update(&usage);
                self.seen_usage = true;
            }
            if let Some(reason) = view.stop_reason {
                self.finish_reason = Some(finish_reason(&reason));
            }
        }
        let Some(model) = self.client_model.as_deref() else {
            return Ok(None);
        };
        let Ok(inner) = Object::parse(message.get().as_bytes(), "stream event") else {
            return Ok(None);
        };
        let Some(new_message) = with_model(message.get().as_bytes(), &inner, model) else {
            return Ok(None);
        };
        // `message` is a slice of `data`: splice the new one in, every other byte as it came.
        let mut event = Vec::with_capacity(data.len() + model.len());
        write_spliced(&mut event, data, message.get(), &new_message);
        Ok(Some(event))
    }

    /// The upstream ended: complete a stream whose answer was whole, or report it truncated.
    pub fn end_of_stream(&mut self, out: &mut Vec<u8>) {
        if self.closed() {
            return;
        }
        if self.finish_reason.is_some() {
            // message_delta came with the stop reason; only message_stop is missing.
            out.extend_from_slice(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
            self.done = true;
        } else {
            self.error_of_kind(out, ErrorKind::StreamTruncated, TRUNCATED_MESSAGE);
        }
    }

    /// End the client's stream with an error the upstream reported (`status`: the HTTP status it
    /// stands for).
    pub fn error(&mut self, out: &mut Vec<u8>, status: u16, message: &str) {
        if self.closed() {
            return;
        }
        write_anthropic_error_event(out, message, status);
        self.error = Some(message.to_owned());
    }

    /// End the client's stream with an error of the gateway's vocabulary.
    #[cold]
    #[inline(never)]
    pub fn error_of_kind(&mut self, out: &mut Vec<u8>, kind: ErrorKind, message: &str) {
        self.error(out, kind.status(), message);
    }

    /// End the client's stream: the upstream sent something that is not its wire format.
    #[cold]
    #[inline(never)]
    pub fn fail(&mut self, out: &mut Vec<u8>, err: &CoreError) {
        if self.closed() {
            return;
        }
        self.failed = true;
        let message = format!("the upstream's stream could not be read: {err}");
        self.error_of_kind(out, err.kind(), &message);
    }

    /// The usage reported so far.
    #[must_use]
    pub fn usage(&self) -> Option<Usage> {
        self.seen_usage.then(|| self.usage.to_openai())
    }

    /// The stop reason, in OpenAI's terms.
    #[must_use]
    pub fn finish_reason(&self) -> Option<&'static str> {
        self.finish_reason.map(FinishReason::as_str)
    }

    /// The message of the error sent, if any.
    #[must_use]
    pub fn error_message(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Whether `message_stop` was sent.
    #[must_use]
    pub fn done(&self) -> bool {
        self.done
    }

    /// Whether [`Self::fail`] ended the stream.
    #[must_use]
    pub fn failed(&self) -> bool {
        self.failed
    }
}

/// The pass-through of one Messages SSE stream (Anthropic, Claude on Vertex AI).
#[derive(Debug)]
pub struct PassthroughStream {
    parser: SseParser,
    /// Scratch list of the events parsed from one read, kept to reuse its allocation.
    events: Vec<SseEvent>,
    inner: Passthrough,
}

impl PassthroughStream {
    /// `client_model`: the model name to show the client (`None` keeps the upstream's).
    #[must_use]
    pub fn new(client_model: Option<String>) -> Self {
        Self {
            parser: SseParser::new(),
            events: Vec::new(),
            inner: Passthrough::new(client_model.as_deref()),
        }
    }

    fn drain_events(&mut self, out: &mut Vec<u8>) {
        let mut events = std::mem::take(&mut self.events);
        for event in &events {
            if self.inner.closed() {
                break;
            }
            if let Err(err) = self.inner.event(event.event.as_deref(), &event.data, out) {
                self.inner.fail(out, &err);
            }
        }
        events.clear();
        self.events = events;
    }

    /// The pass-through's facts.
    #[must_use]
    pub fn inner(&self) -> &Passthrough {
        &self.inner
    }
}

impl Translate for PassthroughStream {
    fn feed_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), CoreError> {
        out.reserve(chunk.len() + 64);
        self.parser.feed(chunk, &mut self.events);
        self.drain_events(out);
        if self.parser.pending_len() > MAX_EVENT_BYTES {
            self.inner.fail(
                out,
                &CoreError::EventTooLarge {
                    limit: MAX_EVENT_BYTES,
                },
            );
        }
        Ok(())
    }

    fn finish_into(&mut self, out: &mut Vec<u8>) -> Result<(), CoreError> {
        self.parser.finish(&mut self.events);
        // An event cut off by the end of the stream is a truncation, not invalid JSON.
        self.events.retain(|event| !is_cut_off(&event.data));
        self.drain_events(out);
        self.inner.end_of_stream(out);
        Ok(())
    }

    fn usage(&self) -> Option<Usage> {
        self.inner.usage()
    }

    fn finish_reason(&self) -> Option<&str> {
        self.inner.finish_reason()
    }

    fn error(&self) -> Option<&str> {
        self.inner.error_message()
    }

    fn done(&self) -> bool {
        self.inner.done()
    }

    fn failed(&self) -> bool {
        self.inner.failed()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::providers::anthropic_encoder::test_support::events;
    use serde_json::{json, Value};

    const START: &str = r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"cache_read_input_tokens":4,"cache_creation_input_tokens":2,"output_tokens":1}}}"#;

    fn stream() -> Vec<u8> {
        [
            ("message_start", START),
            ("ping", r#"{"type": "ping"}"#),
            ("content_block_start", r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#),
            ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hm"}}"#),
            ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCkYIBhgCKkD+/="}}"#),
            ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
            ("content_block_start", r#"{"type":"content_block_start","index":1,"content_block":{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{}}}"#),
            ("content_block_stop", r#"{"type":"content_block_stop","index":1}"#),
            ("content_block_start", r#"{"type":"content_block_start","index":2,"content_block":{"type":"text","text":"","citations":[]}}"#),
            ("content_block_delta", r#"{"type":"content_block_delta","index":2,"delta":{"type":"citations_delta","citation":{"type":"web_search_result_location","url":"u"}}}"#),
            ("content_block_delta", r#"{"type":"content_block_delta","index":2,"delta":{"type":"text_delta","text":"4"}}"#),
            ("content_block_stop", r#"{"type":"content_block_stop","index":2}"#),
            ("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"pause_turn","stop_sequence":null},"usage":{"output_tokens":7}}"#),
            ("message_stop", r#"{"type":"message_stop"}"#),
        ]
        .iter()
        .flat_map(|(name, data)| format!("event: {name}\ndata: {data}\n\n").into_bytes())
        .collect()
    }

    fn run(t: &mut PassthroughStream, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        t.feed_into(input, &mut out).unwrap();
        t.finish_into(&mut out).unwrap();
        out
    }

    #[test]
    fn without_a_model_to_write_the_stream_is_copied_verbatim_and_read() {
        let input = stream();
        for model in [None, Some("claude-x".to_owned())] {
            let mut t = PassthroughStream::new(model);
            assert_eq!(run(&mut t, &input), input);
            assert!(t.done());
            assert_eq!(t.finish_reason(), Some("stop"));
            let usage = t.usage().unwrap();
            assert_eq!(usage.prompt_tokens, 16);
            assert_eq!(usage.completion_tokens, 7);
            assert_eq!(usage.cached_tokens, Some(4));
            assert_eq!(usage.cache_write_tokens, Some(2));
        }
    }

    #[test]
    fn only_the_model_of_message_start_changes() {
        let input = stream();
        let mut t = PassthroughStream::new(Some("my \"claude\"".into()));
        let out = run(&mut t, &input);
        let events = events(&out);
        assert_eq!(events[0].1["message"]["model"], "my \"claude\"");
        assert_eq!(events[0].1["message"]["usage"]["input_tokens"], 10);
        // Every other byte is the upstream's.
        let first_end = input.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
        let out_first_end = out.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
        assert_eq!(out[out_first_end..], input[first_end..]);
    }

    #[test]
    fn an_error_event_passes_on_and_ends_the_stream() {
        let mut input = stream();
        input.truncate(input.len() / 2);
        let cut = input.windows(2).rposition(|w| w == b"\n\n").unwrap() + 2;
        input.truncate(cut);
        input.extend_from_slice(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        let mut t = PassthroughStream::new(None);
        let out = run(&mut t, &input);
        let events = events(&out);
        assert_eq!(events.last().unwrap().0, "error");
        assert_eq!(t.error(), Some("Overloaded"));
        assert!(!t.done());
    }

    #[test]
    fn cut_short_is_truncated_and_a_missing_message_stop_is_added() {
        let mut t = PassthroughStream::new(None);
        let out = run(
            &mut t,
            format!("event: message_start\ndata: {START}\n\n").as_bytes(),
        );
        let (name, data) = events(&out).pop().unwrap();
        assert_eq!(name, "error");
        assert_eq!(data["error"]["type"], "api_error");
        assert_eq!(t.error(), Some(TRUNCATED_MESSAGE));

        let input = stream();
        let without_stop = &input
            [..input.len() - "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".len()];
        let mut t = PassthroughStream::new(None);
        let out = run(&mut t, without_stop);
        assert_eq!(events(&out).last().unwrap().0, "message_stop");
        assert!(t.done());
    }

    #[test]
    fn garbage_fails_after_the_good_events() {
        let mut t = PassthroughStream::new(None);
        let mut input = format!("event: message_start\ndata: {START}\n\n").into_bytes();
        input.extend_from_slice(b"event: content_block_delta\ndata: {not json\n\n");
        let out = run(&mut t, &input);
        let events = events(&out);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].0, "error");
        assert!(t.failed());
    }

    #[test]
    fn whole_body_model_rewritten_and_usage_read() {
        let body = br#"{"id":"msg_2","type":"message","role":"assistant","model":"claude-x","content":[{"type":"thinking","thinking":"hmm","signature":"s/+="},{"type":"text","text":"Hi","citations":[{"type":"char_location"}]}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":9,"cache_read_input_tokens":3}}"#;
        let (out, usage) = translate_response(body, None).unwrap();
        assert_eq!(out, body);
        let (out, usage2) = translate_response(body, Some("alias")).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let mut expected: Value = serde_json::from_slice(body).unwrap();
        expected["model"] = json!("alias");
        assert_eq!(v, expected);
        assert_eq!(usage, usage2);
        assert_eq!(usage.unwrap().prompt_tokens, 8);
        let error =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert!(matches!(
            translate_response(error, Some("m")),
            Err(CoreError::Upstream { status: 529, .. })
        ));
    }
}
