//! The hub of the translators: the OpenAI Chat Completions encoder that every non-OpenAI provider
//! writes through. A provider module decodes its own wire format and calls [`StreamWriter`] (for a
//! stream) or fills a [`Completion`] (for a whole response); the bytes the client sees are written
//! here, once, so every provider streams the same chunk shapes, usage, finish reasons and errors.
//!
//! Reasoning round trip. OpenAI's format has no place for the signatures that Anthropic, Bedrock
//! and Gemini attach to reasoning, and without them a later turn that replays the conversation is
//! rejected. The gateway adds two fields to the assistant message (the convention LiteLLM and
//! other OpenAI-compatible servers use, so existing clients keep them):
//!
//! * `reasoning_content`: the reasoning text (streamed as `delta.reasoning_content` pieces);
//! * `thinking_blocks`: `[{"type": "thinking", "thinking", "signature"}` |
//!   `{"type": "redacted_thinking", "data"}]`, each a complete block. In a stream, a block is sent
//!   as one `delta.thinking_blocks` entry when it ends (its text again, with the signature), so a
//!   client appends the deltas' `thinking_blocks` to the message it sends back.
//!
//! The request translators read `thinking_blocks` from assistant messages and send the blocks back
//! to the provider unchanged.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::CoreError;
use crate::error_kind::{write_upstream_error_event, ErrorKind, TRUNCATED_MESSAGE};
use crate::json::{write_str, write_u64};
use crate::providers::events::Encoder;
use crate::providers::sse_writer::write_done;
use crate::providers::Usage;

/// Why the model stopped, in OpenAI's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model ended its turn (Anthropic `end_turn`).
    Stop,
    /// A stop sequence matched (Anthropic `stop_sequence`; OpenAI says `stop`).
    StopSequence,
    /// The token limit (`max_tokens`).
    Length,
    /// The context window is full (Anthropic `model_context_window_exceeded`; OpenAI says `length`).
    ContextWindowExceeded,
    /// The model called tools.
    ToolCalls,
    /// A content filter or the model's refusal stopped the answer (Anthropic `refusal`).
    ContentFilter,
    /// The server paused a long turn; the client may resume it (Anthropic `pause_turn`; OpenAI
    /// says `stop`).
    PauseTurn,
}

impl FinishReason {
    /// The `finish_reason` string.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop | Self::StopSequence | Self::PauseTurn => "stop",
            Self::Length | Self::ContextWindowExceeded => "length",
            Self::ToolCalls => "tool_calls",
            Self::ContentFilter => "content_filter",
        }
    }

    /// The Anthropic `stop_reason` string.
    #[must_use]
    pub fn anthropic_str(self) -> &'static str {
        match self {
            Self::Stop => "end_turn",
            Self::StopSequence => "stop_sequence",
            Self::Length => "max_tokens",
            Self::ContextWindowExceeded => "model_context_window_exceeded",
            Self::ToolCalls => "tool_use",
            Self::ContentFilter => "refusal",
            Self::PauseTurn => "pause_turn",
        }
    }
}

/// A `chatcmpl-` id for upstreams that give none.
#[must_use]
pub fn new_completion_id() -> String {
    random_id("chatcmpl-")
}

/// `prefix` and 96 random bits in hex, from the standard library's per-process random hash keys
/// (no RNG crate needed; ids need to be unique, not secret).
#[must_use]
pub fn random_id(prefix: &str) -> String {
    let state = RandomState::new();
    let mut first = state.build_hasher();
    first.write_u64(now_nanos());
    let mut second = state.build_hasher();
    second.write_u64(first.finish());
    format!(
        "{prefix}{:016x}{:08x}",
        first.finish(),
        second.finish() & 0xFFFF_FFFF
    )
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Seconds since the Unix epoch, for `created`.
#[must_use]
pub fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Append an OpenAI `usage` object.
pub fn write_usage(out: &mut Vec<u8>, usage: &Usage) {
    out.extend_from_slice(b"{\"prompt_tokens\":");
    write_u64(out, usage.prompt_tokens);
    out.extend_from_slice(b",\"completion_tokens\":");
    write_u64(out, usage.completion_tokens);
    out.extend_from_slice(b",\"total_tokens\":");
    write_u64(out, usage.total_tokens);
    out.extend_from_slice(b",\"prompt_tokens_details\":{\"cached_tokens\":");
    write_u64(out, usage.cached_tokens.unwrap_or(0));
    out.extend_from_slice(b"},\"completion_tokens_details\":{\"reasoning_tokens\":");
    write_u64(out, usage.reasoning_tokens.unwrap_or(0));
    out.extend_from_slice(b"}}");
}

/// One reasoning block with what the provider needs to accept it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThinkingBlock {
    /// Reasoning text and the signature that vouches for it.
    Thinking { thinking: String, signature: String },
    /// Reasoning the provider encrypted: only `data` goes back.
    Redacted { data: String },
}

fn write_thinking_block(out: &mut Vec<u8>, block: &ThinkingBlock) {
    match block {
        ThinkingBlock::Thinking {
            thinking,
            signature,
        } => {
            out.extend_from_slice(b"{\"type\":\"thinking\",\"thinking\":");
            write_str(out, thinking);
            out.extend_from_slice(b",\"signature\":");
            write_str(out, signature);
            out.push(b'}');
        }
        ThinkingBlock::Redacted { data } => {
            out.extend_from_slice(b"{\"type\":\"redacted_thinking\",\"data\":");
            write_str(out, data);
            out.push(b'}');
        }
    }
}

/// Writes one client stream: `chat.completion.chunk` events with the same `id`, `created` and
/// `model`, a role on the first, one tool-call index per call, the finish chunk, the usage chunk
/// when the client asked for it, and `data: [DONE]`. It also keeps the facts the gateway logs.
#[derive(Debug)]
pub struct StreamWriter {
    model: String,
    include_usage: bool,
    /// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…,"choices":[`, built at the first chunk.
    prefix: Vec<u8>,
    id: Option<String>,
    /// The choice being written (`index`), 0 unless the upstream answers several (`n` > 1).
    choice: u32,
    /// Added to every choice index written: this stream is choice `base` of an answer merged from
    /// several upstream answers (the gateway's fan-out of `n` > 1, [`Encoder::as_choice`]).
    base: u32,
    /// Whether [`Encoder::end`] writes `[DONE]` (not for one choice of a merged answer).
    end_marker: bool,
    /// The id was given by [`Encoder::as_choice`]: the upstream's is not used.
    id_fixed: bool,
    /// Its state.
    state: ChoiceState,
    /// The state of the other choices seen, by index.
    others: Vec<(u32, ChoiceState)>,
    usage: Option<Usage>,
    error: Option<String>,
    done: bool,
    failed: bool,
}

/// What the writer keeps per choice of a stream.
#[derive(Debug, Default, Clone, Copy)]
struct ChoiceState {
    role_sent: bool,
    tool_calls: u32,
    finish_reason: Option<FinishReason>,
}

const CHOICE_OPEN: &[u8] = b"{\"index\":0,\"delta\":";
const CHOICE_CLOSE: &[u8] = b",\"logprobs\":null,\"finish_reason\":null}]}\n\n";

impl StreamWriter {
    /// `model`: the name reported to the client; `include_usage`: whether it asked for the usage chunk.
    #[must_use]
    pub fn new(model: String, include_usage: bool) -> Self {
        Self {
            model,
            include_usage,
            prefix: Vec::new(),
            id: None,
            choice: 0,
            base: 0,
            end_marker: true,
            id_fixed: false,
            state: ChoiceState::default(),
            others: Vec::new(),
            usage: None,
            error: None,
            done: false,
            failed: false,
        }
    }

    fn prefix(&mut self) -> &[u8] {
        if self.prefix.is_empty() {
            let id = self.id.take().unwrap_or_else(new_completion_id);
            let mut prefix = Vec::with_capacity(96 + id.len() + self.model.len());
            prefix.extend_from_slice(b"data: {\"id\":");
            write_str(&mut prefix, &id);
            prefix.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
            write_u64(&mut prefix, unix_seconds());
            prefix.extend_from_slice(b",\"model\":");
            write_str(&mut prefix, &self.model);
            prefix.extend_from_slice(b",\"choices\":[");
            self.prefix = prefix;
        }
        &self.prefix
    }

    /// `{"index":N,"delta":`
    fn write_choice_open(&self, out: &mut Vec<u8>) {
        let index = self.choice.saturating_add(self.base);
        if index == 0 {
            out.extend_from_slice(CHOICE_OPEN);
        } else {
            out.extend_from_slice(b"{\"index\":");
            write_u64(out, index);
            out.extend_from_slice(b",\"delta\":");
        }
    }

    /// Start a content chunk: everything up to the delta object's opening brace.
    fn open_delta(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.prefix());
        self.write_choice_open(out);
        if self.state.role_sent {
            out.push(b'{');
        } else {
            self.state.role_sent = true;
            out.extend_from_slice(b"{\"role\":\"assistant\",");
        }
    }

    fn close_delta(out: &mut Vec<u8>) {
        out.push(b'}');
        out.extend_from_slice(CHOICE_CLOSE);
    }
}

impl Encoder for StreamWriter {
    fn for_client(model: String, include_usage: bool) -> Self {
        Self::new(model, include_usage)
    }

    /// Use the upstream's id for the chunks (ignored once the first chunk is out).
    fn set_id(&mut self, id: &str) {
        if self.prefix.is_empty() && !id.is_empty() && !self.id_fixed {
            self.id = Some(id.to_owned());
        }
    }

    /// Choice `index` of a merged answer: that index in every chunk, `id` (when not empty) as the
    /// chunks' id whatever the upstream's, and no `[DONE]` at the end.
    fn as_choice(&mut self, index: u32, id: &str) -> bool {
        self.base = index;
        self.end_marker = false;
        if !id.is_empty() && self.prefix.is_empty() {
            self.id = Some(id.to_owned());
            self.id_fixed = true;
        }
        true
    }

    /// Write the next pieces to choice `index` (an upstream that answers `n` > 1 choices); each
    /// choice has its own first chunk with the role, its own tool-call indexes and finish reason.
    fn select_choice(&mut self, index: u32) {
        if index == self.choice {
            return;
        }
        let state = match self.others.iter().position(|(i, _)| *i == index) {
            Some(position) => self.others.swap_remove(position).1,
            None => ChoiceState::default(),
        };
        self.others
            .push((self.choice, std::mem::replace(&mut self.state, state)));
        self.choice = index;
    }

    /// Whether the stream is over on the client's side (`[DONE]` or an error event sent).
    fn closed(&self) -> bool {
        self.done || self.error.is_some()
    }

    /// The first chunk, `{"role": "assistant", "content": ""}`, unless a chunk was already sent.
    fn role(&mut self, out: &mut Vec<u8>) {
        if !self.state.role_sent && !self.closed() {
            self.open_delta(out);
            out.extend_from_slice(b"\"content\":\"\"");
            Self::close_delta(out);
        }
    }

    /// A piece of the answer's text (nothing is sent for an empty piece).
    fn text(&mut self, out: &mut Vec<u8>, text: &str) {
        if !text.is_empty() && !self.closed() {
            self.open_delta(out);
            out.extend_from_slice(b"\"content\":");
            write_str(out, text);
            Self::close_delta(out);
        }
    }

    /// A piece of reasoning text (`delta.reasoning_content`).
    fn reasoning(&mut self, out: &mut Vec<u8>, text: &str) {
        if !text.is_empty() && !self.closed() {
            self.open_delta(out);
            out.extend_from_slice(b"\"reasoning_content\":");
            write_str(out, text);
            Self::close_delta(out);
        }
    }

    /// A complete reasoning block with its signature (`delta.thinking_blocks`), see the module docs.
    fn thinking_block(&mut self, out: &mut Vec<u8>, block: &ThinkingBlock) {
        if !self.closed() {
            self.open_delta(out);
            out.extend_from_slice(b"\"thinking_blocks\":[");
            write_thinking_block(out, block);
            out.push(b']');
            Self::close_delta(out);
        }
    }

    /// The first piece of a tool call: its id and name. Returns the OpenAI index given to it
    /// (tool calls are numbered in order, whatever the provider's own block numbering).
    fn tool_call_start(&mut self, out: &mut Vec<u8>, id: &str, name: &str) -> u32 {
        let index = self.state.tool_calls;
        self.state.tool_calls += 1;
        if !self.closed() {
            self.open_delta(out);
            out.extend_from_slice(b"\"tool_calls\":[{\"index\":");
            write_u64(out, index);
            out.extend_from_slice(b",\"id\":");
            write_str(out, id);
            out.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
            write_str(out, name);
            out.extend_from_slice(b",\"arguments\":\"\"}}]");
            Self::close_delta(out);
        }
        index
    }

    /// More of the arguments (a JSON text in pieces) of the tool call with OpenAI index `index`.
    fn tool_call_arguments(&mut self, out: &mut Vec<u8>, index: u32, arguments: &str) {
        if !arguments.is_empty() && !self.closed() {
            self.open_delta(out);
            out.extend_from_slice(b"\"tool_calls\":[{\"index\":");
            write_u64(out, index);
            out.extend_from_slice(b",\"function\":{\"arguments\":");
            write_str(out, arguments);
            out.extend_from_slice(b"}}]");
            Self::close_delta(out);
        }
    }

    /// How many tool calls were started (in the current choice).
    fn tool_call_count(&self) -> u32 {
        self.state.tool_calls
    }

    /// Record why the model stopped (the current choice); the finish chunk is written by [`Self::end`].
    fn set_finish_reason(&mut self, reason: FinishReason) {
        self.state.finish_reason = Some(reason);
    }

    /// Whether every choice seen has a finish reason (and one was seen).
    fn every_choice_finished(&self) -> bool {
        self.state.finish_reason.is_some()
            && self.others.iter().all(|(_, s)| s.finish_reason.is_some())
    }

    /// Record the usage to report (the last one recorded wins).
    fn set_usage(&mut self, usage: Usage) {
        self.usage = Some(usage);
    }

    /// End the stream: the finish chunk (`stop` when the upstream gave no reason), the usage chunk
    /// if the client asked for it and the upstream reported one, and `[DONE]`.
    fn end(&mut self, out: &mut Vec<u8>) {
        if self.closed() {
            return;
        }
        // One finish chunk per choice, in index order (`stop` for a choice the upstream gave none).
        let mut indexes: Vec<u32> = self.others.iter().map(|(i, _)| *i).collect();
        indexes.push(self.choice);
        indexes.sort_unstable();
        for index in indexes {
            self.select_choice(index);
            let reason = *self.state.finish_reason.get_or_insert(FinishReason::Stop);
            self.role(out);
            out.extend_from_slice(self.prefix());
            self.write_choice_open(out);
            out.extend_from_slice(b"{},\"logprobs\":null,\"finish_reason\":\"");
            out.extend_from_slice(reason.as_str().as_bytes());
            out.extend_from_slice(b"\"}]}\n\n");
        }
        if self.include_usage {
            if let Some(usage) = self.usage {
                out.extend_from_slice(self.prefix());
                out.extend_from_slice(b"],\"usage\":");
                write_usage(out, &usage);
                out.extend_from_slice(b"}\n\n");
            }
        }
        self.done = true;
        if self.end_marker {
            write_done(out);
        }
    }

    /// End the stream with an error the upstream reported: `status` is the HTTP status it stands
    /// for and `code` the upstream's name for it (see
    /// [`crate::error_kind::write_upstream_error_event`]); nothing is sent after it.
    fn error(&mut self, out: &mut Vec<u8>, status: u16, code: &str, message: &str) {
        if self.closed() {
            return;
        }
        write_upstream_error_event(out, message, status, code);
        self.error = Some(message.to_owned());
    }

    /// End the stream with an error of the gateway's own vocabulary (see [`ErrorKind`]).
    fn error_of_kind(&mut self, out: &mut Vec<u8>, kind: ErrorKind, message: &str) {
        if self.closed() {
            return;
        }
        kind.write_event(out, message);
        self.error = Some(message.to_owned());
    }

    /// End the stream because the upstream sent something that is not its wire format (`err`):
    /// an error event of `err`'s kind (`upstream_protocol_error`, `event_too_large`); the caller
    /// should stop reading.
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

    /// End a stream that stopped before its end: an error event of kind `stream_truncated`.
    #[cold]
    #[inline(never)]
    fn truncated(&mut self, out: &mut Vec<u8>) {
        self.error_of_kind(out, ErrorKind::StreamTruncated, TRUNCATED_MESSAGE);
    }

    fn tool_id_prefix(&self) -> &'static str {
        "call_"
    }

    /// Whether [`Self::fail`] ended the stream.
    fn failed(&self) -> bool {
        self.failed
    }

    /// The last usage recorded.
    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The finish reason recorded for the first choice.
    fn finish_reason(&self) -> Option<&'static str> {
        let first = if self.choice == 0 {
            Some(&self.state)
        } else {
            self.others.iter().find(|(i, _)| *i == 0).map(|(_, s)| s)
        };
        first
            .and_then(|s| s.finish_reason)
            .map(FinishReason::as_str)
    }

    /// The message of the error event sent, if any.
    fn error_message(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Whether `[DONE]` was sent.
    fn done(&self) -> bool {
        self.done
    }
}

/// One tool call of a whole response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as a JSON text.
    pub arguments: String,
}

/// One choice of a whole answer: the assistant message and why it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub content: String,
    pub reasoning: String,
    pub thinking_blocks: Vec<ThinkingBlock>,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: FinishReason,
    /// The stop sequence that matched, when the upstream says which (Anthropic's
    /// `stop_sequence`; OpenAI's format has no place for it).
    pub stop_sequence: Option<String>,
}

impl Default for Choice {
    fn default() -> Self {
        Self {
            content: String::new(),
            reasoning: String::new(),
            thinking_blocks: Vec::new(),
            tool_calls: Vec::new(),
            finish_reason: FinishReason::Stop,
            stop_sequence: None,
        }
    }
}

impl Choice {
    /// Add a tool call from the fields an upstream gave (a missing id or name is empty).
    pub(crate) fn push_tool_call(&mut self, id: Option<&str>, name: Option<&str>, arguments: &str) {
        self.tool_calls.push(ToolCall {
            id: id.unwrap_or_default().to_owned(),
            name: name.unwrap_or_default().to_owned(),
            arguments: arguments.to_owned(),
        });
    }

    /// Add a reasoning block: its text joins the reasoning, and the block keeps it with its
    /// signature.
    pub(crate) fn push_thinking(&mut self, thinking: &str, signature: &str) {
        self.reasoning.push_str(thinking);
        self.thinking_blocks.push(ThinkingBlock::Thinking {
            thinking: thinking.to_owned(),
            signature: signature.to_owned(),
        });
    }

    /// Add a redacted (encrypted) reasoning block.
    pub(crate) fn push_redacted(&mut self, data: &str) {
        self.thinking_blocks.push(ThinkingBlock::Redacted {
            data: data.to_owned(),
        });
    }

    /// `{"index", "message", "logprobs", "finish_reason"}`. `content` is null when the answer is only
    /// tool calls, as OpenAI sends it; `reasoning_content` and `thinking_blocks` appear only when
    /// there was reasoning.
    fn write(&self, out: &mut Vec<u8>, index: usize) {
        out.extend_from_slice(b"{\"index\":");
        write_u64(out, u64::try_from(index).unwrap_or(u64::MAX));
        out.extend_from_slice(b",\"message\":{\"role\":\"assistant\",\"content\":");
        if self.content.is_empty() && !self.tool_calls.is_empty() {
            out.extend_from_slice(b"null");
        } else {
            write_str(out, &self.content);
        }
        if !self.reasoning.is_empty() {
            out.extend_from_slice(b",\"reasoning_content\":");
            write_str(out, &self.reasoning);
        }
        if !self.thinking_blocks.is_empty() {
            out.extend_from_slice(b",\"thinking_blocks\":[");
            for (i, block) in self.thinking_blocks.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_thinking_block(out, block);
            }
            out.push(b']');
        }
        if !self.tool_calls.is_empty() {
            out.extend_from_slice(b",\"tool_calls\":[");
            for (i, call) in self.tool_calls.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"id\":");
                write_str(out, &call.id);
                out.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
                write_str(out, &call.name);
                out.extend_from_slice(b",\"arguments\":");
                write_str(out, &call.arguments);
                out.extend_from_slice(b"}}");
            }
            out.push(b']');
        }
        out.extend_from_slice(b",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"");
        out.extend_from_slice(self.finish_reason.as_str().as_bytes());
        out.extend_from_slice(b"\"}");
    }
}

/// A whole assistant answer in canonical form, written as an OpenAI `chat.completion` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The upstream's id, or `None` to generate one.
    pub id: Option<String>,
    pub model: String,
    /// Choice 0.
    pub choice: Choice,
    /// Choices 1, 2, … of an upstream that answers several (`n` > 1).
    pub more_choices: Vec<Choice>,
    pub usage: Option<Usage>,
}

impl Completion {
    /// The `chat.completion` body of this answer and its usage (every provider's whole answer for
    /// an OpenAI client).
    #[must_use]
    pub fn into_chat_body(self) -> (Vec<u8>, Option<Usage>) {
        (self.to_json(), self.usage)
    }

    /// An empty answer for `model` that stopped normally.
    #[must_use]
    pub fn new(model: &str) -> Self {
        Self {
            id: None,
            model: model.to_owned(),
            choice: Choice::default(),
            more_choices: Vec::new(),
            usage: None,
        }
    }

    /// The OpenAI body. `content` is null when the answer is only tool calls, as OpenAI sends it;
    /// `reasoning_content` and `thinking_blocks` appear only when there was reasoning.
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(256 + self.choice.content.len() + self.choice.reasoning.len());
        out.extend_from_slice(b"{\"id\":");
        match &self.id {
            Some(id) => write_str(&mut out, id),
            None => write_str(&mut out, &new_completion_id()),
        }
        out.extend_from_slice(b",\"object\":\"chat.completion\",\"created\":");
        write_u64(&mut out, unix_seconds());
        out.extend_from_slice(b",\"model\":");
        write_str(&mut out, &self.model);
        out.extend_from_slice(b",\"choices\":[");
        for (index, choice) in std::iter::once(&self.choice)
            .chain(&self.more_choices)
            .enumerate()
        {
            if index > 0 {
                out.push(b',');
            }
            choice.write(&mut out, index);
        }
        out.push(b']');
        if let Some(usage) = &self.usage {
            out.extend_from_slice(b",\"usage\":");
            write_usage(&mut out, usage);
        }
        out.push(b'}');
        out
    }
}

/// Helpers for the translators' unit tests: the client's frames as JSON.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod test_support {
    use serde_json::Value;

    /// Each `data:` frame of `out` parsed as JSON; `[DONE]` (or any non-JSON payload) as a string.
    pub(crate) fn frames(out: &[u8]) -> Vec<Value> {
        std::str::from_utf8(out)
            .unwrap()
            .split("\n\n")
            .filter(|f| !f.is_empty())
            .map(|f| {
                let data = f.strip_prefix("data: ").unwrap();
                serde_json::from_str(data).unwrap_or(Value::String(data.to_owned()))
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::test_support::frames;
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_stream_has_role_then_deltas_then_finish_usage_and_done() {
        let mut w = StreamWriter::new("claude".into(), true);
        let mut out = Vec::new();
        w.set_id("msg_1");
        w.role(&mut out);
        w.text(&mut out, "Hi \"there\"\n");
        w.text(&mut out, "");
        let index = w.tool_call_start(&mut out, "toolu_1", "get_weather");
        w.tool_call_arguments(&mut out, index, "{\"city\":");
        w.set_finish_reason(FinishReason::ToolCalls);
        w.set_usage(Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
            total_tokens: 15,
            cached_tokens: Some(3),
            reasoning_tokens: None,
            cache_write_tokens: None,
        });
        w.end(&mut out);
        w.text(&mut out, "ignored after the end");
        let events = frames(&out);
        assert_eq!(events.len(), 7);
        for event in &events[..6] {
            assert_eq!(event["id"], "msg_1");
            assert_eq!(event["model"], "claude");
            assert_eq!(event["object"], "chat.completion.chunk");
        }
        assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(
            events[1]["choices"][0]["delta"]["content"],
            "Hi \"there\"\n"
        );
        assert!(events[1]["choices"][0]["delta"].get("role").is_none());
        let call = &events[2]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(call["index"], 0);
        assert_eq!(call["id"], "toolu_1");
        assert_eq!(call["function"]["name"], "get_weather");
        assert_eq!(
            events[3]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":"
        );
        assert_eq!(events[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(events[5]["choices"], Value::Array(vec![]));
        assert_eq!(events[5]["usage"]["prompt_tokens"], 10);
        assert_eq!(
            events[5]["usage"]["prompt_tokens_details"]["cached_tokens"],
            3
        );
        assert_eq!(events[6], "[DONE]");
        assert!(w.done());
    }

    #[test]
    fn one_choice_of_a_merged_answer_has_its_index_the_given_id_and_no_done() {
        let mut w = StreamWriter::new("claude".into(), false);
        let mut out = Vec::new();
        assert!(w.as_choice(3, "chatcmpl-merged"));
        w.set_id("msg_upstream");
        w.text(&mut out, "Hi");
        let index = w.tool_call_start(&mut out, "toolu_1", "f");
        w.tool_call_arguments(&mut out, index, "{}");
        w.set_finish_reason(FinishReason::ToolCalls);
        w.set_usage(Usage::default());
        w.end(&mut out);
        let events = frames(&out);
        assert_eq!(
            events.len(),
            4,
            "text, tool call, arguments, finish; no usage, no [DONE]"
        );
        for event in &events {
            assert_eq!(event["id"], "chatcmpl-merged");
            assert_eq!(event["choices"][0]["index"], 3);
        }
        assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(
            events[1]["choices"][0]["delta"]["tool_calls"][0]["index"],
            0
        );
        assert_eq!(events[3]["choices"][0]["finish_reason"], "tool_calls");
        assert!(w.done());
        assert_eq!(w.finish_reason(), Some("tool_calls"));
    }

    #[test]
    fn no_usage_chunk_unless_asked() {
        let mut w = StreamWriter::new("m".into(), false);
        let mut out = Vec::new();
        w.set_usage(Usage::default());
        w.end(&mut out);
        let events = frames(&out);
        // role, finish, [DONE]; a generated id.
        assert_eq!(events.len(), 3);
        assert!(events[0]["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(events[1]["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn an_error_ends_the_stream() {
        let mut w = StreamWriter::new("m".into(), true);
        let mut out = Vec::new();
        w.text(&mut out, "partial");
        w.error(&mut out, 529, "overloaded_error", "Overloaded");
        w.end(&mut out);
        let events = frames(&out);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1]["error"]["type"], "server_error");
        assert_eq!(events[1]["error"]["code"], "overloaded_error");
        assert_eq!(events[1]["error"]["status"], 529);
        assert!(!w.done());
        assert_eq!(w.error_message(), Some("Overloaded"));
    }

    #[test]
    fn completion_with_tool_calls_has_null_content() {
        let mut c = Completion::new("m");
        c.id = Some("msg_1".into());
        c.choice.tool_calls.push(ToolCall {
            id: "t1".into(),
            name: "f".into(),
            arguments: "{}".into(),
        });
        c.choice.reasoning = "think".into();
        c.choice.thinking_blocks.push(ThinkingBlock::Thinking {
            thinking: "think".into(),
            signature: "sig".into(),
        });
        c.choice.finish_reason = FinishReason::ToolCalls;
        let body: Value = serde_json::from_slice(&c.to_json()).unwrap();
        let message = &body["choices"][0]["message"];
        assert_eq!(message["content"], Value::Null);
        assert_eq!(message["reasoning_content"], "think");
        assert_eq!(message["thinking_blocks"][0]["signature"], "sig");
        assert_eq!(message["tool_calls"][0]["function"]["arguments"], "{}");
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
        assert!(body.get("usage").is_none());
    }

    #[test]
    fn completion_ids_differ() {
        assert_ne!(new_completion_id(), new_completion_id());
    }
}
