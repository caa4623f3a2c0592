//! The Anthropic Messages encoder (issue 19): the canonical events ([`Encoder`]) and whole answers
//! ([`Completion`]) written for an Anthropic client (WIRE.md section 2), from any provider whose
//! answers are decoded (OpenAI chat, Bedrock Converse, Gemini). Anthropic upstreams are not
//! re-encoded: they pass through ([`super::anthropic_passthrough`]).
//!
//! Streams: `message_start` (id, the client's model, empty content, the input usage known so far)
//! then `ping`, as Anthropic starts them; one content block per run of one kind, numbered from 0:
//! text pieces → a `text` block with `text_delta`s; reasoning pieces → a `thinking` block with
//! `thinking_delta`s, closed by the block's `signature_delta` when the whole block arrives; a
//! signed block whose text was not streamed (Gemini's signature on a text part) → a `thinking`
//! block of its own; redacted reasoning → a `redacted_thinking` block; each tool call → a
//! `tool_use` block (the upstream's id, or a generated `toolu_…` one) with `input_json_delta`s.
//! Each block gets its `content_block_stop` when the next starts or the answer ends. The end is
//! `message_delta` (`stop_reason`; `stop_sequence`: the sequence that matched when the upstream
//! says which — Bedrock Converse's `additionalModelResponseFields.stop_sequence`, an
//! OpenAI-compatible server's `stop_reason` / `matched_stop` string — else `null`; the whole usage:
//! Anthropic clients read
//! input and cache counts there too, which an OpenAI upstream gives only at its end) and
//! `message_stop`. An error is `event: error` with `{"type":"error","error":{"type","message"}}`,
//! its type the one its HTTP status stands for
//! ([`crate::error_kind::anthropic_error_type_for_status`]); nothing follows it.
//!
//! Anthropic answers have one choice: pieces of other choices (`n` > 1 upstreams) are dropped.
//! Arguments of a tool call whose block was already closed (an OpenAI upstream interleaving
//! parallel calls) are still sent, as deltas of that call's block index.
//!
//! Usage in Anthropic's terms: `input_tokens` = prompt − cache reads − cache writes,
//! `cache_read_input_tokens` = cached, `cache_creation_input_tokens` = cache writes,
//! `output_tokens` = completion (reasoning included, as Anthropic counts it).

use serde_json::value::RawValue;

use super::encoder::{random_id, Completion, FinishReason, ThinkingBlock};
use super::events::Encoder;
use super::Usage;
use crate::error::CoreError;
use crate::error_kind::{write_anthropic_error_event, ErrorKind};
use crate::json::{write_str, write_u64};

/// A `msg_` id for upstreams that give none.
#[must_use]
pub fn new_message_id() -> String {
    random_id("msg_")
}

/// Append Anthropic's `usage` object for `usage` (zeros when the upstream reported none).
pub fn write_usage(out: &mut Vec<u8>, usage: Option<&Usage>) {
    let usage = usage.copied().unwrap_or_default();
    let cache_read = usage.cached_tokens.unwrap_or(0);
    let cache_write = usage.cache_write_tokens.unwrap_or(0);
    let input = usage
        .prompt_tokens
        .saturating_sub(cache_read)
        .saturating_sub(cache_write);
    out.extend_from_slice(b"{\"input_tokens\":");
    write_u64(out, input);
    out.extend_from_slice(b",\"output_tokens\":");
    write_u64(out, usage.completion_tokens);
    out.extend_from_slice(b",\"cache_creation_input_tokens\":");
    write_u64(out, cache_write);
    out.extend_from_slice(b",\"cache_read_input_tokens\":");
    write_u64(out, cache_read);
    out.push(b'}');
}

/// A tool call's arguments as the `input` object: the JSON text when it is an object, `{}` when
/// it is empty or not one (a call cut off by the token limit).
fn input_object(arguments: &str) -> &str {
    match serde_json::from_str::<&RawValue>(arguments) {
        Ok(raw) if raw.get().starts_with('{') => raw.get(),
        _ => "{}",
    }
}

fn write_thinking(out: &mut Vec<u8>, thinking: &str, signature: &str) {
    out.extend_from_slice(b"{\"type\":\"thinking\",\"thinking\":");
    write_str(out, thinking);
    out.extend_from_slice(b",\"signature\":");
    write_str(out, signature);
    out.push(b'}');
}

/// The Anthropic `message` body of a whole answer (choice 0): its reasoning blocks first (signed
/// blocks as they came; reasoning text no signed block holds as an unsigned `thinking` block),
/// then the text, then the `tool_use` blocks; the stop reason and usage mapped.
#[must_use]
pub fn message_json(completion: &Completion) -> Vec<u8> {
    let choice = &completion.choice;
    let mut out = Vec::with_capacity(256 + choice.content.len() + choice.reasoning.len());
    out.extend_from_slice(b"{\"id\":");
    match &completion.id {
        Some(id) if !id.is_empty() => write_str(&mut out, id),
        _ => write_str(&mut out, &new_message_id()),
    }
    out.extend_from_slice(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    write_str(&mut out, &completion.model);
    out.extend_from_slice(b",\"content\":[");
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
    };
    // Reasoning the signed blocks do not hold (an OpenAI-compatible `reasoning_content`, Gemini
    // thoughts after the last signature): one unsigned block, before them when nothing is signed.
    let mut signed_text = String::new();
    for block in &choice.thinking_blocks {
        if let ThinkingBlock::Thinking { thinking, .. } = block {
            signed_text.push_str(thinking);
        }
    }
    let unsigned = choice
        .reasoning
        .strip_prefix(signed_text.as_str())
        .unwrap_or(&choice.reasoning);
    for block in &choice.thinking_blocks {
        sep(&mut out);
        match block {
            ThinkingBlock::Thinking {
                thinking,
                signature,
            } => write_thinking(&mut out, thinking, signature),
            ThinkingBlock::Redacted { data } => {
                out.extend_from_slice(b"{\"type\":\"redacted_thinking\",\"data\":");
                write_str(&mut out, data);
                out.push(b'}');
            }
        }
    }
    if !unsigned.is_empty() {
        sep(&mut out);
        write_thinking(&mut out, unsigned, "");
    }
    if !choice.content.is_empty() {
        sep(&mut out);
        out.extend_from_slice(b"{\"type\":\"text\",\"text\":");
        write_str(&mut out, &choice.content);
        out.push(b'}');
    }
    for call in &choice.tool_calls {
        sep(&mut out);
        out.extend_from_slice(b"{\"type\":\"tool_use\",\"id\":");
        if call.id.is_empty() {
            write_str(&mut out, &random_id("toolu_"));
        } else {
            write_str(&mut out, &call.id);
        }
        out.extend_from_slice(b",\"name\":");
        write_str(&mut out, &call.name);
        out.extend_from_slice(b",\"input\":");
        out.extend_from_slice(input_object(&call.arguments).as_bytes());
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"stop_reason\":\"");
    out.extend_from_slice(choice.finish_reason.anthropic_str().as_bytes());
    out.extend_from_slice(b"\",\"stop_sequence\":");
    write_stop_sequence(
        &mut out,
        choice.finish_reason,
        choice.stop_sequence.as_deref(),
    );
    out.extend_from_slice(b",\"usage\":");
    write_usage(&mut out, completion.usage.as_ref());
    out.push(b'}');
    out
}

/// `stop_sequence`: the sequence that matched when the model stopped on one and the upstream
/// said which, else `null` (Anthropic sends `null` for every other stop reason).
fn write_stop_sequence(out: &mut Vec<u8>, reason: FinishReason, sequence: Option<&str>) {
    match sequence {
        Some(sequence) if reason == FinishReason::StopSequence => write_str(out, sequence),
        _ => out.extend_from_slice(b"null"),
    }
}

/// The content block being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text,
    Thinking,
    /// A tool call (its index among the tool calls).
    Tool(u32),
}

/// Writes one Anthropic Messages event stream (see the module docs).
#[derive(Debug)]
pub struct MessagesWriter {
    model: String,
    id: Option<String>,
    started: bool,
    /// The index the next content block gets.
    next_block: u32,
    /// The open block and its index.
    open: Open,
    open_index: u32,
    /// The block index of each tool call, by tool-call index.
    tools: Vec<u32>,
    /// Pieces of a choice other than 0 are dropped.
    ignoring: bool,
    finish_reason: Option<FinishReason>,
    /// The stop sequence that matched, when the upstream said which.
    stop_sequence: Option<String>,
    usage: Option<Usage>,
    error: Option<String>,
    done: bool,
    failed: bool,
}

/// `event: <name>\ndata: ` (the payload and `\n\n` follow).
fn open_event(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
}

fn block_delta(out: &mut Vec<u8>, index: u32, kind: &str, field: &str, value: &str) {
    open_event(out, "content_block_delta");
    out.extend_from_slice(b"{\"type\":\"content_block_delta\",\"index\":");
    write_u64(out, index);
    out.extend_from_slice(b",\"delta\":{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"");
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(b"\":");
    write_str(out, value);
    out.extend_from_slice(b"}}\n\n");
}

impl MessagesWriter {
    /// `model`: the name reported to the client.
    #[must_use]
    pub fn new(model: String) -> Self {
        Self {
            model,
            id: None,
            started: false,
            next_block: 0,
            open: Open::None,
            open_index: 0,
            tools: Vec::new(),
            ignoring: false,
            finish_reason: None,
            stop_sequence: None,
            usage: None,
            error: None,
            done: false,
            failed: false,
        }
    }

    /// Whether pieces are written now (the stream is open and choice 0 is selected).
    fn writing(&self) -> bool {
        !self.ignoring && !self.closed()
    }

    /// `message_start` and `ping`, once.
    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = self.id.take().unwrap_or_else(new_message_id);
        open_event(out, "message_start");
        out.extend_from_slice(b"{\"type\":\"message_start\",\"message\":{\"id\":");
        write_str(out, &id);
        out.extend_from_slice(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
        write_str(out, &self.model);
        out.extend_from_slice(
            b",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":",
        );
        write_usage(out, self.usage.as_ref());
        out.extend_from_slice(b"}}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n");
    }

    /// Close the open block, if any.
    fn close_block(&mut self, out: &mut Vec<u8>) {
        if self.open == Open::None {
            return;
        }
        self.open = Open::None;
        open_event(out, "content_block_stop");
        out.extend_from_slice(b"{\"type\":\"content_block_stop\",\"index\":");
        write_u64(out, self.open_index);
        out.extend_from_slice(b"}\n\n");
    }

    /// Close the open block and start a new one whose `content_block` JSON `write` appends;
    /// returns its index.
    fn start_block(
        &mut self,
        out: &mut Vec<u8>,
        open: Open,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> u32 {
        self.start(out);
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        open_event(out, "content_block_start");
        out.extend_from_slice(b"{\"type\":\"content_block_start\",\"index\":");
        write_u64(out, index);
        out.extend_from_slice(b",\"content_block\":");
        write(out);
        out.extend_from_slice(b"}\n\n");
        self.open = open;
        self.open_index = index;
        index
    }

    fn thinking_start(&mut self, out: &mut Vec<u8>) -> u32 {
        self.start_block(out, Open::Thinking, |out| {
            out.extend_from_slice(b"{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}");
        })
    }
}

impl Encoder for MessagesWriter {
    fn for_client(model: String, _include_usage: bool) -> Self {
        Self::new(model)
    }

    fn set_id(&mut self, id: &str) {
        if !self.started && !id.is_empty() {
            self.id = Some(id.to_owned());
        }
    }

    fn select_choice(&mut self, index: u32) {
        self.ignoring = index != 0;
    }

    fn closed(&self) -> bool {
        self.done || self.error.is_some()
    }

    fn role(&mut self, out: &mut Vec<u8>) {
        if self.writing() {
            self.start(out);
        }
    }

    fn text(&mut self, out: &mut Vec<u8>, text: &str) {
        if text.is_empty() || !self.writing() {
            return;
        }
        if self.open != Open::Text {
            self.start_block(out, Open::Text, |out| {
                out.extend_from_slice(b"{\"type\":\"text\",\"text\":\"\"}");
            });
        }
        block_delta(out, self.open_index, "text_delta", "text", text);
    }

    fn reasoning(&mut self, out: &mut Vec<u8>, text: &str) {
        if text.is_empty() || !self.writing() {
            return;
        }
        if self.open != Open::Thinking {
            self.thinking_start(out);
        }
        block_delta(out, self.open_index, "thinking_delta", "thinking", text);
    }

    fn thinking_block(&mut self, out: &mut Vec<u8>, block: &ThinkingBlock) {
        if !self.writing() {
            return;
        }
        match block {
            ThinkingBlock::Thinking {
                thinking,
                signature,
            } => {
                // The text of an open thinking block was streamed already; else it comes now.
                if self.open != Open::Thinking {
                    let index = self.thinking_start(out);
                    if !thinking.is_empty() {
                        block_delta(out, index, "thinking_delta", "thinking", thinking);
                    }
                }
                if !signature.is_empty() {
                    block_delta(
                        out,
                        self.open_index,
                        "signature_delta",
                        "signature",
                        signature,
                    );
                }
                self.close_block(out);
            }
            ThinkingBlock::Redacted { data } => {
                self.start_block(out, Open::Thinking, |out| {
                    out.extend_from_slice(b"{\"type\":\"redacted_thinking\",\"data\":");
                    write_str(out, data);
                    out.push(b'}');
                });
                self.close_block(out);
            }
        }
    }

    fn tool_call_start(&mut self, out: &mut Vec<u8>, id: &str, name: &str) -> u32 {
        let index = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
        if !self.writing() {
            return index;
        }
        let generated;
        let id = if id.is_empty() {
            generated = random_id("toolu_");
            generated.as_str()
        } else {
            id
        };
        let block = self.start_block(out, Open::Tool(index), |out| {
            out.extend_from_slice(b"{\"type\":\"tool_use\",\"id\":");
            write_str(out, id);
            out.extend_from_slice(b",\"name\":");
            write_str(out, name);
            out.extend_from_slice(b",\"input\":{}}");
        });
        self.tools.push(block);
        index
    }

    fn tool_call_arguments(&mut self, out: &mut Vec<u8>, index: u32, arguments: &str) {
        if arguments.is_empty() || !self.writing() {
            return;
        }
        let Some(block) = usize::try_from(index)
            .ok()
            .and_then(|i| self.tools.get(i))
            .copied()
        else {
            return;
        };
        block_delta(out, block, "input_json_delta", "partial_json", arguments);
    }

    fn tool_call_count(&self) -> u32 {
        u32::try_from(self.tools.len()).unwrap_or(u32::MAX)
    }

    fn set_finish_reason(&mut self, reason: FinishReason) {
        if !self.ignoring {
            self.finish_reason = Some(reason);
        }
    }

    fn set_stop_sequence(&mut self, sequence: &str) {
        if !self.ignoring {
            self.stop_sequence = Some(sequence.to_owned());
        }
    }

    fn every_choice_finished(&self) -> bool {
        self.finish_reason.is_some()
    }

    fn set_usage(&mut self, usage: Usage) {
        self.usage = Some(usage);
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        if self.closed() {
            return;
        }
        self.ignoring = false;
        self.start(out);
        self.close_block(out);
        let reason = *self.finish_reason.get_or_insert(FinishReason::Stop);
        open_event(out, "message_delta");
        out.extend_from_slice(b"{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"");
        out.extend_from_slice(reason.anthropic_str().as_bytes());
        out.extend_from_slice(b"\",\"stop_sequence\":");
        write_stop_sequence(out, reason, self.stop_sequence.as_deref());
        out.extend_from_slice(b"},\"usage\":");
        write_usage(out, self.usage.as_ref());
        out.extend_from_slice(b"}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        self.done = true;
    }

    fn error(&mut self, out: &mut Vec<u8>, status: u16, _code: &str, message: &str) {
        if self.closed() {
            return;
        }
        write_anthropic_error_event(out, message, status);
        self.error = Some(message.to_owned());
    }

    fn error_of_kind(&mut self, out: &mut Vec<u8>, kind: ErrorKind, message: &str) {
        if self.closed() {
            return;
        }
        write_anthropic_error_event(out, message, kind.status());
        self.error = Some(message.to_owned());
    }

    #[cold]
    #[inline(never)]
    fn fail(&mut self, out: &mut Vec<u8>, err: &CoreError) {
        if self.closed() {
            return;
        }
        self.failed = true;
        let message = format!("the upstream's stream could not be read: {err}");
        self.error_of_kind(out, err.kind(), &message);
    }

    fn tool_id_prefix(&self) -> &'static str {
        "toolu_"
    }

    fn failed(&self) -> bool {
        self.failed
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn finish_reason(&self) -> Option<&'static str> {
        self.finish_reason.map(FinishReason::as_str)
    }

    fn error_message(&self) -> Option<&str> {
        self.error.as_deref()
    }

    fn done(&self) -> bool {
        self.done
    }
}

/// Helpers for the unit tests: the client's events as `(name, JSON)`.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod test_support {
    use serde_json::Value;

    /// Each `event: <name>\ndata: <json>` frame of `out`.
    pub(crate) fn events(out: &[u8]) -> Vec<(String, Value)> {
        std::str::from_utf8(out)
            .unwrap()
            .split("\n\n")
            .filter(|f| !f.is_empty())
            .map(|f| {
                let (name, data) = f.split_once('\n').unwrap();
                let name = name.strip_prefix("event: ").unwrap().to_owned();
                let data = data.strip_prefix("data: ").unwrap();
                (name, serde_json::from_str(data).unwrap())
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::test_support::events;
    use super::*;
    use crate::providers::encoder::ToolCall;
    use serde_json::{json, Value};

    fn usage() -> Usage {
        Usage::from_prompt_parts(10, 4, 2, 7, None)
    }

    #[test]
    fn a_stream_has_start_blocks_delta_and_stop() {
        let mut w = MessagesWriter::new("claude-alias".into());
        let mut out = Vec::new();
        w.set_id("msg_up");
        w.set_usage(usage());
        w.role(&mut out);
        w.reasoning(&mut out, "Let me ");
        w.reasoning(&mut out, "think.");
        w.thinking_block(
            &mut out,
            &ThinkingBlock::Thinking {
                thinking: "Let me think.".into(),
                signature: "EqQB".into(),
            },
        );
        w.text(&mut out, "Hi \"there\"");
        w.text(&mut out, "");
        let index = w.tool_call_start(&mut out, "", "get_weather");
        w.tool_call_arguments(&mut out, index, "{\"city\":");
        w.tool_call_arguments(&mut out, index, "\"Paris\"}");
        w.set_finish_reason(FinishReason::ToolCalls);
        w.end(&mut out);
        w.text(&mut out, "ignored after the end");
        let events = events(&out);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        for (name, data) in &events {
            assert_eq!(&data["type"], name);
        }
        let message = &events[0].1["message"];
        assert_eq!(message["id"], "msg_up");
        assert_eq!(message["model"], "claude-alias");
        assert_eq!(message["usage"]["input_tokens"], 10);
        assert_eq!(events[2].1["content_block"]["type"], "thinking");
        assert_eq!(
            events[5].1["delta"],
            json!({"type": "signature_delta", "signature": "EqQB"})
        );
        assert_eq!(events[7].1["index"], 1);
        assert_eq!(events[8].1["delta"]["text"], "Hi \"there\"");
        let tool = &events[10].1["content_block"];
        assert_eq!(tool["type"], "tool_use");
        assert!(tool["id"].as_str().unwrap().starts_with("toolu_"));
        assert_eq!(tool["input"], json!({}));
        assert_eq!(events[11].1["delta"]["partial_json"], "{\"city\":");
        assert_eq!(events[13].1["index"], 2);
        let delta = &events[14].1;
        assert_eq!(delta["delta"]["stop_reason"], "tool_use");
        assert_eq!(
            delta["usage"],
            json!({"input_tokens": 10, "output_tokens": 7, "cache_creation_input_tokens": 2,
                   "cache_read_input_tokens": 4})
        );
        assert!(w.done());
        assert_eq!(w.finish_reason(), Some("tool_calls"));
    }

    #[test]
    fn an_empty_answer_still_starts_and_ends() {
        let mut w = MessagesWriter::new("m".into());
        let mut out = Vec::new();
        w.end(&mut out);
        let events = events(&out);
        assert_eq!(events[0].0, "message_start");
        assert!(events[0].1["message"]["id"]
            .as_str()
            .unwrap()
            .starts_with("msg_"));
        assert_eq!(events[2].1["delta"]["stop_reason"], "end_turn");
        assert_eq!(events[3].0, "message_stop");
    }

    #[test]
    fn errors_are_anthropic_error_events_and_end_the_stream() {
        for (status, kind) in [
            (529, "overloaded_error"),
            (503, "overloaded_error"),
            (429, "rate_limit_error"),
            (400, "invalid_request_error"),
        ] {
            let mut w = MessagesWriter::new("m".into());
            let mut out = Vec::new();
            w.text(&mut out, "partial");
            w.error(&mut out, status, "whatever", "Overloaded");
            w.end(&mut out);
            let events = events(&out);
            let (name, data) = events.last().unwrap();
            assert_eq!(name, "error");
            assert_eq!(
                data,
                &json!({"type": "error", "error": {"type": kind, "message": "Overloaded"}})
            );
            assert!(!w.done());
        }
        let mut w = MessagesWriter::new("m".into());
        let mut out = Vec::new();
        w.truncated(&mut out);
        assert_eq!(events(&out)[0].1["error"]["type"], "api_error");
        assert!(w.error_message().is_some());
    }

    #[test]
    fn signed_block_not_streamed_and_redacted_get_blocks_of_their_own() {
        let mut w = MessagesWriter::new("m".into());
        let mut out = Vec::new();
        w.text(&mut out, "a");
        w.thinking_block(
            &mut out,
            &ThinkingBlock::Thinking {
                thinking: String::new(),
                signature: "sig".into(),
            },
        );
        w.thinking_block(&mut out, &ThinkingBlock::Redacted { data: "enc".into() });
        w.select_choice(1);
        w.text(&mut out, "other choice");
        w.select_choice(0);
        w.end(&mut out);
        let events = events(&out);
        let starts: Vec<&Value> = events
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, d)| &d["content_block"])
            .collect();
        assert_eq!(starts.len(), 3);
        assert_eq!(starts[1]["type"], "thinking");
        assert_eq!(
            starts[2],
            &json!({"type": "redacted_thinking", "data": "enc"})
        );
        assert!(!String::from_utf8(out).unwrap().contains("other choice"));
    }

    #[test]
    fn whole_message() {
        let mut c = Completion::new("alias");
        c.id = Some("chatcmpl-1".into());
        c.choice.reasoning = "hmm more".into();
        c.choice.thinking_blocks.push(ThinkingBlock::Thinking {
            thinking: "hmm ".into(),
            signature: "sig".into(),
        });
        c.choice.content = "Hello".into();
        c.choice.tool_calls.push(ToolCall {
            id: "call_1".into(),
            name: "f".into(),
            arguments: "{\"a\": [1]}".into(),
        });
        c.choice.tool_calls.push(ToolCall {
            id: String::new(),
            name: "g".into(),
            arguments: "{\"cut".into(),
        });
        c.choice.finish_reason = FinishReason::ToolCalls;
        c.usage = Some(usage());
        let body: Value = serde_json::from_slice(&message_json(&c)).unwrap();
        assert_eq!(body["id"], "chatcmpl-1");
        assert_eq!(body["type"], "message");
        assert_eq!(body["model"], "alias");
        let content = body["content"].as_array().unwrap();
        assert_eq!(
            content[0],
            json!({"type": "thinking", "thinking": "hmm ", "signature": "sig"})
        );
        assert_eq!(
            content[1],
            json!({"type": "thinking", "thinking": "more", "signature": ""})
        );
        assert_eq!(content[2], json!({"type": "text", "text": "Hello"}));
        assert_eq!(content[3]["input"], json!({"a": [1]}));
        assert_eq!(content[3]["id"], "call_1");
        assert_eq!(content[4]["input"], json!({}));
        assert!(content[4]["id"].as_str().unwrap().starts_with("toolu_"));
        assert_eq!(body["stop_reason"], "tool_use");
        assert_eq!(body["stop_sequence"], Value::Null);
        assert_eq!(body["usage"]["input_tokens"], 10);
        assert_eq!(body["usage"]["cache_read_input_tokens"], 4);
    }

    #[test]
    fn stop_reasons() {
        for (reason, expected) in [
            (FinishReason::Stop, "end_turn"),
            (FinishReason::StopSequence, "stop_sequence"),
            (FinishReason::Length, "max_tokens"),
            (
                FinishReason::ContextWindowExceeded,
                "model_context_window_exceeded",
            ),
            (FinishReason::ToolCalls, "tool_use"),
            (FinishReason::ContentFilter, "refusal"),
            (FinishReason::PauseTurn, "pause_turn"),
        ] {
            let mut c = Completion::new("m");
            c.choice.finish_reason = reason;
            let body: Value = serde_json::from_slice(&message_json(&c)).unwrap();
            assert_eq!(body["stop_reason"], expected);
        }
    }
}
