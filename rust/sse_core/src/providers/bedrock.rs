//! Amazon Bedrock Converse / ConverseStream answers into OpenAI Chat Completions, through the
//! shared encoder (WIRE.md section 3).
//!
//! * Content blocks: `text` → content; `toolUse` → `tool_calls` (id kept, `input` as the JSON
//!   arguments text); `reasoningContent.reasoningText` → `reasoning_content` plus a
//!   `thinking_blocks` entry with its signature; `reasoningContent.redactedContent` → a
//!   `redacted_thinking` entry. A `toolUse` of [`JSON_TOOL_NAME`] is the tool the request
//!   translator forces to get JSON for `response_format` on models without native structured
//!   output: its input is the answer's content, and it does not count as a tool call.
//! * `stopReason` → `finish_reason`: `end_turn`, `stop_sequence` → stop; `max_tokens`,
//!   `model_context_window_exceeded` → length; `tool_use` → tool_calls; `guardrail_intervened`,
//!   `content_filtered` → content_filter. A `stop_sequence` stop is Anthropic's `stop_sequence`
//!   for a Messages client; which sequence matched is read from
//!   `additionalModelResponseFields.stop_sequence` (the whole answer's, or `messageStop`'s) when
//!   the answer has it (Claude models return it when the request names `/stop_sequence` in
//!   `additionalModelResponseFieldPaths`), else it is `null`.
//! * Usage: prompt = input + cacheRead + cacheWrite, cached = cacheRead, completion = output,
//!   total = totalTokens.
//!
//! Streams are binary AWS event stream messages (framing in `framing::eventstream`, both CRCs
//! checked). `messageStart` gives the role chunk; `contentBlockStart` (sent for tool use only)
//! starts a tool call with the next OpenAI index; `contentBlockDelta` carries text, tool input
//! pieces or reasoning; `contentBlockStop` ends a block (a reasoning block is sent again whole
//! with its signature); `messageStop` gives the stop reason, and `metadata`, which comes *after*
//! it, the usage: the finish chunk is held until `metadata` (or the end of the stream) so that
//! the usage chunk follows it in OpenAI's order. An exception message ends the stream with an
//! error event whose status comes from `:exception-type`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::encoder::{Completion, FinishReason, StreamWriter, ThinkingBlock};
use super::events::Encoder;
use super::Usage;
use crate::error::CoreError;
use crate::error_kind::ErrorKind;
use crate::framing::eventstream::MessageRef;
use crate::framing::EventStreamDecoder;
use crate::json::parse;

/// The tool the request translator forces when a client asks for JSON (`response_format`) from a
/// model without native structured output; its input is returned as the answer's content.
pub const JSON_TOOL_NAME: &str = "agentgateway_json_output";

/// The finish reason of an answer in which the model may have called the forced JSON tool
/// ([`JSON_TOOL_NAME`]): its `tool_use` stop is a plain stop when no other tool was called (the
/// answer is the JSON content). Shared by the Converse and Anthropic decoders.
pub(crate) fn json_tool_reason(
    reason: FinishReason,
    json_tool: bool,
    tool_calls: u32,
) -> FinishReason {
    if json_tool && reason == FinishReason::ToolCalls && tool_calls == 0 {
        FinishReason::Stop
    } else {
        reason
    }
}

/// The number of tool calls of a whole answer, as [`json_tool_reason`] counts them.
pub(crate) fn tool_call_count(completion: &Completion) -> u32 {
    u32::try_from(completion.choice.tool_calls.len()).unwrap_or(u32::MAX)
}

/// The HTTP status an exception type stands for (`throttlingException`, ...).
#[must_use]
pub fn status_for_exception(kind: &str) -> u16 {
    let name = kind.strip_suffix("Exception").unwrap_or(kind);
    if name.eq_ignore_ascii_case("throttling") {
        429
    } else if name.eq_ignore_ascii_case("validation") {
        400
    } else if name.eq_ignore_ascii_case("serviceUnavailable") {
        503
    } else {
        500
    }
}

fn finish_reason(stop_reason: &str) -> FinishReason {
    match stop_reason {
        "max_tokens" => FinishReason::Length,
        "model_context_window_exceeded" => FinishReason::ContextWindowExceeded,
        "stop_sequence" => FinishReason::StopSequence,
        "tool_use" => FinishReason::ToolCalls,
        "guardrail_intervened" | "content_filtered" => FinishReason::ContentFilter,
        // end_turn, stop_sequence, and reasons added after this was written.
        _ => FinishReason::Stop,
    }
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BedrockUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    total_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_write_input_tokens: Option<u64>,
}

impl BedrockUsage {
    fn to_openai(self) -> Usage {
        Usage::from_reported_parts(
            self.input_tokens,
            self.cache_read_input_tokens,
            self.cache_write_input_tokens,
            self.output_tokens,
            self.total_tokens,
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse<'a> {
    #[serde(borrow, default)]
    tool_use_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    /// A JSON value in a whole response; a piece of JSON text in a stream delta.
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReasoningText<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    signature: Option<Cow<'a, str>>,
}

/// `reasoningContent`: a whole block in a response, a piece in a stream delta.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reasoning<'a> {
    #[serde(borrow, default)]
    reasoning_text: Option<ReasoningText<'a>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    signature: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    redacted_content: Option<Cow<'a, str>>,
}

/// A content block of a response, or the `delta` of a `contentBlockDelta` event.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Block<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_use: Option<ToolUse<'a>>,
    #[serde(borrow, default)]
    reasoning_content: Option<Reasoning<'a>>,
}

#[derive(Debug, Deserialize)]
struct OutputMessage<'a> {
    #[serde(borrow, default)]
    content: Vec<Block<'a>>,
}

#[derive(Debug, Deserialize)]
struct Output<'a> {
    #[serde(borrow, default)]
    message: Option<OutputMessage<'a>>,
}

/// `additionalModelResponseFields`: the model's own response fields a request named in
/// `additionalModelResponseFieldPaths` (Claude's `/stop_sequence` is the one read here).
#[derive(Debug, Deserialize)]
struct AdditionalFields<'a> {
    #[serde(borrow, default)]
    stop_sequence: Option<Cow<'a, str>>,
}

/// The matched stop sequence of a `stop_sequence` stop, when the answer carries it.
fn stop_sequence<'a>(
    reason: FinishReason,
    fields: Option<&'a AdditionalFields<'_>>,
) -> Option<&'a str> {
    if reason != FinishReason::StopSequence {
        return None;
    }
    fields?.stop_sequence.as_deref().filter(|s| !s.is_empty())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseResponse<'a> {
    #[serde(borrow, default)]
    output: Option<Output<'a>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    additional_model_response_fields: Option<AdditionalFields<'a>>,
    #[serde(default)]
    usage: Option<BedrockUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Start<'a> {
    #[serde(borrow, default)]
    tool_use: Option<ToolUse<'a>>,
}

/// The payload of any stream event; which fields are set depends on `:event-type`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    #[serde(default)]
    content_block_index: Option<u64>,
    #[serde(borrow, default)]
    start: Option<Start<'a>>,
    #[serde(borrow, default)]
    delta: Option<Block<'a>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    additional_model_response_fields: Option<AdditionalFields<'a>>,
    #[serde(default)]
    usage: Option<BedrockUsage>,
}

#[derive(Debug, Deserialize)]
struct ExceptionBody<'a> {
    #[serde(borrow, default, alias = "Message")]
    message: Option<Cow<'a, str>>,
}

/// An error the upstream reported in an event stream message, as `(HTTP status, code, message)`:
/// an `exception` message (its type in `:exception-type`, its message in the JSON payload) or an
/// `error` message (code and message in headers). `None` for an `event` message. Shared by the
/// Converse stream and InvokeModelWithResponseStream ([`super::bedrock_anthropic`]).
pub(crate) fn stream_error<'a>(message: &MessageRef<'a>) -> Option<(u16, &'a str, Cow<'a, str>)> {
    match message.header(":message-type") {
        Some("event") | None => None,
        Some("exception") => {
            let kind = message.header(":exception-type").unwrap_or("exception");
            let body: Option<ExceptionBody<'_>> = parse(message.payload, "exception").ok();
            let text = body
                .and_then(|b| b.message)
                .unwrap_or(Cow::Borrowed("the upstream reported an error"));
            Some((status_for_exception(kind), kind, text))
        }
        Some(_) => {
            let code = message.header(":error-code").unwrap_or("error");
            let text = message
                .header(":error-message")
                .unwrap_or("the upstream reported an error");
            Some((status_for_exception(code), code, Cow::Borrowed(text)))
        }
    }
}

/// The stream as the event stream framing ended it: `Ok` at a frame boundary, else the message a
/// `stream_truncated` error carries (a frame cut off: the answer may be complete, but what was
/// lost is unknown).
pub(crate) fn finish_frames(decoder: &mut EventStreamDecoder) -> Result<(), String> {
    decoder
        .finish()
        .map_err(|err| format!("the upstream's stream was cut short: {err}"))
}

/// The error a frame that is not an event stream frame ends the stream with.
#[cold]
#[inline(never)]
pub(crate) fn bad_frame(err: &impl std::fmt::Display) -> CoreError {
    CoreError::EventStream(err.to_string())
}

/// Translate a whole Converse response into a `chat.completion` body.
pub fn translate_response(
    body: &[u8],
    client_model: Option<&str>,
) -> Result<(Vec<u8>, Option<Usage>), CoreError> {
    decode_response(body, client_model).map(Completion::into_chat_body)
}

/// Read a whole Converse response into the canonical answer.
pub fn decode_response(body: &[u8], client_model: Option<&str>) -> Result<Completion, CoreError> {
    let response: ConverseResponse<'_> = parse(body, "response body")?;
    let mut completion = Completion::new(client_model.unwrap_or_default());
    let mut json_tool = false;
    let blocks = response
        .output
        .and_then(|o| o.message)
        .map(|m| m.content)
        .unwrap_or_default();
    for block in &blocks {
        if let Some(text) = &block.text {
            completion.choice.content.push_str(text);
        }
        if let Some(tool) = &block.tool_use {
            let arguments = tool.input.map_or("{}", RawValue::get);
            if tool.name.as_deref() == Some(JSON_TOOL_NAME) {
                json_tool = true;
                completion.choice.content.push_str(arguments);
            } else {
                let (id, name) = (tool.tool_use_id.as_deref(), tool.name.as_deref());
                completion.choice.push_tool_call(id, name, arguments);
            }
        }
        if let Some(reasoning) = &block.reasoning_content {
            if let Some(text) = &reasoning.reasoning_text {
                let thinking = text.text.as_deref().unwrap_or_default();
                match text.signature.as_deref().filter(|s| !s.is_empty()) {
                    Some(signature) => completion.choice.push_thinking(thinking, signature),
                    // Unsigned reasoning cannot go back to the model: text only.
                    None => completion.choice.reasoning.push_str(thinking),
                }
            }
            if let Some(data) = &reasoning.redacted_content {
                completion.choice.push_redacted(data);
            }
        }
    }
    let reason = response
        .stop_reason
        .as_deref()
        .map_or(FinishReason::Stop, finish_reason);
    let reason = json_tool_reason(reason, json_tool, tool_call_count(&completion));
    completion.choice.finish_reason = reason;
    completion.choice.stop_sequence =
        stop_sequence(reason, response.additional_model_response_fields.as_ref())
            .map(str::to_owned);
    completion.usage = response.usage.map(BedrockUsage::to_openai);
    Ok(completion)
}

/// What the translator remembers about an open content block.
#[derive(Debug)]
enum OpenBlock {
    /// A tool call: its OpenAI index and whether any argument text was sent.
    Tool { index: u32, sent_arguments: bool },
    /// The forced JSON tool: its input is streamed as content.
    Json,
    /// Reasoning: its text and signature so far (sent whole when the block ends).
    Reasoning { text: String, signature: String },
    /// Redacted reasoning: its data so far.
    Redacted { data: String },
}

/// Translator for one ConverseStream response.
#[derive(Debug)]
pub struct BedrockStream<W = StreamWriter> {
    decoder: EventStreamDecoder,
    state: State<W>,
}

/// Everything but the decoder, so that the decoder can lend each message to it.
#[derive(Debug)]
struct State<W> {
    writer: W,
    /// Open blocks by Bedrock block index (few at a time: a short list beats a map).
    blocks: Vec<(u64, OpenBlock)>,
    stop_seen: bool,
    json_tool: bool,
}

impl<W: Encoder> BedrockStream<W> {
    /// `client_model`: the model name reported to the client; `include_usage`: whether the client
    /// asked for the usage chunk.
    #[must_use]
    pub fn new(client_model: Option<String>, include_usage: bool) -> Self {
        Self {
            decoder: EventStreamDecoder::new(),
            state: State {
                writer: W::for_client(client_model.unwrap_or_default(), include_usage),
                blocks: Vec::new(),
                stop_seen: false,
                json_tool: false,
            },
        }
    }

    /// The shared writer, for the facts it keeps.
    #[must_use]
    pub fn writer(&self) -> &W {
        &self.state.writer
    }

    /// The shared writer, to configure it before the first chunk ([`Encoder::as_choice`]).
    pub fn writer_mut(&mut self) -> &mut W {
        &mut self.state.writer
    }

    /// Translate one chunk of the upstream body (any split), appending complete frames to `out`.
    pub fn feed_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), CoreError> {
        let state = &mut self.state;
        if state.writer.closed() {
            return Ok(());
        }
        let result = self.decoder.feed_with(chunk, |message| {
            if !state.writer.closed() {
                if let Err(err) = state.translate(message, out) {
                    state.writer.fail(out, &err);
                }
            }
        });
        if let Err(err) = result {
            state.writer.fail(out, &bad_frame(&err));
        }
        Ok(())
    }

    /// Signal upstream EOF, appending the last frames to `out`.
    pub fn finish_into(&mut self, out: &mut Vec<u8>) -> Result<(), CoreError> {
        let state = &mut self.state;
        if state.writer.closed() {
            return Ok(());
        }
        if let Err(message) = finish_frames(&mut self.decoder) {
            state
                .writer
                .error_of_kind(out, ErrorKind::StreamTruncated, &message);
            return Ok(());
        }
        if state.stop_seen {
            // messageStop came but no metadata: end without usage.
            state.end(out);
        } else {
            state.writer.truncated(out);
        }
        Ok(())
    }
}

impl<W: Encoder> State<W> {
    fn end(&mut self, out: &mut Vec<u8>) {
        if self.writer.finish_reason() == Some(FinishReason::ToolCalls.as_str()) {
            let reason = json_tool_reason(
                FinishReason::ToolCalls,
                self.json_tool,
                self.writer.tool_call_count(),
            );
            if reason != FinishReason::ToolCalls {
                self.writer.set_finish_reason(reason);
            }
        }
        self.writer.end(out);
    }

    fn block_mut(&mut self, index: Option<u64>) -> Option<&mut OpenBlock> {
        let index = index?;
        self.blocks
            .iter_mut()
            .find(|(i, _)| *i == index)
            .map(|(_, block)| block)
    }

    /// The open block at `index`, created by `make` when it is not open yet (Bedrock sends no
    /// `contentBlockStart` for text and reasoning blocks).
    fn block_or(&mut self, index: Option<u64>, make: fn() -> OpenBlock) -> Option<&mut OpenBlock> {
        let key = index.unwrap_or(u64::MAX);
        if !self.blocks.iter().any(|(i, _)| *i == key) {
            self.blocks.push((key, make()));
        }
        self.block_mut(Some(key))
    }

    fn translate(&mut self, message: MessageRef<'_>, out: &mut Vec<u8>) -> Result<(), CoreError> {
        if let Some((status, code, text)) = stream_error(&message) {
            self.writer.error(out, status, code, &text);
            return Ok(());
        }
        let Some(kind) = message.header(":event-type") else {
            return Ok(());
        };
        if message.payload.is_empty() {
            return Ok(());
        }
        let event: Event<'_> = parse(message.payload, "stream event")?;
        match kind {
            "contentBlockDelta" => {
                if let Some(delta) = &event.delta {
                    self.delta(event.content_block_index, delta, out);
                }
            }
            "messageStart" => self.writer.role(out),
            "contentBlockStart" => {
                if let Some(tool) = event.start.as_ref().and_then(|s| s.tool_use.as_ref()) {
                    let block = if tool.name.as_deref() == Some(JSON_TOOL_NAME) {
                        self.json_tool = true;
                        OpenBlock::Json
                    } else {
                        let index = self.writer.tool_call_start(
                            out,
                            tool.tool_use_id.as_deref().unwrap_or_default(),
                            tool.name.as_deref().unwrap_or_default(),
                        );
                        OpenBlock::Tool {
                            index,
                            sent_arguments: false,
                        }
                    };
                    let key = event.content_block_index.unwrap_or(u64::MAX);
                    self.blocks.retain(|(i, _)| *i != key);
                    self.blocks.push((key, block));
                }
            }
            "contentBlockStop" => {
                let key = event.content_block_index.unwrap_or(u64::MAX);
                if let Some(position) = self.blocks.iter().position(|(i, _)| *i == key) {
                    let (_, block) = self.blocks.swap_remove(position);
                    self.block_stop(block, out);
                }
            }
            "messageStop" => {
                if let Some(reason) = event.stop_reason.as_deref().map(finish_reason) {
                    self.writer.set_finish_reason(reason);
                    let fields = event.additional_model_response_fields.as_ref();
                    if let Some(sequence) = stop_sequence(reason, fields) {
                        self.writer.set_stop_sequence(sequence);
                    }
                }
                self.stop_seen = true;
            }
            "metadata" => {
                if let Some(usage) = event.usage {
                    self.writer.set_usage(usage.to_openai());
                }
                if self.stop_seen {
                    self.end(out);
                }
            }
            // Event types added after this was written.
            _ => {}
        }
        Ok(())
    }

    fn delta(&mut self, index: Option<u64>, delta: &Block<'_>, out: &mut Vec<u8>) {
        if let Some(text) = delta.text.as_deref() {
            self.writer.text(out, text);
        }
        if let Some(piece) = delta
            .tool_use
            .as_ref()
            .and_then(|t| t.input)
            .map(RawValue::get)
        {
            // The input piece is a JSON string holding part of the arguments' JSON text.
            let piece: Cow<'_, str> = serde_json::from_str(piece).unwrap_or(Cow::Borrowed(""));
            match self.block_mut(index) {
                Some(OpenBlock::Tool {
                    index,
                    sent_arguments,
                }) => {
                    let index = *index;
                    *sent_arguments |= !piece.is_empty();
                    self.writer.tool_call_arguments(out, index, &piece);
                }
                Some(OpenBlock::Json) => self.writer.text(out, &piece),
                _ => {}
            }
        }
        if let Some(reasoning) = &delta.reasoning_content {
            if let Some(text) = reasoning.text.as_deref() {
                if let Some(OpenBlock::Reasoning { text: so_far, .. }) =
                    self.block_or(index, new_reasoning)
                {
                    so_far.push_str(text);
                }
                self.writer.reasoning(out, text);
            }
            if let Some(piece) = reasoning.signature.as_deref() {
                if let Some(OpenBlock::Reasoning { signature, .. }) =
                    self.block_or(index, new_reasoning)
                {
                    signature.push_str(piece);
                }
            }
            if let Some(piece) = reasoning.redacted_content.as_deref() {
                if let Some(OpenBlock::Redacted { data }) = self.block_or(index, new_redacted) {
                    data.push_str(piece);
                }
            }
        }
    }

    fn block_stop(&mut self, block: OpenBlock, out: &mut Vec<u8>) {
        match block {
            OpenBlock::Tool {
                index,
                sent_arguments: false,
            } => {
                // A tool without parameters streams no input: send `{}` so the arguments parse.
                self.writer.tool_call_arguments(out, index, "{}");
            }
            OpenBlock::Reasoning { text, signature } if !signature.is_empty() => {
                let block = ThinkingBlock::Thinking {
                    thinking: text,
                    signature,
                };
                self.writer.thinking_block(out, &block);
            }
            OpenBlock::Redacted { data } => {
                self.writer
                    .thinking_block(out, &ThinkingBlock::Redacted { data });
            }
            _ => {}
        }
    }
}

fn new_reasoning() -> OpenBlock {
    OpenBlock::Reasoning {
        text: String::new(),
        signature: String::new(),
    }
}

fn new_redacted() -> OpenBlock {
    OpenBlock::Redacted {
        data: String::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::framing::eventstream::{encode_event, encode_message};
    use crate::providers::encoder::test_support::frames;
    use serde_json::{json, Value};

    fn event(kind: &str, payload: &str) -> Vec<u8> {
        encode_event(kind, payload.as_bytes())
    }

    fn run(t: &mut BedrockStream, input: &[u8]) -> Vec<Value> {
        let mut out = Vec::new();
        t.feed_into(input, &mut out).unwrap();
        t.finish_into(&mut out).unwrap();
        frames(&out)
    }

    fn transcript() -> Vec<u8> {
        [
            event("messageStart", r#"{"p":"abcd","role":"assistant"}"#),
            event(
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"Let me "}},"p":"ab"}"#,
            ),
            event(
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"think."}}}"#,
            ),
            event(
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"signature":"EqQB"}}}"#,
            ),
            event("contentBlockStop", r#"{"contentBlockIndex":0}"#),
            event(
                "contentBlockDelta",
                r#"{"contentBlockIndex":1,"delta":{"text":"Hi"}}"#,
            ),
            event("contentBlockStop", r#"{"contentBlockIndex":1}"#),
            event(
                "contentBlockStart",
                r#"{"contentBlockIndex":2,"start":{"toolUse":{"toolUseId":"tooluse_1","name":"get_weather"}}}"#,
            ),
            event(
                "contentBlockDelta",
                r#"{"contentBlockIndex":2,"delta":{"toolUse":{"input":"{\"city\":"}}}"#,
            ),
            event(
                "contentBlockDelta",
                r#"{"contentBlockIndex":2,"delta":{"toolUse":{"input":" \"Paris\"}"}}}"#,
            ),
            event("contentBlockStop", r#"{"contentBlockIndex":2}"#),
            event(
                "contentBlockStart",
                r#"{"contentBlockIndex":3,"start":{"toolUse":{"toolUseId":"tooluse_2","name":"now"}}}"#,
            ),
            event("contentBlockStop", r#"{"contentBlockIndex":3}"#),
            event("messageStop", r#"{"stopReason":"tool_use"}"#),
            event(
                "metadata",
                r#"{"usage":{"inputTokens":10,"outputTokens":7,"totalTokens":23,"cacheReadInputTokens":4,"cacheWriteInputTokens":2},"metrics":{"latencyMs":120}}"#,
            ),
        ]
        .concat()
    }

    #[test]
    fn stream_reasoning_text_tools_then_finish_usage_done() {
        let mut t = BedrockStream::<StreamWriter>::new(Some("my-model".into()), true);
        let frames = run(&mut t, &transcript());
        let deltas: Vec<&Value> = frames
            .iter()
            .filter_map(|f| f.pointer("/choices/0/delta"))
            .collect();
        assert_eq!(deltas[0]["role"], "assistant");
        assert_eq!(deltas[1]["reasoning_content"], "Let me ");
        assert_eq!(deltas[2]["reasoning_content"], "think.");
        assert_eq!(deltas[3]["thinking_blocks"][0]["thinking"], "Let me think.");
        assert_eq!(deltas[3]["thinking_blocks"][0]["signature"], "EqQB");
        assert_eq!(deltas[4]["content"], "Hi");
        let calls: Vec<&Value> = deltas
            .iter()
            .filter_map(|d| d.pointer("/tool_calls/0"))
            .collect();
        assert_eq!(calls[0]["id"], "tooluse_1");
        assert_eq!(calls[0]["index"], 0);
        assert_eq!(calls[1]["function"]["arguments"], "{\"city\":");
        assert_eq!(calls[2]["function"]["arguments"], " \"Paris\"}");
        assert_eq!(calls[3]["index"], 1);
        assert_eq!(calls[3]["function"]["name"], "now");
        assert_eq!(calls[4]["function"]["arguments"], "{}");
        let n = frames.len();
        assert_eq!(frames[n - 3]["choices"][0]["finish_reason"], "tool_calls");
        let usage = &frames[n - 2]["usage"];
        assert_eq!(usage["prompt_tokens"], 16);
        assert_eq!(usage["completion_tokens"], 7);
        assert_eq!(usage["total_tokens"], 23);
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 4);
        assert_eq!(frames[n - 1], "[DONE]");
        assert!(frames
            .iter()
            .all(|f| f.get("model").is_none_or(|m| m == "my-model")));
    }

    #[test]
    fn stream_split_at_every_offset_gives_the_same_frames() {
        let input = transcript();
        let reference = {
            let mut t = BedrockStream::<StreamWriter>::new(Some("m".into()), true);
            let mut frames = run(&mut t, &input);
            strip_ids(&mut frames);
            frames
        };
        for cut in 0..=input.len() {
            let mut t = BedrockStream::<StreamWriter>::new(Some("m".into()), true);
            let mut out = Vec::new();
            t.feed_into(&input[..cut], &mut out).unwrap();
            t.feed_into(&input[cut..], &mut out).unwrap();
            t.finish_into(&mut out).unwrap();
            let mut frames = frames(&out);
            strip_ids(&mut frames);
            assert_eq!(frames, reference, "cut at {cut}");
        }
    }

    fn strip_ids(frames: &mut [Value]) {
        for frame in frames {
            if let Some(object) = frame.as_object_mut() {
                object.remove("id");
                object.remove("created");
            }
        }
    }

    #[test]
    fn finish_is_held_until_metadata_and_no_usage_unless_asked() {
        let mut t = BedrockStream::<StreamWriter>::new(Some("m".into()), false);
        let mut out = Vec::new();
        let input = [
            event("messageStart", r#"{"role":"assistant"}"#),
            event(
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"text":"x"}}"#,
            ),
            event("messageStop", r#"{"stopReason":"max_tokens"}"#),
        ]
        .concat();
        t.feed_into(&input, &mut out).unwrap();
        assert!(frames(&out)
            .iter()
            .all(|f| f.pointer("/choices/0/finish_reason") == Some(&Value::Null)));
        out.clear();
        let metadata = event(
            "metadata",
            r#"{"usage":{"inputTokens":1,"outputTokens":2,"totalTokens":3}}"#,
        );
        t.feed_into(&metadata, &mut out).unwrap();
        let after = frames(&out);
        assert_eq!(after[0]["choices"][0]["finish_reason"], "length");
        assert_eq!(after[1], "[DONE]");
        assert_eq!(t.writer().usage().unwrap().total_tokens, 3);
    }

    #[test]
    fn stop_without_metadata_ends_at_eof() {
        let mut t = BedrockStream::<StreamWriter>::new(Some("m".into()), true);
        let input = [
            event("messageStart", r#"{"role":"assistant"}"#),
            event("messageStop", r#"{"stopReason":"guardrail_intervened"}"#),
        ]
        .concat();
        let frames = run(&mut t, &input);
        assert_eq!(frames[1]["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(frames[2], "[DONE]");
    }

    #[test]
    fn exception_frames_end_with_their_status() {
        for (kind, status) in [
            ("throttlingException", 429),
            ("validationException", 400),
            ("serviceUnavailableException", 503),
            ("modelStreamErrorException", 500),
            ("internalServerException", 500),
        ] {
            let mut t = BedrockStream::<StreamWriter>::new(Some("m".into()), true);
            let input = [
                event("messageStart", r#"{"role":"assistant"}"#),
                encode_message(
                    &[
                        (":exception-type", kind),
                        (":content-type", "application/json"),
                        (":message-type", "exception"),
                    ],
                    br#"{"message":"slow down"}"#,
                ),
            ]
            .concat();
            let frames = run(&mut t, &input);
            let error = &frames.last().unwrap()["error"];
            assert_eq!(error["status"], status, "{kind}");
            assert_eq!(error["code"], kind);
            assert_eq!(error["message"], "slow down");
            assert_eq!(t.writer().error_message(), Some("slow down"));
        }
    }

    #[test]
    fn recorded_model_stream_error_exception_gives_an_error_event() {
        // The recorded frame, copied into the crate (tests/data/README.md: source and licence).
        let input = include_bytes!("../../tests/data/bedrock_model_stream_error.bin");
        for cut in 0..=input.len() {
            let mut t = BedrockStream::<StreamWriter>::new(Some("m".into()), true);
            let mut out = Vec::new();
            t.feed_into(&input[..cut], &mut out).unwrap();
            t.feed_into(&input[cut..], &mut out).unwrap();
            t.finish_into(&mut out).unwrap();
            let frames = frames(&out);
            assert_eq!(frames.len(), 1, "cut at {cut}");
            let error = &frames[0]["error"];
            assert_eq!(error["code"], "modelStreamErrorException");
            assert_eq!(error["status"], 500);
            assert!(!error["message"].as_str().unwrap().is_empty());
        }
    }

    #[test]
    fn corrupted_crc_is_a_protocol_error_after_the_good_frames() {
        let mut input = [
            event("messageStart", r#"{"role":"assistant"}"#),
            event(
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"text":"ok"}}"#,
            ),
        ]
        .concat();
        let last = input.len() - 1;
        input[last] ^= 0xFF;
        let mut t = BedrockStream::<StreamWriter>::new(Some("m".into()), true);
        let frames = run(&mut t, &input);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1]["error"]["code"], "upstream_protocol_error");
        assert!(t.writer().failed());
    }

    #[test]
    fn truncated_frame_and_missing_stop_are_reported() {
        let whole = event("messageStart", r#"{"role":"assistant"}"#);
        let mut t = BedrockStream::<StreamWriter>::new(Some("m".into()), true);
        let frames = run(&mut t, &whole[..whole.len() - 3]);
        assert_eq!(frames[0]["error"]["code"], "stream_truncated");
        let mut t = BedrockStream::<StreamWriter>::new(Some("m".into()), true);
        let frames = run(&mut t, &whole);
        assert_eq!(frames.last().unwrap()["error"]["code"], "stream_truncated");
    }

    #[test]
    fn forced_json_tool_streams_as_content_with_stop() {
        let input = [
            event("messageStart", r#"{"role":"assistant"}"#),
            event(
                "contentBlockStart",
                r#"{"contentBlockIndex":0,"start":{"toolUse":{"toolUseId":"t","name":"agentgateway_json_output"}}}"#,
            ),
            event(
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"toolUse":{"input":"{\"a\":1}"}}}"#,
            ),
            event("contentBlockStop", r#"{"contentBlockIndex":0}"#),
            event("messageStop", r#"{"stopReason":"tool_use"}"#),
            event("metadata", r#"{"usage":{"inputTokens":1,"outputTokens":1,"totalTokens":2}}"#),
        ]
        .concat();
        let mut t = BedrockStream::<StreamWriter>::new(Some("m".into()), false);
        let frames = run(&mut t, &input);
        assert_eq!(frames[1]["choices"][0]["delta"]["content"], "{\"a\":1}");
        assert_eq!(frames[2]["choices"][0]["finish_reason"], "stop");
        assert!(frames
            .iter()
            .all(|f| f.pointer("/choices/0/delta/tool_calls").is_none()));
    }

    #[test]
    fn whole_response() {
        let body = br#"{"output":{"message":{"role":"assistant","content":[{"reasoningContent":{"reasoningText":{"text":"hmm","signature":"sig"}}},{"reasoningContent":{"redactedContent":"ZW5j"}},{"text":"Hello "},{"text":"there"},{"toolUse":{"toolUseId":"tooluse_1","name":"f","input":{"a":[1,2]}}}]}},"stopReason":"tool_use","usage":{"inputTokens":5,"outputTokens":9,"totalTokens":20,"cacheReadInputTokens":6},"metrics":{"latencyMs":1}}"#;
        let (out, usage) = translate_response(body, Some("alias")).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "alias");
        let message = &v["choices"][0]["message"];
        assert_eq!(message["content"], "Hello there");
        assert_eq!(message["reasoning_content"], "hmm");
        assert_eq!(message["thinking_blocks"][0]["signature"], "sig");
        assert_eq!(message["thinking_blocks"][1]["type"], "redacted_thinking");
        assert_eq!(message["thinking_blocks"][1]["data"], "ZW5j");
        assert_eq!(message["tool_calls"][0]["id"], "tooluse_1");
        assert_eq!(
            message["tool_calls"][0]["function"]["arguments"],
            "{\"a\":[1,2]}"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        let usage = usage.unwrap();
        assert_eq!(usage.prompt_tokens, 11);
        assert_eq!(usage.cached_tokens, Some(6));
        assert_eq!(usage.total_tokens, 20);
    }

    #[test]
    fn whole_response_forced_json_tool_is_content() {
        let body = br#"{"output":{"message":{"role":"assistant","content":[{"toolUse":{"toolUseId":"t","name":"agentgateway_json_output","input":{"answer":42}}}]}},"stopReason":"tool_use","usage":{"inputTokens":1,"outputTokens":1,"totalTokens":2}}"#;
        let (out, _) = translate_response(body, Some("m")).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "{\"answer\":42}");
        assert!(v["choices"][0]["message"].get("tool_calls").is_none());
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn a_stop_sequence_stop_names_the_sequence_for_a_messages_client_when_bedrock_says_it() {
        use crate::providers::anthropic_encoder::{message_json, test_support, MessagesWriter};
        let stream = |stop: &str| {
            [
                event("messageStart", r#"{"role":"assistant"}"#),
                event(
                    "contentBlockDelta",
                    r#"{"contentBlockIndex":0,"delta":{"text":"1, 2, 3"}}"#,
                ),
                event("contentBlockStop", r#"{"contentBlockIndex":0}"#),
                event("messageStop", stop),
                event(
                    "metadata",
                    r#"{"usage":{"inputTokens":3,"outputTokens":5,"totalTokens":8}}"#,
                ),
            ]
            .concat()
        };
        let named = stream(
            r#"{"stopReason":"stop_sequence","additionalModelResponseFields":{"stop_sequence":", 4"}}"#,
        );
        let unnamed = stream(r#"{"stopReason":"stop_sequence"}"#);
        for (input, sequence) in [(named, json!(", 4")), (unnamed, Value::Null)] {
            let mut t = BedrockStream::<MessagesWriter>::new(Some("m".into()), true);
            let mut out = Vec::new();
            for byte in &input {
                t.feed_into(std::slice::from_ref(byte), &mut out).unwrap();
            }
            t.finish_into(&mut out).unwrap();
            let events = test_support::events(&out);
            let delta = &events.iter().find(|(n, _)| n == "message_delta").unwrap().1;
            assert_eq!(delta["delta"]["stop_reason"], "stop_sequence");
            assert_eq!(delta["delta"]["stop_sequence"], sequence);
            assert_eq!(t.writer().finish_reason(), Some("stop"));
        }
        let body = br#"{"output":{"message":{"role":"assistant","content":[{"text":"1, 2, 3"}]}},"stopReason":"stop_sequence","additionalModelResponseFields":{"stop_sequence":", 4"},"usage":{"inputTokens":3,"outputTokens":5,"totalTokens":8}}"#;
        let message: Value =
            serde_json::from_slice(&message_json(&decode_response(body, Some("m")).unwrap()))
                .unwrap();
        assert_eq!(message["stop_reason"], "stop_sequence");
        assert_eq!(message["stop_sequence"], ", 4");
        // end_turn keeps null even when the fields name a sequence
        let body = br#"{"output":{"message":{"role":"assistant","content":[{"text":"x"}]}},"stopReason":"end_turn","additionalModelResponseFields":{"stop_sequence":", 4"}}"#;
        let message: Value =
            serde_json::from_slice(&message_json(&decode_response(body, Some("m")).unwrap()))
                .unwrap();
        assert_eq!(message["stop_reason"], "end_turn");
        assert_eq!(message["stop_sequence"], Value::Null);
    }

    #[test]
    fn stop_reasons() {
        for (reason, expected) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("guardrail_intervened", "content_filter"),
            ("content_filtered", "content_filter"),
        ] {
            assert_eq!(finish_reason(reason).as_str(), expected, "{reason}");
        }
    }
}
