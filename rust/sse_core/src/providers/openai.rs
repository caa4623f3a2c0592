//! OpenAI and OpenAI-compatible upstreams: the wire format already is the client's, so responses
//! pass through with a few top-level edits (see WIRE.md sections 1 and 6):
//!
//! * the upstream `model` is replaced by the model name the client asked for;
//! * when the client did not ask for usage (`stream_options.include_usage`), the usage chunk
//!   (`choices: []` with a non-null `usage`) is dropped and `"usage": null` is removed from the
//!   other chunks — the gateway always asks upstream for usage, to meter every stream;
//! * a stream that ends without `data: [DONE]` is completed with `[DONE]` when the last choice had
//!   a finish reason, and with an error event otherwise (a truncated answer must not look whole);
//! * an upstream error payload is sent on in the gateway's one error event shape
//!   ([`crate::error_kind`]), its message, type and code kept and its status added, and ends the
//!   client's stream.
//!
//! Chunks are split into top-level members only (no value tree), and a chunk needing no edit is
//! copied verbatim.

use std::sync::LazyLock;

use memchr::{memchr, memchr_iter, memmem};
use serde::Deserialize;

use super::sse_writer::{write_data, write_done};
use super::Usage;
use crate::error::CoreError;
use crate::error_kind::{
    error_type_for_status, status_for_error_type, write_error_event, ErrorKind, TRUNCATED_MESSAGE,
};
use crate::framing::{SseEvent, SseParser};
use crate::json::{is_null, string_literal, with_model, write_edited, Edit, Member, Object};

/// The largest event (data plus unterminated line) held while waiting for its end: far above any
/// real chunk, low enough that an upstream that never ends a line cannot exhaust memory.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// Translator for one OpenAI Chat Completions stream.
#[derive(Debug)]
pub struct OpenAIStream {
    parser: SseParser,
    /// Scratch list of the events parsed from one chunk, kept to reuse its allocation.
    events: Vec<SseEvent>,
    /// The client's model name as a JSON string literal.
    client_model: Option<Vec<u8>>,
    include_usage: bool,
    usage: Option<Usage>,
    finish_reason: Option<String>,
    error: Option<String>,
    /// `data: [DONE]` was sent to the client.
    done: bool,
    /// A chunk could not be translated; everything after it is ignored.
    failed: bool,
}

/// The only part of a choice the gateway needs to know.
#[derive(Deserialize)]
struct ChoiceView {
    #[serde(default)]
    finish_reason: Option<String>,
}

/// What a chunk's `choices` tells the gateway.
#[derive(Debug, Default, PartialEq, Eq)]
struct ChoicesFacts {
    /// `choices` is `[]`.
    empty: bool,
    /// The last non-null `finish_reason` in it.
    finish_reason: Option<String>,
}

impl ChoicesFacts {
    /// Lenient: a `choices` of another shape says nothing (and is passed through untouched).
    fn of(text: &str) -> Self {
        if let Some(inner) = text.strip_prefix('[') {
            if inner.trim_start().starts_with(']') {
                return Self {
                    empty: true,
                    finish_reason: None,
                };
            }
        }
        if !may_have_finish_reason(text.as_bytes()) {
            return Self::default();
        }
        match serde_json::from_str::<Vec<ChoiceView>>(text) {
            Ok(list) => Self {
                empty: list.is_empty(),
                finish_reason: list.into_iter().filter_map(|c| c.finish_reason).next_back(),
            },
            Err(_) => Self::default(),
        }
    }
}

/// A cheap pre-check that saves parsing `choices` again in the common chunk, where every
/// `finish_reason` is `null`: false only when each `"finish_reason"` key is followed by `null`.
/// A key spelled with `\u` escapes would not be seen, so any `\u` means "maybe".
fn may_have_finish_reason(text: &[u8]) -> bool {
    const KEY: &[u8] = b"\"finish_reason\"";
    // Built once: building a searcher costs more than searching a chunk.
    static KEY_FINDER: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(KEY));
    let not_null = KEY_FINDER.find_iter(text).any(|at| {
        let after = text.get(at + KEY.len()..).unwrap_or_default();
        let after = after.trim_ascii_start();
        let value = after.strip_prefix(b":").unwrap_or(after).trim_ascii_start();
        !value.starts_with(b"null")
    });
    not_null || memchr_iter(b'\\', text).any(|at| text.get(at + 1) == Some(&b'u'))
}

impl OpenAIStream {
    /// `client_model`: the model name to show the client (`None` keeps the upstream's);
    /// `include_usage`: whether the client asked for the usage chunk.
    #[must_use]
    pub fn new(client_model: Option<String>, include_usage: bool) -> Self {
        Self {
            parser: SseParser::new(),
            events: Vec::new(),
            client_model: client_model.as_deref().map(string_literal),
            include_usage,
            usage: None,
            finish_reason: None,
            error: None,
            done: false,
            failed: false,
        }
    }

    /// Translate one chunk of the upstream body (any split) into complete SSE frames.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<u8>, CoreError> {
        let mut out = Vec::new();
        self.feed_into(chunk, &mut out)?;
        Ok(out)
    }

    /// Signal upstream EOF and return the last frames.
    pub fn finish(&mut self) -> Result<Vec<u8>, CoreError> {
        let mut out = Vec::new();
        self.finish_into(&mut out)?;
        Ok(out)
    }

    /// [`Self::feed`], appending to `out`.
    ///
    /// An upstream chunk that cannot be translated (not a JSON object, or an event over
    /// [`MAX_EVENT_BYTES`]) does not lose the frames before it: they are written, then an error
    /// frame (`"code": "upstream_protocol_error"`), and the translator is [`Self::failed`]: it
    /// ignores the rest of the stream, which the caller should stop reading.
    pub fn feed_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), CoreError> {
        // The output is about the size of the input: grow once rather than by doubling.
        out.reserve(chunk.len());
        self.parser.feed(chunk, &mut self.events);
        self.drain_events(out);
        if self.parser.pending_len() > MAX_EVENT_BYTES && !self.failed {
            self.fail(
                &CoreError::EventTooLarge {
                    limit: MAX_EVENT_BYTES,
                },
                out,
            );
        }
        Ok(())
    }

    /// [`Self::finish`], appending to `out`.
    pub fn finish_into(&mut self, out: &mut Vec<u8>) -> Result<(), CoreError> {
        self.parser.finish(&mut self.events);
        // The events flushed here were never terminated by a blank line. One whose payload does
        // not parse was cut off by the end of the stream: that is a truncation (handled below),
        // not an upstream that sends invalid JSON.
        self.events.retain(|event| !is_cut_off(&event.data));
        self.drain_events(out);
        if self.done || self.failed || self.error.is_some() {
            return Ok(());
        }
        if self.finish_reason.is_some() {
            // The answer is complete; the upstream just did not send `[DONE]`.
            self.done = true;
            write_done(out);
        } else {
            self.record_error(TRUNCATED_MESSAGE.to_owned());
            ErrorKind::StreamTruncated.write_event(out, TRUNCATED_MESSAGE);
        }
        Ok(())
    }

    /// The last non-null usage seen.
    #[must_use]
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The last non-null `choices[*].finish_reason` seen.
    #[must_use]
    pub fn finish_reason(&self) -> Option<&str> {
        self.finish_reason.as_deref()
    }

    /// The first error recorded: an upstream error payload, an untranslatable chunk, or truncation.
    #[must_use]
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Whether `data: [DONE]` was sent.
    #[must_use]
    pub fn done(&self) -> bool {
        self.done
    }

    /// Whether an untranslatable chunk ended the stream (an error frame was written).
    #[must_use]
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn drain_events(&mut self, out: &mut Vec<u8>) {
        let mut events = std::mem::take(&mut self.events);
        for event in &events {
            if let Err(err) = self.translate_event(event, out) {
                self.fail(&err, out);
                break;
            }
        }
        events.clear();
        self.events = events;
    }

    /// End the client's stream with an error frame: the upstream sent something that is not
    /// its wire format.
    #[cold]
    #[inline(never)]
    fn fail(&mut self, err: &CoreError, out: &mut Vec<u8>) {
        self.failed = true;
        let message = format!("the upstream's stream could not be read: {err}");
        err.kind().write_event(out, &message);
        self.record_error(message);
    }

    fn record_error(&mut self, message: String) {
        if self.error.is_none() {
            self.error = Some(message);
        }
    }

    fn translate_event(&mut self, event: &SseEvent, out: &mut Vec<u8>) -> Result<(), CoreError> {
        if self.done || self.failed || self.error.is_some() {
            // Nothing may follow `[DONE]` or an error event on the client's side.
            return Ok(());
        }
        let data = event.data.as_slice();
        if data == b"[DONE]" {
            self.done = true;
            write_done(out);
            return Ok(());
        }
        if event.event.as_deref() == Some("error") {
            self.error_event(data, out);
            return Ok(());
        }
        let chunk = Object::parse(data, "stream chunk")?;
        if let Some(error) = chunk.get("error").filter(|v| !is_null(v)) {
            // The openai SDKs raise on a chunk with an `error` key.
            self.upstream_error(error, out);
            return Ok(());
        }

        let usage = chunk.get("usage").filter(|v| !is_null(v));
        if let Some(usage) = usage.and_then(Usage::from_openai_json) {
            self.usage = Some(usage);
        }
        let mut no_choices = false;
        if let Some(choices) = chunk.get("choices") {
            let facts = ChoicesFacts::of(choices);
            no_choices = facts.empty;
            if let Some(reason) = facts.finish_reason {
                self.finish_reason = Some(reason);
            }
        }

        if !self.include_usage && usage.is_some() && no_choices {
            return Ok(()); // the usage chunk the client did not ask for
        }
        let client_model = self.client_model.as_deref();
        let drop_usage_null = !self.include_usage;
        let edit = |m: &Member<'_>| match client_model {
            Some(cm) if m.key == "model" && m.value.as_bytes() != cm => Edit::Replace(cm),
            _ if drop_usage_null && m.key == "usage" && is_null(m.value) => Edit::Drop,
            _ => Edit::Keep,
        };
        if chunk.0.iter().all(|m| matches!(edit(m), Edit::Keep)) {
            write_data(out, data);
            return Ok(());
        }
        if memchr(b'\n', data).is_none() {
            // Common case: one-line payload, so the edited one is one line too; write in place.
            out.extend_from_slice(b"data: ");
            write_edited(out, data, &chunk.0, edit);
            out.extend_from_slice(b"\n\n");
        } else {
            let mut payload = Vec::with_capacity(data.len() + 16);
            write_edited(&mut payload, data, &chunk.0, edit);
            write_data(out, &payload);
        }
        Ok(())
    }

    /// An SSE event named `error`: pass it on in the shape the openai SDKs raise on.
    #[cold]
    #[inline(never)]
    fn error_event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let parsed = Object::parse(data, "error event").ok();
        if let Some(error) = parsed
            .as_ref()
            .and_then(|o| o.get("error"))
            .filter(|v| !is_null(v))
        {
            self.upstream_error(error, out);
            return;
        }
        // No `error` key: the client would take it for a chunk. Wrap the message instead.
        let message = parsed
            .as_ref()
            .and_then(|o| o.get("message"))
            .and_then(|m| serde_json::from_str::<String>(m).ok())
            .unwrap_or_else(|| String::from_utf8_lossy(data).into_owned());
        ErrorKind::UpstreamReported.write_event(out, &message);
        self.record_error(message);
    }

    /// An upstream's OpenAI `error` value, sent on as the gateway's error event.
    #[cold]
    #[inline(never)]
    fn upstream_error(&mut self, error: &str, out: &mut Vec<u8>) {
        let error = UpstreamError::read(error);
        let kind = error
            .kind
            .as_deref()
            .unwrap_or_else(|| error_type_for_status(error.status));
        write_error_event(out, &error.message, error.status, kind, Some(error.code()));
        self.record_error(error.message);
    }
}

/// What an upstream's OpenAI `error` value says, read leniently.
pub(crate) struct UpstreamError {
    /// Its numeric `code` when that is an HTTP error status, else the status its `type` stands
    /// for, else 502.
    pub(crate) status: u16,
    /// Its `type`, when a string.
    kind: Option<String>,
    /// Its `code`, when a string that is not a number.
    name: Option<String>,
    pub(crate) message: String,
}

impl UpstreamError {
    #[cold]
    #[inline(never)]
    pub(crate) fn read(error: &str) -> Self {
        #[derive(Deserialize)]
        struct View {
            code: Option<serde_json::Value>,
            #[serde(rename = "type")]
            kind: Option<serde_json::Value>,
        }
        let view = serde_json::from_str::<View>(error).ok();
        let code = view.as_ref().and_then(|v| v.code.as_ref());
        let kind = match view.as_ref().and_then(|v| v.kind.as_ref()) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let status = code
            .and_then(|c| match c {
                serde_json::Value::Number(n) => n.as_u64(),
                serde_json::Value::String(s) => s.parse().ok(),
                _ => None,
            })
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| (400..600).contains(n))
            .or_else(|| kind.as_deref().and_then(status_for_error_type))
            .unwrap_or(ErrorKind::UpstreamReported.status());
        let name = match code {
            Some(serde_json::Value::String(s)) if s.parse::<u16>().is_err() => Some(s.clone()),
            _ => None,
        };
        Self {
            status,
            kind,
            name,
            message: error_message(error),
        }
    }

    /// The upstream's name for the error: its `code`, else its `type`, else `upstream_error`.
    pub(crate) fn code(&self) -> &str {
        self.name
            .as_deref()
            .or(self.kind.as_deref())
            .or(ErrorKind::UpstreamReported.code())
            .unwrap_or_default()
    }
}

/// Whether an unterminated payload is an incomplete one (anything but `[DONE]` or a JSON value).
#[cold]
#[inline(never)]
pub(crate) fn is_cut_off(data: &[u8]) -> bool {
    data != b"[DONE]" && serde_json::from_slice::<serde::de::IgnoredAny>(data).is_err()
}

/// A success status whose body is an OpenAI error (some compatible servers answer so): the status
/// and name as [`UpstreamError`] reads them.
#[cold]
#[inline(never)]
pub(crate) fn reported_error(error: &str) -> CoreError {
    let error = UpstreamError::read(error);
    CoreError::Upstream {
        status: error.status,
        code: error.code().to_owned(),
        message: error.message,
    }
}

/// The message of an OpenAI `error` value: `{"message": ...}`, a bare string, or the raw JSON.
#[cold]
#[inline(never)]
fn error_message(error: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(error) {
        Ok(serde_json::Value::String(message)) => message,
        Ok(serde_json::Value::Object(fields)) => match fields.get("message") {
            Some(serde_json::Value::String(message)) => message.clone(),
            _ => error.to_owned(),
        },
        _ => error.to_owned(),
    }
}

/// Translate a whole Chat Completions response body: rewrite the top-level `model` to
/// `client_model` (the body is copied verbatim when there is nothing to change) and return the
/// usage it reports.
pub fn translate_response(
    body: &[u8],
    client_model: Option<&str>,
) -> Result<(Vec<u8>, Option<Usage>), CoreError> {
    let response = Object::parse(body, "response body")?;
    if response.get("choices").is_none() {
        if let Some(error) = response.get("error").filter(|v| !is_null(v)) {
            return Err(reported_error(error));
        }
    }
    let usage = response
        .get("usage")
        .filter(|v| !is_null(v))
        .and_then(Usage::from_openai_json);
    let edited = client_model.and_then(|model| with_model(body, &response, &string_literal(model)));
    Ok((edited.unwrap_or_else(|| body.to_vec()), usage))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const CHUNK: &str = r#"{"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": null}]}"#;
    const CHUNK_USAGE_NULL: &str = r#"{"id":"c1","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}"#;
    const STOP: &str = r#"{"id":"c1","model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
    const USAGE: &str = r#"{"id":"c1","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":40,"total_tokens":52}}"#;

    fn sse(payloads: &[&str]) -> Vec<u8> {
        payloads
            .iter()
            .flat_map(|p| format!("data: {p}\n\n").into_bytes())
            .collect()
    }

    fn truncated_frame() -> Vec<u8> {
        let mut out = Vec::new();
        ErrorKind::StreamTruncated.write_event(&mut out, TRUNCATED_MESSAGE);
        out
    }

    fn run(t: &mut OpenAIStream, input: &[u8]) -> String {
        let mut out = t.feed(input).unwrap();
        out.extend(t.finish().unwrap());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn chunk_without_edits_is_copied_verbatim() {
        let mut t = OpenAIStream::new(None, true);
        let input = sse(&[CHUNK, CHUNK_USAGE_NULL, STOP, USAGE, "[DONE]"]);
        assert_eq!(run(&mut t, &input).as_bytes(), input.as_slice());
        assert!(t.done());
        assert_eq!(t.error(), None);
    }

    #[test]
    fn same_model_needs_no_edit() {
        let mut t = OpenAIStream::new(Some("gpt-4o-mini".to_owned()), true);
        let input = sse(&[CHUNK, "[DONE]"]);
        assert_eq!(run(&mut t, &input).as_bytes(), input.as_slice());
    }

    #[test]
    fn model_rewrite_keeps_key_order_and_other_bytes() {
        let mut t = OpenAIStream::new(Some("my \"alias\"".to_owned()), true);
        let out = String::from_utf8(t.feed(&sse(&[CHUNK])).unwrap()).unwrap();
        assert_eq!(
            out,
            "data: {\"id\": \"c1\", \"object\": \"chat.completion.chunk\", \"created\": 1, \"model\": \"my \\\"alias\\\"\", \"choices\": [{\"index\": 0, \"delta\": {\"content\": \"Hi\"}, \"finish_reason\": null}]}\n\n"
        );
    }

    #[test]
    fn escaped_keys_are_kept_as_spelled() {
        let mut t = OpenAIStream::new(Some("x".to_owned()), true);
        let out = t
            .feed(b"data: {\"model\":\"m\",\"a\\\"b\\u00e9\":1}\n\n")
            .unwrap();
        assert_eq!(out, b"data: {\"model\":\"x\",\"a\\\"b\\u00e9\":1}\n\n");
        // A key spelled with escapes is still recognised.
        let mut t = OpenAIStream::new(Some("x".to_owned()), true);
        let out = t.feed(b"data: {\"mod\\u0065l\":\"m\"}\n\n").unwrap();
        assert_eq!(out, b"data: {\"mod\\u0065l\":\"x\"}\n\n");
    }

    #[test]
    fn usage_chunk_is_dropped_when_client_did_not_ask() {
        let mut t = OpenAIStream::new(None, false);
        let out = run(&mut t, &sse(&[STOP, USAGE, "[DONE]"]));
        assert_eq!(out, format!("data: {STOP}\n\ndata: [DONE]\n\n"));
        assert_eq!(t.usage().map(|u| u.as_tuple()), Some((12, 40, 52)));
    }

    #[test]
    fn usage_chunk_is_kept_when_client_asked() {
        let mut t = OpenAIStream::new(None, true);
        let out = run(&mut t, &sse(&[USAGE, "[DONE]"]));
        assert_eq!(out, format!("data: {USAGE}\n\ndata: [DONE]\n\n"));
        assert_eq!(t.usage().map(|u| u.as_tuple()), Some((12, 40, 52)));
    }

    #[test]
    fn usage_null_is_removed_when_client_did_not_ask() {
        let mut t = OpenAIStream::new(None, false);
        let out = String::from_utf8(t.feed(&sse(&[CHUNK_USAGE_NULL])).unwrap()).unwrap();
        assert_eq!(
            out,
            "data: {\"id\":\"c1\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n"
        );
        assert_eq!(t.usage(), None);
    }

    #[test]
    fn usage_null_is_kept_when_client_asked() {
        let mut t = OpenAIStream::new(None, true);
        let input = sse(&[CHUNK_USAGE_NULL]);
        assert_eq!(t.feed(&input).unwrap(), input);
    }

    #[test]
    fn model_rewrite_and_usage_null_removal_together() {
        let mut t = OpenAIStream::new(Some("alias".to_owned()), false);
        let out = String::from_utf8(t.feed(&sse(&[CHUNK_USAGE_NULL])).unwrap()).unwrap();
        assert_eq!(
            out,
            "data: {\"id\":\"c1\",\"model\":\"alias\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n"
        );
    }

    #[test]
    fn an_error_body_with_a_success_status_is_an_upstream_error() {
        let body = br#"{"error": {"message": "busy", "type": "server_error", "code": 503}}"#;
        assert_eq!(
            translate_response(body, None).err(),
            Some(CoreError::Upstream {
                status: 503,
                code: "server_error".to_owned(),
                message: "busy".to_owned()
            })
        );
        let body = br#"{"error": {"message": "no", "code": "model_overloaded"}}"#;
        assert!(matches!(
            translate_response(body, None),
            Err(CoreError::Upstream { status: 502, ref code, .. }) if code == "model_overloaded"
        ));
    }

    #[test]
    fn facts_are_recorded() {
        let mut t = OpenAIStream::new(None, true);
        run(&mut t, &sse(&[CHUNK, STOP, USAGE, "[DONE]"]));
        assert_eq!(t.finish_reason(), Some("stop"));
        assert_eq!(
            t.usage(),
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 40,
                total_tokens: 52,
                cached_tokens: None,
                reasoning_tokens: None,
                cache_write_tokens: None,
            })
        );
        assert!(t.done());
        assert_eq!(t.error(), None);
    }

    #[test]
    fn last_non_null_finish_reason_wins() {
        let mut t = OpenAIStream::new(None, true);
        t.feed(&sse(&[
            r#"{"choices":[{"finish_reason":"length"},{"finish_reason":null}]}"#,
            r#"{"choices":[{"finish_reason":null}]}"#,
        ]))
        .unwrap();
        assert_eq!(t.finish_reason(), Some("length"));
    }

    fn facts(choices: &str) -> ChoicesFacts {
        ChoicesFacts::of(choices)
    }

    fn reason(reason: &str) -> ChoicesFacts {
        ChoicesFacts {
            empty: false,
            finish_reason: Some(reason.to_owned()),
        }
    }

    #[test]
    fn choices_facts() {
        assert!(facts("[]").empty);
        assert!(facts("[ \n ]").empty);
        assert_eq!(facts("null"), ChoicesFacts::default());
        assert_eq!(facts("{}"), ChoicesFacts::default());
        assert_eq!(
            facts(r#"[{"finish_reason": null}]"#),
            ChoicesFacts::default()
        );
        assert_eq!(facts(r#"[{"delta": {}}]"#), ChoicesFacts::default());
        assert_eq!(facts(r#"[{"finish_reason" : "stop"}]"#), reason("stop"));
        assert_eq!(
            facts(r#"[{"finish_reason":null},{"finish_reason":"length"}]"#),
            reason("length")
        );
        // A key spelled with escapes is still found.
        assert_eq!(facts(r#"[{"finish\u005freason":"stop"}]"#), reason("stop"));
        // The key text inside a string value is not a key (and a wrong shape says nothing).
        assert_eq!(
            facts(r#"[{"delta":{"content":"\"finish_reason\": 1"}}]"#),
            ChoicesFacts::default()
        );
        assert_eq!(facts(r#"[{"finish_reason": 1}]"#), ChoicesFacts::default());
    }

    #[test]
    fn done_is_passed_through_and_ends_the_stream() {
        let mut t = OpenAIStream::new(None, true);
        let out = run(&mut t, &sse(&["[DONE]", CHUNK]));
        assert_eq!(out, "data: [DONE]\n\n");
        assert!(t.done());
    }

    #[test]
    fn error_payload_is_sent_in_the_one_shape_and_ends_the_stream() {
        let payload = r#"{"error": {"message": "overloaded", "type": "server_error", "param": null, "code": null}}"#;
        let mut t = OpenAIStream::new(Some("alias".to_owned()), false);
        let out = run(&mut t, &sse(&[CHUNK, payload, CHUNK, "[DONE]"]));
        assert!(
            out.ends_with(
                "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\",\"param\":null,\"code\":\"server_error\",\"status\":500}}\n\n"
            ),
            "{out}"
        );
        assert_eq!(t.error(), Some("overloaded"));
        assert!(!t.done(), "nothing after an error");
    }

    #[test]
    fn error_payload_keeps_its_type_code_and_numeric_status() {
        for (error, expected) in [
            (
                r#"{"message":"slow","type":"requests","code":"rate_limit_exceeded"}"#,
                r#"{"message":"slow","type":"requests","param":null,"code":"rate_limit_exceeded","status":502}"#,
            ),
            (
                r#"{"message":"slow","type":"rate_limit_error","code":"rate_limit_exceeded"}"#,
                r#"{"message":"slow","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded","status":429}"#,
            ),
            (
                r#"{"message":"loading","code":503}"#,
                r#"{"message":"loading","type":"server_error","param":null,"code":"upstream_error","status":503}"#,
            ),
            (
                r#""just text""#,
                r#"{"message":"just text","type":"server_error","param":null,"code":"upstream_error","status":502}"#,
            ),
        ] {
            let mut t = OpenAIStream::new(None, true);
            let out = run(&mut t, &sse(&[&format!(r#"{{"error":{error}}}"#)]));
            assert_eq!(out, format!("data: {{\"error\":{expected}}}\n\n"));
        }
    }

    #[test]
    fn error_event_is_sent_in_the_one_shape_and_recorded() {
        let payload = r#"{"error":{"message":"boom","type":"x"}}"#;
        let mut t = OpenAIStream::new(None, true);
        let out = run(
            &mut t,
            format!("event: error\ndata: {payload}\n\n").as_bytes(),
        );
        assert_eq!(
            out,
            "data: {\"error\":{\"message\":\"boom\",\"type\":\"x\",\"param\":null,\"code\":\"x\",\"status\":502}}\n\n"
        );
        assert_eq!(t.error(), Some("boom"));
    }

    #[test]
    fn error_event_without_error_key_is_wrapped() {
        for (input, message) in [
            (
                &b"event: error\ndata: {\"message\":\"bad \\\"thing\\\"\"}\n\n"[..],
                "bad \\\"thing\\\"",
            ),
            (b"event: error\ndata: not json\n\n", "not json"),
        ] {
            let mut t = OpenAIStream::new(None, true);
            assert_eq!(
                run(&mut t, input),
                format!("data: {{\"error\":{{\"message\":\"{message}\",\"type\":\"server_error\",\"param\":null,\"code\":\"upstream_error\",\"status\":502}}}}\n\n")
            );
        }
    }

    #[test]
    fn invalid_json_ends_the_stream_with_an_error_frame_after_the_good_ones() {
        let mut t = OpenAIStream::new(None, true);
        let mut input = sse(&[CHUNK]);
        input.extend_from_slice(b"data: {\"choices\": [\n\n");
        input.extend_from_slice(&sse(&[CHUNK]));
        let out = String::from_utf8(t.feed(&input).unwrap()).unwrap();
        let frames: Vec<&str> = out.split_terminator("\n\n").collect();
        assert_eq!(frames.len(), 2, "{out}");
        assert_eq!(frames[0], format!("data: {CHUNK}"));
        assert!(frames[1].starts_with(
            "data: {\"error\":{\"message\":\"the upstream's stream could not be read"
        ));
        assert!(frames[1].contains("\"code\":\"upstream_protocol_error\""));
        assert!(t.failed());
        assert!(t.error().is_some_and(|e| e.contains("not valid JSON")));
        // The stream is over: nothing more comes out, not even a truncation event.
        assert_eq!(t.feed(&sse(&[CHUNK])).unwrap(), b"");
        assert_eq!(t.finish().unwrap(), b"");
    }

    #[test]
    fn endless_event_ends_the_stream_with_an_error_frame() {
        let mut t = OpenAIStream::new(None, true);
        let piece = vec![b'x'; 1024 * 1024];
        t.feed(b"data: ").unwrap();
        let mut out = Vec::new();
        for _ in 0..=MAX_EVENT_BYTES / piece.len() {
            out = t.feed(&piece).unwrap();
            if t.failed() {
                break;
            }
        }
        assert!(t.failed());
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("\"code\":\"event_too_large\""), "{out}");
        assert!(t.error().is_some_and(|e| e.contains("16777216")));
        assert_eq!(t.finish().unwrap(), b"");
    }

    #[test]
    fn non_object_chunk_ends_the_stream_with_an_error_frame() {
        let mut t = OpenAIStream::new(None, true);
        let out = String::from_utf8(t.feed(b"data: [1, 2]\n\n").unwrap()).unwrap();
        assert!(out.contains("upstream_protocol_error"), "{out}");
        assert!(t.failed());
    }

    #[test]
    fn finish_adds_done_after_a_finish_reason() {
        let mut t = OpenAIStream::new(None, true);
        let out = run(&mut t, &sse(&[CHUNK, STOP, USAGE]));
        assert!(out.ends_with(&format!("data: {USAGE}\n\ndata: [DONE]\n\n")));
        assert!(t.done());
        assert_eq!(t.error(), None);
    }

    #[test]
    fn finish_flushes_a_pending_event() {
        let mut t = OpenAIStream::new(None, true);
        let out = run(&mut t, format!("data: {STOP}").as_bytes());
        assert_eq!(out, format!("data: {STOP}\n\ndata: [DONE]\n\n"));
    }

    #[test]
    fn finish_reports_a_truncated_stream() {
        let mut t = OpenAIStream::new(None, true);
        let out = run(&mut t, &sse(&[CHUNK]));
        assert_eq!(
            out.as_bytes(),
            [sse(&[CHUNK]).as_slice(), truncated_frame().as_slice()].concat()
        );
        assert_eq!(t.error(), Some(TRUNCATED_MESSAGE));
        assert!(!t.done());
        // Idempotent.
        assert_eq!(t.finish().unwrap(), b"");
        let frame: serde_json::Value = serde_json::from_slice(&truncated_frame()[6..]).unwrap();
        assert_eq!(frame["error"]["message"], TRUNCATED_MESSAGE);
        assert_eq!(frame["error"]["type"], "server_error");
        assert_eq!(frame["error"]["code"], "stream_truncated");
        assert_eq!(frame["error"]["status"], 502);
    }

    #[test]
    fn payload_cut_off_at_eof_is_a_truncation() {
        let mut t = OpenAIStream::new(None, true);
        let out = run(
            &mut t,
            format!("data: {CHUNK}\n\ndata: {{\"id\": \"c").as_bytes(),
        );
        assert_eq!(
            out.as_bytes(),
            [sse(&[CHUNK]).as_slice(), truncated_frame().as_slice()].concat()
        );
        assert_eq!(t.error(), Some(TRUNCATED_MESSAGE));
    }

    #[test]
    fn payload_cut_off_at_eof_after_a_finish_reason_gets_done() {
        let mut t = OpenAIStream::new(None, true);
        let out = run(
            &mut t,
            format!("data: {STOP}\n\ndata: {{\"usage\": {{").as_bytes(),
        );
        assert_eq!(out, format!("data: {STOP}\n\ndata: [DONE]\n\n"));
    }

    #[test]
    fn empty_stream_is_truncated() {
        let mut t = OpenAIStream::new(None, true);
        assert_eq!(run(&mut t, b"").into_bytes(), truncated_frame());
    }

    #[test]
    fn multi_line_payload_stays_well_framed() {
        let mut t = OpenAIStream::new(Some("alias".to_owned()), true);
        let out = t
            .feed(b"data: {\"model\": \"m\",\ndata: \"choices\": []}\n\n")
            .unwrap();
        assert_eq!(
            out,
            b"data: {\"model\": \"alias\",\ndata: \"choices\": []}\n\n"
        );
        let mut t = OpenAIStream::new(None, true);
        let out = t
            .feed(b"data: {\"model\": \"m\",\ndata: \"choices\": []}\n\n")
            .unwrap();
        assert_eq!(out, b"data: {\"model\": \"m\",\ndata: \"choices\": []}\n\n");
    }

    #[test]
    fn translate_response_rewrites_model() {
        let body = br#"{"id": "x", "model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}"#;
        let (out, usage) = translate_response(body, Some("alias")).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"id": "x", "model": "alias", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}"#
        );
        assert_eq!(usage.map(|u| u.as_tuple()), Some((1, 2, 3)));
    }

    #[test]
    fn translate_response_without_model_is_verbatim() {
        let body = b" {\"model\": \"gpt-4o\", \"usage\": null} ";
        assert_eq!(
            translate_response(body, None).unwrap(),
            (body.to_vec(), None)
        );
        assert_eq!(
            translate_response(body, Some("gpt-4o")).unwrap(),
            (body.to_vec(), None)
        );
    }

    #[test]
    fn translate_response_errors() {
        assert!(matches!(
            translate_response(b"<html>", None),
            Err(CoreError::InvalidJson {
                what: "response body",
                ..
            })
        ));
        assert_eq!(
            translate_response(b"\"text\"", Some("m")),
            Err(CoreError::NotAnObject {
                what: "response body"
            })
        );
    }
}
