//! The canonical event vocabulary (DESIGN.md section 3, hub and spoke): every provider decoder
//! reads its own wire format and calls an [`Encoder`]; one encoder per client API writes the bytes
//! the client sees. [`super::encoder::StreamWriter`] writes OpenAI Chat Completions chunks,
//! [`super::anthropic_encoder::MessagesWriter`] the Anthropic Messages event stream. A whole
//! answer is one [`super::encoder::Completion`], written by `Completion::to_json` (OpenAI) or
//! [`super::anthropic_encoder::message_json`] (Anthropic).
//!
//! The vocabulary: role, text, reasoning (text pieces), a whole thinking block with its signature
//! (sent when the block ends, after its reasoning pieces), tool call start (id, name) and
//! arguments (JSON text in pieces), finish reason (and the stop sequence that matched, where the
//! upstream says which), usage, end, error; several choices
//! (`select_choice`) for the encoders that have them. The encoder also keeps the facts the gateway
//! reads at the end of a stream (usage, finish reason in OpenAI's terms, error, done, failed).

use std::fmt::Debug;

use super::encoder::{FinishReason, ThinkingBlock};
use super::Usage;
use crate::error::CoreError;
use crate::error_kind::{ErrorKind, TRUNCATED_MESSAGE};

/// The client API an answer is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientApi {
    /// OpenAI Chat Completions (`chat.completion`, `chat.completion.chunk` SSE).
    OpenAI,
    /// Anthropic Messages (`message`, the `message_start` … `message_stop` event stream).
    Anthropic,
}

/// The client API names accepted by the registry.
pub const CLIENT_APIS: &[&str] = &["openai", "anthropic"];

impl ClientApi {
    /// The API named `name` (`"openai"`, `"anthropic"`).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "openai" => Some(Self::OpenAI),
            "anthropic" => Some(Self::Anthropic),
            _ => None,
        }
    }

    /// The prefix of the tool-call ids generated for upstreams that give none.
    #[must_use]
    pub fn tool_id_prefix(self) -> &'static str {
        match self {
            Self::OpenAI => "call_",
            Self::Anthropic => "toolu_",
        }
    }
}

/// Writes one client stream from canonical events (see the module docs). Every method writes to
/// `out` only while the stream is open ([`Self::closed`] false).
pub trait Encoder: Debug + Send + Sync {
    /// A writer reporting `model` to the client; `include_usage`: whether the client asked for
    /// usage in the stream (OpenAI's `stream_options.include_usage`; Anthropic always has it).
    fn for_client(model: String, include_usage: bool) -> Self
    where
        Self: Sized;

    /// Use the upstream's id for the answer (ignored once the first event is out).
    fn set_id(&mut self, id: &str);

    /// Write the next pieces to choice `index` (an upstream answering `n` > 1 choices).
    fn select_choice(&mut self, index: u32);

    /// Write this stream as choice `index` of an answer the gateway merges from several upstream
    /// answers (its fan-out of `n` > 1 for providers that answer one choice per call): every chunk
    /// carries that index and, when `id` is not empty, that id; the stream ends without the API's
    /// end marker (the merged stream has one). Call before the first event. False when the
    /// client API has no choices (nothing changed).
    fn as_choice(&mut self, index: u32, id: &str) -> bool {
        let _ = (index, id);
        false
    }

    /// Whether the stream is over on the client's side (ended or an error sent).
    fn closed(&self) -> bool;

    /// The answer has started (the assistant's role), unless something was already written.
    fn role(&mut self, out: &mut Vec<u8>);

    /// A piece of the answer's text (nothing is sent for an empty piece).
    fn text(&mut self, out: &mut Vec<u8>, text: &str);

    /// A piece of reasoning text.
    fn reasoning(&mut self, out: &mut Vec<u8>, text: &str);

    /// A complete reasoning block with its signature, after the reasoning pieces it holds.
    fn thinking_block(&mut self, out: &mut Vec<u8>, block: &ThinkingBlock);

    /// The first piece of a tool call: its id (empty when the upstream gave none) and name.
    /// Returns the index the later [`Self::tool_call_arguments`] name it by.
    fn tool_call_start(&mut self, out: &mut Vec<u8>, id: &str, name: &str) -> u32;

    /// More of the arguments (a JSON text in pieces) of the tool call `index`.
    fn tool_call_arguments(&mut self, out: &mut Vec<u8>, index: u32, arguments: &str);

    /// How many tool calls were started (in the current choice).
    fn tool_call_count(&self) -> u32;

    /// Record why the model stopped (the current choice); written by [`Self::end`].
    fn set_finish_reason(&mut self, reason: FinishReason);

    /// Record which stop sequence matched (the current choice), when the upstream says it: with
    /// [`FinishReason::StopSequence`]. Only the Anthropic encoder has a place for it.
    fn set_stop_sequence(&mut self, sequence: &str) {
        let _ = sequence;
    }

    /// Whether every choice seen has a finish reason (and one was seen).
    fn every_choice_finished(&self) -> bool;

    /// Record the usage to report (the last one recorded wins).
    fn set_usage(&mut self, usage: Usage);

    /// End the stream normally (finish reason, usage, the API's end marker).
    fn end(&mut self, out: &mut Vec<u8>);

    /// End the stream with an error the upstream reported: `status` is the HTTP status it stands
    /// for, `code` the upstream's name for it.
    fn error(&mut self, out: &mut Vec<u8>, status: u16, code: &str, message: &str);

    /// End the stream with an error of the gateway's own vocabulary.
    fn error_of_kind(&mut self, out: &mut Vec<u8>, kind: ErrorKind, message: &str);

    /// End the stream because the upstream sent something that is not its wire format; the
    /// caller should stop reading.
    fn fail(&mut self, out: &mut Vec<u8>, err: &CoreError);

    /// End a stream that stopped before its end (`stream_truncated`).
    #[cold]
    #[inline(never)]
    fn truncated(&mut self, out: &mut Vec<u8>) {
        self.error_of_kind(out, ErrorKind::StreamTruncated, TRUNCATED_MESSAGE);
    }

    /// The prefix of tool-call ids generated for upstreams that give none.
    fn tool_id_prefix(&self) -> &'static str;

    /// Whether [`Self::fail`] ended the stream.
    fn failed(&self) -> bool;

    /// The last usage recorded.
    fn usage(&self) -> Option<Usage>;

    /// The finish reason recorded for the first choice, in OpenAI's terms (the gateway's facts).
    fn finish_reason(&self) -> Option<&'static str>;

    /// The message of the error sent, if any.
    fn error_message(&self) -> Option<&str>;

    /// Whether the stream was ended normally ([`Self::end`]).
    fn done(&self) -> bool;
}
