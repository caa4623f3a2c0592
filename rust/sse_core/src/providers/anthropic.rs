//! Anthropic Messages API answers (also Claude on Vertex AI, which answers the same way) into
//! OpenAI Chat Completions, through the shared encoder (WIRE.md section 2).
//!
//! * Content blocks: `text` → content; `tool_use` → `tool_calls` (id kept, `input` as the JSON
//!   arguments text); `thinking` → `reasoning_content` plus a `thinking_blocks` entry with its
//!   signature; `redacted_thinking` → a `thinking_blocks` entry. Other blocks (server tools,
//!   citations) are not representable in Chat Completions and are left out.
//! * `stop_reason` → `finish_reason`: `end_turn`, `stop_sequence`, `pause_turn` → stop;
//!   `max_tokens`, `model_context_window_exceeded` → length; `tool_use` → tool_calls; `refusal` →
//!   content_filter.
//! * Usage: prompt = input + cache_read + cache_creation, cached = cache_read, completion = output.
//! * A `tool_use` of [`JSON_TOOL_NAME`] is the tool the gateway forced to get a JSON object
//!   (`response_format` `json_object`, providers/anthropic.py): its input is the answer's content
//!   (streamed as content pieces), and the finish reason is `stop` when no other tool was called.
//!
//! Streams: `message_start` gives the id, the role chunk and the input usage; each `tool_use`
//! block gets the next OpenAI tool-call index (tool calls are counted, not blocks);
//! `message_delta` gives the stop reason and the (cumulative) output tokens; `message_stop` ends
//! the stream (finish chunk, usage chunk when asked, `[DONE]`); `ping` is ignored; an `error`
//! event ends the stream with an error event carrying the status its type stands for.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

pub use super::bedrock::JSON_TOOL_NAME;
use super::bedrock::{json_tool_reason, tool_call_count};
use super::encoder::{Completion, FinishReason, StreamWriter, ThinkingBlock};
use super::events::Encoder;
use super::sse_stream::{SseEvents, SseStream};
use super::Usage;
use crate::error::CoreError;
use crate::framing::SseEvent;
use crate::json::parse;

/// The HTTP status an Anthropic error type stands for (their API reference's table).
#[must_use]
pub fn status_for_error_type(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

pub(crate) fn finish_reason(stop_reason: &str) -> FinishReason {
    match stop_reason {
        "max_tokens" => FinishReason::Length,
        "model_context_window_exceeded" => FinishReason::ContextWindowExceeded,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        "stop_sequence" => FinishReason::StopSequence,
        // The server paused a long turn; the client may resume it.
        "pause_turn" => FinishReason::PauseTurn,
        // end_turn, and reasons added after this was written.
        _ => FinishReason::Stop,
    }
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(crate) struct AnthropicUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    /// Fold in a later report: counts present in it replace the earlier ones.
    pub(crate) fn update(&mut self, later: &Self) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = later
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = later
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }

    pub(crate) fn to_openai(self) -> Usage {
        Usage::from_reported_parts(
            self.input_tokens,
            self.cache_read_input_tokens,
            self.cache_creation_input_tokens,
            self.output_tokens,
            None,
        )
    }
}

/// A content block, in a response or a `content_block_start` event (fields by block type).
#[derive(Debug, Deserialize)]
struct Block<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    signature: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct Message<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    error: Option<ErrorBody<'a>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Vec<Block<'a>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Debug, Deserialize)]
struct Delta<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    signature: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody<'a> {
    #[serde(rename = "type", borrow, default)]
    pub(crate) kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) message: Option<Cow<'a, str>>,
}

impl ErrorBody<'_> {
    /// The error's type (`api_error` when missing).
    pub(crate) fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or("api_error")
    }

    /// The error's message (a generic one when missing).
    pub(crate) fn message(&self) -> &str {
        self.message
            .as_deref()
            .unwrap_or("the upstream reported an error")
    }

    /// A whole answer that is this error (a success status whose body is Anthropic's error).
    #[cold]
    #[inline(never)]
    pub(crate) fn into_error(self) -> CoreError {
        CoreError::Upstream {
            status: status_for_error_type(self.kind()),
            code: self.kind().to_owned(),
            message: self.message().to_owned(),
        }
    }
}

/// One stream event's payload; which fields are set depends on its `type`.
#[derive(Debug, Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    message: Option<Message<'a>>,
    #[serde(borrow, default)]
    content_block: Option<Block<'a>>,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
    #[serde(borrow, default)]
    error: Option<ErrorBody<'a>>,
}

/// Translate a whole Messages API response into a `chat.completion` body.
pub fn translate_response(
    body: &[u8],
    client_model: Option<&str>,
) -> Result<(Vec<u8>, Option<Usage>), CoreError> {
    decode_response(body, client_model).map(Completion::into_chat_body)
}

/// Read a whole Messages API response into the canonical answer.
pub fn decode_response(body: &[u8], client_model: Option<&str>) -> Result<Completion, CoreError> {
    let message: Message<'_> = parse(body, "response body")?;
    if message.kind.as_deref() == Some("error") {
        return Err(message.error.unwrap_or_default().into_error());
    }
    let model = client_model
        .or(message.model.as_deref())
        .unwrap_or_default();
    let mut completion = Completion::new(model);
    completion.id = message.id.map(Cow::into_owned);
    let mut json_tool = false;
    for block in &message.content {
        match block.kind.as_ref() {
            "text" => completion
                .choice
                .content
                .push_str(block.text.as_deref().unwrap_or_default()),
            "tool_use" if block.name.as_deref() == Some(JSON_TOOL_NAME) => {
                json_tool = true;
                let input = block.input.map_or("{}", RawValue::get);
                completion.choice.content.push_str(input);
            }
            "tool_use" => completion.choice.push_tool_call(
                block.id.as_deref(),
                block.name.as_deref(),
                block.input.map_or("{}", RawValue::get),
            ),
            "thinking" => completion.choice.push_thinking(
                block.thinking.as_deref().unwrap_or_default(),
                block.signature.as_deref().unwrap_or_default(),
            ),
            "redacted_thinking" => completion
                .choice
                .push_redacted(block.data.as_deref().unwrap_or_default()),
            _ => {}
        }
    }
    let reason = message
        .stop_reason
        .as_deref()
        .map_or(FinishReason::Stop, finish_reason);
    completion.choice.finish_reason =
        json_tool_reason(reason, json_tool, tool_call_count(&completion));
    completion.usage = message.usage.map(AnthropicUsage::to_openai);
    Ok(completion)
}

/// What the translator remembers about an open content block.
#[derive(Debug)]
enum OpenBlock {
    /// A tool call: its OpenAI index and whether any argument text was sent.
    Tool { index: u32, sent_arguments: bool },
    /// Thinking: its text so far (sent again, whole, with the signature when the block ends).
    Thinking { text: String, signature: String },
    /// The gateway's JSON tool ([`JSON_TOOL_NAME`]): its input is sent as content; whether any was.
    Json { sent: bool },
    /// Text, redacted thinking, or a block type without an OpenAI equivalent.
    Other,
}

/// Translator for one Messages API stream.
pub type AnthropicStream<W = StreamWriter> = SseStream<AnthropicEvents, W>;

/// What a Messages API stream's events mean (see the module docs).
#[derive(Debug, Default)]
pub struct AnthropicEvents {
    /// Open blocks by Anthropic block index (few at a time: a short list beats a map).
    blocks: Vec<(u64, OpenBlock)>,
    usage: AnthropicUsage,
    seen_usage: bool,
    stop_reason_seen: bool,
    /// A [`JSON_TOOL_NAME`] block was seen: `tool_use` alone means the answer is complete.
    json_tool: bool,
}

impl SseEvents for AnthropicEvents {
    fn event<W: Encoder>(
        &mut self,
        event: &SseEvent,
        writer: &mut W,
        out: &mut Vec<u8>,
    ) -> Result<(), CoreError> {
        self.translate_json(&event.data, writer, out)
    }

    fn end_of_stream<W: Encoder>(&mut self, writer: &mut W, out: &mut Vec<u8>) {
        self.end(writer, out);
    }
}

impl AnthropicEvents {
    /// The upstream ended with the client's stream still open: end it if the answer was whole.
    pub(crate) fn end<W: Encoder>(&mut self, writer: &mut W, out: &mut Vec<u8>) {
        if self.stop_reason_seen {
            // The answer was complete (message_delta came); only message_stop is missing.
            writer.end(out);
        } else {
            writer.truncated(out);
        }
    }
}

impl AnthropicEvents {
    fn block_mut(&mut self, index: Option<u64>) -> Option<&mut OpenBlock> {
        let index = index?;
        self.blocks
            .iter_mut()
            .find(|(i, _)| *i == index)
            .map(|(_, block)| block)
    }

    /// Translate one event given as its JSON (an SSE event's data, or an event Bedrock's
    /// `InvokeModelWithResponseStream` carried).
    pub(crate) fn translate_json<W: Encoder>(
        &mut self,
        data: &[u8],
        writer: &mut W,
        out: &mut Vec<u8>,
    ) -> Result<(), CoreError> {
        let event: Event<'_> = parse(data, "stream event")?;
        match event.kind.as_ref() {
            "content_block_delta" => {
                let Some(delta) = event.delta else {
                    return Ok(());
                };
                self.delta(event.index, &delta, writer, out);
            }
            "message_start" => {
                if let Some(message) = event.message {
                    if let Some(id) = message.id.as_deref() {
                        writer.set_id(id);
                    }
                    if let Some(usage) = message.usage {
                        self.usage.update(&usage);
                        self.seen_usage = true;
                    }
                }
                writer.role(out);
            }
            "content_block_start" => {
                if let (Some(index), Some(block)) = (event.index, event.content_block) {
                    let open = self.block_start(&block, writer, out);
                    self.blocks.push((index, open));
                }
            }
            "content_block_stop" => {
                let position = event
                    .index
                    .and_then(|index| self.blocks.iter().position(|(i, _)| *i == index));
                if let Some(position) = position {
                    let (_, block) = self.blocks.swap_remove(position);
                    Self::block_stop(block, writer, out);
                }
            }
            "message_delta" => {
                if let Some(reason) = event.delta.as_ref().and_then(|d| d.stop_reason.as_deref()) {
                    let reason = finish_reason(reason);
                    let count = writer.tool_call_count();
                    writer.set_finish_reason(json_tool_reason(reason, self.json_tool, count));
                    self.stop_reason_seen = true;
                }
                if let Some(usage) = event.usage {
                    self.usage.update(&usage);
                    self.seen_usage = true;
                }
                if self.seen_usage {
                    writer.set_usage(self.usage.to_openai());
                }
            }
            "message_stop" => writer.end(out),
            "error" => {
                let error = event.error.unwrap_or_default();
                let kind = error.kind();
                writer.error(out, status_for_error_type(kind), kind, error.message());
            }
            // ping, and event types added after this was written.
            _ => {}
        }
        Ok(())
    }

    fn block_start<W: Encoder>(
        &mut self,
        block: &Block<'_>,
        writer: &mut W,
        out: &mut Vec<u8>,
    ) -> OpenBlock {
        match block.kind.as_ref() {
            "text" => {
                // The start block's text is "" on the wire today; send it should that change.
                writer.text(out, block.text.as_deref().unwrap_or_default());
                OpenBlock::Other
            }
            "tool_use" if block.name.as_deref() == Some(JSON_TOOL_NAME) => {
                self.json_tool = true;
                let initial = block
                    .input
                    .map(RawValue::get)
                    .filter(|raw| raw.trim() != "{}");
                if let Some(initial) = initial {
                    writer.text(out, initial);
                }
                OpenBlock::Json {
                    sent: initial.is_some(),
                }
            }
            "tool_use" => {
                let index = writer.tool_call_start(
                    out,
                    block.id.as_deref().unwrap_or_default(),
                    block.name.as_deref().unwrap_or_default(),
                );
                // The input arrives in input_json_delta pieces; a start block carrying a whole
                // non-empty input (not seen from the API today) is sent as the arguments.
                let initial = block
                    .input
                    .map(RawValue::get)
                    .filter(|raw| raw.trim() != "{}");
                if let Some(initial) = initial {
                    writer.tool_call_arguments(out, index, initial);
                }
                OpenBlock::Tool {
                    index,
                    sent_arguments: initial.is_some(),
                }
            }
            "thinking" => {
                let text = block.thinking.as_deref().unwrap_or_default();
                writer.reasoning(out, text);
                OpenBlock::Thinking {
                    text: text.to_owned(),
                    signature: block.signature.as_deref().unwrap_or_default().to_owned(),
                }
            }
            "redacted_thinking" => {
                let data = block.data.as_deref().unwrap_or_default().to_owned();
                writer.thinking_block(out, &ThinkingBlock::Redacted { data });
                OpenBlock::Other
            }
            _ => OpenBlock::Other,
        }
    }

    fn delta<W: Encoder>(
        &mut self,
        index: Option<u64>,
        delta: &Delta<'_>,
        writer: &mut W,
        out: &mut Vec<u8>,
    ) {
        match delta.kind.as_deref() {
            Some("text_delta") => {
                let text = delta.text.as_deref().unwrap_or_default();
                writer.text(out, text);
            }
            Some("input_json_delta") => {
                let piece = delta.partial_json.as_deref().unwrap_or_default();
                if let Some(OpenBlock::Tool {
                    index,
                    sent_arguments,
                }) = self.block_mut(index)
                {
                    let index = *index;
                    *sent_arguments |= !piece.is_empty();
                    writer.tool_call_arguments(out, index, piece);
                } else if let Some(OpenBlock::Json { sent }) = self.block_mut(index) {
                    *sent |= !piece.is_empty();
                    writer.text(out, piece);
                }
            }
            Some("thinking_delta") => {
                let piece = delta.thinking.as_deref().unwrap_or_default();
                if let Some(OpenBlock::Thinking { text, .. }) = self.block_mut(index) {
                    text.push_str(piece);
                }
                writer.reasoning(out, piece);
            }
            Some("signature_delta") => {
                let piece = delta.signature.as_deref().unwrap_or_default();
                if let Some(OpenBlock::Thinking { signature, .. }) = self.block_mut(index) {
                    signature.push_str(piece);
                }
            }
            // citations_delta and newer delta types have no Chat Completions equivalent.
            _ => {}
        }
    }

    fn block_stop<W: Encoder>(block: OpenBlock, writer: &mut W, out: &mut Vec<u8>) {
        match block {
            OpenBlock::Tool {
                index,
                sent_arguments: false,
            } => {
                // A tool without parameters streams no input: send `{}` so the arguments parse.
                writer.tool_call_arguments(out, index, "{}");
            }
            OpenBlock::Thinking { text, signature } => {
                let block = ThinkingBlock::Thinking {
                    thinking: text,
                    signature,
                };
                writer.thinking_block(out, &block);
            }
            // The forced JSON tool streamed no input: the answer is the empty object.
            OpenBlock::Json { sent: false } => writer.text(out, "{}"),
            OpenBlock::Tool { .. } | OpenBlock::Json { .. } | OpenBlock::Other => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn sse(events: &[(&str, &str)]) -> Vec<u8> {
        events
            .iter()
            .flat_map(|(name, data)| format!("event: {name}\ndata: {data}\n\n").into_bytes())
            .collect()
    }

    const START: &str = r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"usage":{"input_tokens":10,"cache_read_input_tokens":4,"cache_creation_input_tokens":2,"output_tokens":1}}}"#;

    #[test]
    fn thinking_then_text_with_usage() {
        let input = sse(&[
            ("message_start", START),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me "}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"think."}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQB"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            ("ping", r#"{"type":"ping"}"#),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"4"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":1}"#,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":7}}"#,
            ),
            ("message_stop", r#"{"type":"message_stop"}"#),
        ]);
        let mut t = AnthropicStream::<StreamWriter>::new(Some("my-claude".into()), true);
        let frames = t.run(&input);
        let deltas: Vec<&Value> = frames
            .iter()
            .filter_map(|f| f.get("choices").and_then(|c| c.get(0)))
            .map(|c| &c["delta"])
            .collect();
        assert_eq!(deltas[0]["role"], "assistant");
        assert_eq!(deltas[1]["reasoning_content"], "Let me ");
        assert_eq!(deltas[2]["reasoning_content"], "think.");
        assert_eq!(deltas[3]["thinking_blocks"][0]["thinking"], "Let me think.");
        assert_eq!(deltas[3]["thinking_blocks"][0]["signature"], "EqQB");
        assert_eq!(deltas[4]["content"], "4");
        let usage = &frames[frames.len() - 2]["usage"];
        assert_eq!(usage["prompt_tokens"], 16);
        assert_eq!(usage["completion_tokens"], 7);
        assert_eq!(usage["total_tokens"], 23);
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 4);
        assert_eq!(frames.last().unwrap(), "[DONE]");
        assert!(frames
            .iter()
            .all(|f| f.get("id").is_none_or(|id| id == "msg_1")));
        assert!(frames
            .iter()
            .all(|f| f.get("model").is_none_or(|m| m == "my-claude")));
        assert_eq!(t.writer().finish_reason(), Some("stop"));
    }

    #[test]
    fn tool_calls_are_numbered_by_tool_not_by_block_and_empty_input_is_an_object() {
        let input = sse(&[
            ("message_start", START),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_a","name":"now","input":{}}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":1}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_b","name":"weather","input":{}}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Paris\"}"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":2}"#,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":20}}"#,
            ),
            ("message_stop", r#"{"type":"message_stop"}"#),
        ]);
        let mut t = AnthropicStream::<StreamWriter>::new(Some("m".into()), false);
        let frames = t.run(&input);
        let calls: Vec<&Value> = frames
            .iter()
            .filter_map(|f| f.pointer("/choices/0/delta/tool_calls/0"))
            .collect();
        assert_eq!(calls[0]["index"], 0);
        assert_eq!(calls[0]["id"], "toolu_a");
        assert_eq!(calls[1]["index"], 0);
        assert_eq!(calls[1]["function"]["arguments"], "{}");
        assert_eq!(calls[2]["index"], 1);
        assert_eq!(calls[2]["id"], "toolu_b");
        assert_eq!(calls[3]["function"]["arguments"], "{\"city\": \"Paris\"}");
        assert_eq!(
            frames[frames.len() - 2]["choices"][0]["finish_reason"],
            "tool_calls"
        );
        // No usage chunk: the client did not ask.
        assert!(frames.iter().all(|f| f.get("usage").is_none()));
    }

    #[test]
    fn error_event_ends_the_stream_with_its_status() {
        let input = sse(&[
            ("message_start", START),
            (
                "error",
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            ),
        ]);
        let mut t = AnthropicStream::<StreamWriter>::new(Some("m".into()), true);
        let frames = t.run(&input);
        let error = &frames.last().unwrap()["error"];
        assert_eq!(error["message"], "Overloaded");
        assert_eq!(error["code"], "overloaded_error");
        assert_eq!(error["status"], 529);
        assert!(!t.writer().done());
    }

    #[test]
    fn a_stream_cut_short_ends_with_an_error() {
        let mut t = AnthropicStream::<StreamWriter>::new(Some("m".into()), true);
        let input = sse(&[("message_start", START)]);
        let frames = t.run(&input);
        assert_eq!(frames.last().unwrap()["error"]["code"], "stream_truncated");
    }

    #[test]
    fn garbage_ends_the_stream_after_the_good_frames() {
        let mut t = AnthropicStream::<StreamWriter>::new(Some("m".into()), true);
        let mut input = sse(&[("message_start", START)]);
        input.extend_from_slice(b"event: content_block_delta\ndata: {not json\n\n");
        let frames = t.run(&input);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1]["error"]["code"], "upstream_protocol_error");
        assert!(t.writer().failed());
    }

    #[test]
    fn whole_response() {
        let body = br#"{"id":"msg_2","type":"message","role":"assistant","model":"claude-x","content":[{"type":"thinking","thinking":"hmm","signature":"sig"},{"type":"redacted_thinking","data":"enc"},{"type":"text","text":"Hello "},{"type":"text","text":"there"},{"type":"tool_use","id":"toolu_1","name":"f","input":{"a":[1,2]}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":9,"cache_read_input_tokens":null}}"#;
        let (out, usage) = translate_response(body, Some("alias")).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], "msg_2");
        assert_eq!(v["model"], "alias");
        let message = &v["choices"][0]["message"];
        assert_eq!(message["content"], "Hello there");
        assert_eq!(message["reasoning_content"], "hmm");
        assert_eq!(message["thinking_blocks"][1]["type"], "redacted_thinking");
        assert_eq!(
            message["tool_calls"][0]["function"]["arguments"],
            "{\"a\":[1,2]}"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(usage.unwrap().total_tokens, 14);
    }

    #[test]
    fn an_error_body_with_a_success_status_is_an_upstream_error() {
        let body =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            translate_response(body, None).err(),
            Some(CoreError::Upstream {
                status: 529,
                code: "overloaded_error".to_owned(),
                message: "Overloaded".to_owned()
            })
        );
    }

    #[test]
    fn the_forced_json_tool_is_the_answers_content_plain_and_streamed() {
        let body = br#"{"id":"msg_j","type":"message","role":"assistant","model":"claude-x","content":[{"type":"tool_use","id":"toolu_j","name":"agentgateway_json_output","input":{"answer":42}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":9}}"#;
        let completion = decode_response(body, Some("m")).unwrap();
        assert_eq!(completion.choice.content, r#"{"answer":42}"#);
        assert!(completion.choice.tool_calls.is_empty());
        assert_eq!(completion.choice.finish_reason, FinishReason::Stop);

        let stream = sse(&[
            ("message_start", START),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_j","name":"agentgateway_json_output","input":{}}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"answer\":"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"42}"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":20}}"#,
            ),
            ("message_stop", r#"{"type":"message_stop"}"#),
        ]);
        let frames = AnthropicStream::<StreamWriter>::new(Some("m".into()), false).run(&stream);
        let content: String = frames
            .iter()
            .filter_map(|f| f["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(content, r#"{"answer":42}"#);
        assert!(frames
            .iter()
            .all(|f| f["choices"][0]["delta"].get("tool_calls").is_none()));
        assert_eq!(
            frames[frames.len() - 2]["choices"][0]["finish_reason"],
            "stop"
        );
    }

    #[test]
    fn stop_reasons() {
        for (reason, expected) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("pause_turn", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
        ] {
            assert_eq!(finish_reason(reason).as_str(), expected, "{reason}");
        }
    }
}
