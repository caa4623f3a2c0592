//! Gemini `generateContent` answers (the Gemini API and Gemini models on Vertex AI, which answer
//! the same way) into OpenAI Chat Completions, through the shared encoder (WIRE.md sections 4, 5).
//!
//! * Parts of the first candidate: `text` → content; `text` with `thought: true` → `reasoning_content`;
//!   `functionCall` → a tool call (`args` as the JSON arguments text). Parts without a Chat
//!   Completions equivalent (`inlineData` answers, `executableCode`, `codeExecutionResult`) are
//!   left out; other candidates (`candidateCount` > 1) too: the gateway asks for one.
//! * Tool call ids: Gemini API calls carry none, so one is generated (`call_` and 24 hex digits);
//!   a call's own `id` (Vertex may send one) is kept instead.
//! * `thoughtSignature` must go back on the same part in the next turn (Gemini 3 answers 400
//!   without it on function calls), and OpenAI's format has no place for it:
//!   - on a `functionCall` part it travels inside the tool call id, `<id>__thought__<signature>`
//!     ([`THOUGHT_SEPARATOR`], the convention LiteLLM uses): every client sends the id back in the
//!     assistant message's `tool_calls` and in the tool message's `tool_call_id`, and the request
//!     translator (python/agentgateway/providers/gemini.py) splits it off again;
//!   - on a thought part it becomes a `thinking_blocks` entry `{type: "thinking", thinking: <the
//!     thought text since the previous signature>, signature}`, sent back as a thought part;
//!   - on a text part (Gemini 3 puts it on the last one, often an empty text part) it becomes a
//!     `thinking_blocks` entry with `thinking: ""`, sent back on the assistant's text part.
//! * `finishReason` → `finish_reason`: `STOP` → stop, or tool_calls when the answer has function
//!   calls; `MAX_TOKENS` → length; `SAFETY`, `RECITATION`, `BLOCKLIST`, `PROHIBITED_CONTENT`,
//!   `SPII`, `IMAGE_SAFETY`, `IMAGE_PROHIBITED_CONTENT`, `IMAGE_RECITATION` → content_filter;
//!   anything else (`MALFORMED_FUNCTION_CALL`, `UNEXPECTED_TOOL_CALL`, `OTHER`, `LANGUAGE`,
//!   `NO_IMAGE`, `FINISH_REASON_UNSPECIFIED`, newer values) → stop: the model did end, and
//!   Chat Completions has no closer reason (a malformed call simply yields no tool call).
//!   Gemini's `STOP` covers a natural end and a matched stop sequence alike (and the matched
//!   text is not sent), so a Messages client reads `end_turn` with `stop_sequence: null`.
//! * A prompt blocked by `promptFeedback.blockReason` has no candidates: the answer is a
//!   content_filter one whose content says what was blocked and why.
//! * Usage: prompt = `promptTokenCount`; completion = `candidatesTokenCount + thoughtsTokenCount`;
//!   cached = `cachedContentTokenCount`; reasoning = `thoughtsTokenCount`.
//!
//! Streams (`:streamGenerateContent?alt=sse`): each SSE event (`data: …\r\n\r\n`) is a whole
//! `GenerateContentResponse`. Text and thoughts arrive in pieces, a function call whole in one
//! event; `usageMetadata` is cumulative (the last one is reported); `finishReason` comes on the
//! last candidate event. The upstream sends no `[DONE]`: the stream ends (finish chunk, usage
//! chunk when asked, `[DONE]`) at upstream EOF after a finish reason or a blocked prompt, and as
//! truncated without one. An `{"error": {code, message, status}}` event ends the stream with an
//! error event carrying its status and message, and so does the same object sent bare: Google ends
//! a stream that fails after its 200 (a rate limit, an overload) with the error pretty-printed
//! over several lines outside any `data:` field (read by the SSE parser's bare-JSON extension, as
//! google-genai's stream reader reads it), or in a JSON array of such objects.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::encoder::{
    random_id, Choice, Completion, FinishReason, StreamWriter, ThinkingBlock, ToolCall,
};
use super::events::Encoder;
use super::sse_stream::{SseEvents, SseStream};
use super::Usage;
use crate::error::CoreError;
use crate::framing::SseEvent;
use crate::json::parse;

/// Between a tool call id and the `thoughtSignature` of its `functionCall` part.
pub const THOUGHT_SEPARATOR: &str = "__thought__";

/// The HTTP status a Google RPC status name stands for (google.rpc.Code's HTTP mapping).
#[must_use]
pub fn status_for_rpc_status(status: &str) -> u16 {
    match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "ALREADY_EXISTS" | "ABORTED" => 409,
        "RESOURCE_EXHAUSTED" => 429,
        "CANCELLED" => 499,
        "UNIMPLEMENTED" => 501,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => 500,
    }
}

fn finish_reason(reason: &str, has_tool_calls: bool) -> FinishReason {
    match reason {
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => FinishReason::ContentFilter,
        _ if has_tool_calls => FinishReason::ToolCalls,
        // STOP, and the reasons Chat Completions has no word for (see the module docs).
        _ => FinishReason::Stop,
    }
}

/// The tool call id the client sees for a function call (see the module docs).
fn tool_call_id(call: &FunctionCall<'_>, signature: Option<&str>, prefix: &str) -> String {
    let mut id = match call.id.as_deref() {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => random_id(prefix),
    };
    if let Some(signature) = signature.filter(|s| !s.is_empty()) {
        id.reserve(THOUGHT_SEPARATOR.len() + signature.len());
        id.push_str(THOUGHT_SEPARATOR);
        id.push_str(signature);
    }
    id
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
    cached_content_token_count: Option<u64>,
}

impl UsageMetadata {
    fn to_openai(self) -> Usage {
        let prompt = self.prompt_token_count.unwrap_or(0);
        let thoughts = self.thoughts_token_count.unwrap_or(0);
        let completion = self.candidates_token_count.unwrap_or(0) + thoughts;
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            cached_tokens: Some(self.cached_content_token_count.unwrap_or(0)),
            reasoning_tokens: Some(thoughts),
            cache_write_tokens: None,
        }
    }
}

#[derive(Debug, Deserialize)]
struct FunctionCall<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    args: Option<&'a RawValue>,
}

impl FunctionCall<'_> {
    /// The arguments as a JSON object text (`{}` when absent or null).
    fn arguments(&self) -> &str {
        match self.args.map(RawValue::get) {
            Some(raw) if raw != "null" => raw,
            _ => "{}",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Part<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(default)]
    thought: Option<bool>,
    #[serde(borrow, default)]
    thought_signature: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    function_call: Option<FunctionCall<'a>>,
}

#[derive(Debug, Deserialize)]
struct Content<'a> {
    #[serde(borrow, default)]
    parts: Vec<Part<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate<'a> {
    #[serde(borrow, default)]
    content: Option<Content<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    index: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback<'a> {
    #[serde(borrow, default)]
    block_reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    block_reason_message: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody<'a> {
    #[serde(default)]
    code: Option<u16>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
}

impl ErrorBody<'_> {
    /// `(HTTP status, status name, message)`: the status is `code` when it is an HTTP error status,
    /// else the one the status name stands for.
    fn parts(&self) -> (u16, &str, &str) {
        let name = self.status.as_deref().unwrap_or("UNKNOWN");
        let status = self
            .code
            .filter(|code| (400..600).contains(code))
            .unwrap_or_else(|| status_for_rpc_status(name));
        let message = self
            .message
            .as_deref()
            .unwrap_or("the upstream reported an error");
        (status, name, message)
    }
}

/// A `GenerateContentResponse` (a whole answer or one stream event), or an error.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response<'a> {
    #[serde(borrow, default)]
    candidates: Vec<Candidate<'a>>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
    #[serde(borrow, default)]
    prompt_feedback: Option<PromptFeedback<'a>>,
    #[serde(borrow, default)]
    response_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    error: Option<ErrorBody<'a>>,
}

impl<'a> Response<'a> {
    /// The candidate that becomes choice 0.
    fn first_candidate(&self) -> Option<&Candidate<'a>> {
        self.candidates.iter().find(|c| c.index.unwrap_or(0) == 0)
    }

    /// The explanation sent for a blocked prompt, when the prompt was blocked.
    fn blocked_prompt(&self) -> Option<String> {
        if self.first_candidate().is_some() {
            return None;
        }
        let feedback = self.prompt_feedback.as_ref()?;
        let reason = feedback.block_reason.as_deref()?;
        let mut text =
            format!("The prompt was blocked by the provider's content filter ({reason}).");
        if let Some(message) = feedback.block_reason_message.as_deref() {
            if !message.is_empty() {
                text.push(' ');
                text.push_str(message);
            }
        }
        Some(text)
    }
}

/// Translate a whole `generateContent` response into a `chat.completion` body.
pub fn translate_response(
    body: &[u8],
    client_model: Option<&str>,
) -> Result<(Vec<u8>, Option<Usage>), CoreError> {
    decode_response(body, client_model, "call_").map(Completion::into_chat_body)
}

/// Read a whole `generateContent` response into the canonical answer; generated tool-call ids
/// start with `tool_id_prefix`.
pub fn decode_response(
    body: &[u8],
    client_model: Option<&str>,
    tool_id_prefix: &str,
) -> Result<Completion, CoreError> {
    let response: Response<'_> = parse(body, "response body")?;
    if let Some(error) = &response.error {
        // A success status whose body is Google's error: the client must see an error, not an empty answer.
        let (status, code, message) = error.parts();
        return Err(CoreError::Upstream {
            status,
            code: code.to_owned(),
            message: message.to_owned(),
        });
    }
    let mut completion = Completion::new(client_model.unwrap_or_default());
    completion.id = response.response_id.as_deref().map(str::to_owned);
    completion.usage = response.usage_metadata.map(UsageMetadata::to_openai);
    if let Some(text) = response.blocked_prompt() {
        completion.choice.content = text;
        completion.choice.finish_reason = FinishReason::ContentFilter;
        return Ok(completion);
    }
    // One choice per candidate (`candidateCount` = the client's `n`), in index order.
    let mut candidates: Vec<(u32, &Candidate<'_>)> = response
        .candidates
        .iter()
        .filter_map(|c| choice_index(c).map(|index| (index, c)))
        .collect();
    candidates.sort_by_key(|(index, _)| *index);
    for (position, (_, candidate)) in candidates.iter().enumerate() {
        let choice = candidate_choice(candidate, tool_id_prefix);
        if position == 0 {
            completion.choice = choice;
        } else {
            completion.more_choices.push(choice);
        }
    }
    Ok(completion)
}

/// The most candidates Gemini gives (`candidateCount` ≤ 8): higher indexes are not read.
const MAX_CANDIDATES: u32 = 8;

/// The OpenAI choice index of a candidate (`None` past [`MAX_CANDIDATES`]).
fn choice_index(candidate: &Candidate<'_>) -> Option<u32> {
    u32::try_from(candidate.index.unwrap_or(0))
        .ok()
        .filter(|index| *index < MAX_CANDIDATES)
}

/// One candidate of a whole answer as a choice (see the module docs).
fn candidate_choice(candidate: &Candidate<'_>, tool_id_prefix: &str) -> Choice {
    let mut choice = Choice::default();
    let mut thought = String::new();
    let parts = candidate
        .content
        .as_ref()
        .map_or(&[][..], |c| c.parts.as_slice());
    for part in parts {
        let signature = part.thought_signature.as_deref();
        if let Some(call) = &part.function_call {
            choice.tool_calls.push(ToolCall {
                id: tool_call_id(call, signature, tool_id_prefix),
                name: call.name.as_deref().unwrap_or_default().to_owned(),
                arguments: call.arguments().to_owned(),
            });
            continue;
        }
        let text = part.text.as_deref().unwrap_or_default();
        let is_thought = part.thought == Some(true);
        if is_thought {
            choice.reasoning.push_str(text);
            thought.push_str(text);
        } else {
            choice.content.push_str(text);
        }
        if let Some(signature) = signature.filter(|s| !s.is_empty()) {
            choice.thinking_blocks.push(ThinkingBlock::Thinking {
                thinking: if is_thought {
                    std::mem::take(&mut thought)
                } else {
                    String::new()
                },
                signature: signature.to_owned(),
            });
        }
    }
    choice.finish_reason = finish_reason(
        candidate.finish_reason.as_deref().unwrap_or("STOP"),
        !choice.tool_calls.is_empty(),
    );
    choice
}

/// Translator for one `streamGenerateContent?alt=sse` stream.
pub type GeminiStream<W = StreamWriter> = SseStream<GeminiEvents, W>;

/// What a `streamGenerateContent` stream's events mean (see the module docs).
#[derive(Debug, Default)]
pub struct GeminiEvents {
    /// Per candidate (choice) index: thought text since the last signature, sent again whole with
    /// the next one.
    thoughts: Vec<String>,
}

// The upstream sends no `[DONE]`: EOF once every candidate has its finish reason (or the prompt
// was blocked) is the normal end, the default `end_of_stream`.
impl SseEvents for GeminiEvents {
    const BARE_JSON: bool = true;

    fn event<W: Encoder>(
        &mut self,
        event: &SseEvent,
        writer: &mut W,
        out: &mut Vec<u8>,
    ) -> Result<(), CoreError> {
        if event.bare && event.data.trim_ascii_start().starts_with(b"[") {
            // `[{…}, …]`: the array form of the stream (an error in it, as a rule).
            let responses: Vec<Response<'_>> = parse(&event.data, "stream event")?;
            for response in &responses {
                if writer.closed() {
                    break;
                }
                self.translate_response(response, writer, out);
            }
            return Ok(());
        }
        let response: Response<'_> = parse(&event.data, "stream event")?;
        self.translate_response(&response, writer, out);
        Ok(())
    }
}

impl GeminiEvents {
    fn translate_response<W: Encoder>(
        &mut self,
        response: &Response<'_>,
        writer: &mut W,
        out: &mut Vec<u8>,
    ) {
        if let Some(error) = &response.error {
            let (status, code, message) = error.parts();
            writer.error(out, status, code, message);
            return;
        }
        if let Some(id) = response.response_id.as_deref() {
            writer.set_id(id);
        }
        // Usage first: an encoder whose first event reports the input tokens (Anthropic's
        // message_start) has them.
        if let Some(usage) = response.usage_metadata {
            writer.set_usage(usage.to_openai());
        }
        writer.role(out);
        if let Some(text) = response.blocked_prompt() {
            writer.select_choice(0);
            writer.text(out, &text);
            writer.set_finish_reason(FinishReason::ContentFilter);
            return;
        }
        for candidate in &response.candidates {
            let Some(index) = choice_index(candidate) else {
                continue;
            };
            writer.select_choice(index);
            let slot = usize::try_from(index).unwrap_or_default();
            if self.thoughts.len() <= slot {
                self.thoughts.resize_with(slot + 1, String::new);
            }
            for part in candidate.content.iter().flat_map(|c| &c.parts) {
                self.part(slot, part, writer, out);
            }
            if let Some(reason) = candidate.finish_reason.as_deref() {
                writer.set_finish_reason(finish_reason(reason, writer.tool_call_count() > 0));
            }
        }
    }

    /// `index`: the candidate's, below [`MAX_CANDIDATES`] (its thought text is `thoughts[index]`).
    fn part<W: Encoder>(
        &mut self,
        index: usize,
        part: &Part<'_>,
        writer: &mut W,
        out: &mut Vec<u8>,
    ) {
        let signature = part.thought_signature.as_deref().filter(|s| !s.is_empty());
        if let Some(call) = &part.function_call {
            let id = tool_call_id(call, signature, writer.tool_id_prefix());
            let name = call.name.as_deref().unwrap_or_default();
            let index = writer.tool_call_start(out, &id, name);
            writer.tool_call_arguments(out, index, call.arguments());
            return;
        }
        let text = part.text.as_deref().unwrap_or_default();
        let is_thought = part.thought == Some(true);
        if is_thought {
            writer.reasoning(out, text);
            if let Some(thought) = self.thoughts.get_mut(index) {
                thought.push_str(text);
            }
        } else {
            writer.text(out, text);
        }
        if let Some(signature) = signature {
            let block = ThinkingBlock::Thinking {
                thinking: if is_thought {
                    self.thoughts
                        .get_mut(index)
                        .map(std::mem::take)
                        .unwrap_or_default()
                } else {
                    String::new()
                },
                signature: signature.to_owned(),
            };
            writer.thinking_block(out, &block);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn sse(events: &[&str]) -> Vec<u8> {
        events
            .iter()
            .flat_map(|data| format!("data: {data}\r\n\r\n").into_bytes())
            .collect()
    }

    fn deltas(frames: &[Value]) -> Vec<&Value> {
        frames
            .iter()
            .filter_map(|f| f.pointer("/choices/0/delta"))
            .collect()
    }

    #[test]
    fn thoughts_text_signature_and_cumulative_usage() {
        let input = sse(&[
            r#"{"candidates":[{"content":{"parts":[{"text":"Let me ","thought":true}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":9,"thoughtsTokenCount":5},"responseId":"r1"}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"count.","thought":true,"thoughtSignature":"U0lH"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":9,"thoughtsTokenCount":12},"responseId":"r1"}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"There are 3"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":3,"thoughtsTokenCount":12},"responseId":"r1"}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"","thoughtSignature":"VEVYVA=="}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":4,"thoughtsTokenCount":12,"cachedContentTokenCount":2,"totalTokenCount":25},"responseId":"r1"}"#,
        ]);
        let mut t = GeminiStream::<StreamWriter>::new(Some("my-gemini".into()), true);
        let frames = t.run(&input);
        let d = deltas(&frames);
        assert_eq!(d[0]["role"], "assistant");
        assert_eq!(d[1]["reasoning_content"], "Let me ");
        assert_eq!(d[2]["reasoning_content"], "count.");
        assert_eq!(d[3]["thinking_blocks"][0]["thinking"], "Let me count.");
        assert_eq!(d[3]["thinking_blocks"][0]["signature"], "U0lH");
        assert_eq!(d[4]["content"], "There are 3");
        assert_eq!(d[5]["thinking_blocks"][0]["thinking"], "");
        assert_eq!(d[5]["thinking_blocks"][0]["signature"], "VEVYVA==");
        assert_eq!(
            frames[frames.len() - 3]["choices"][0]["finish_reason"],
            "stop"
        );
        let usage = &frames[frames.len() - 2]["usage"];
        assert_eq!(usage["prompt_tokens"], 9);
        assert_eq!(usage["completion_tokens"], 16);
        assert_eq!(usage["total_tokens"], 25);
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 2);
        assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 12);
        assert_eq!(frames.last().unwrap(), "[DONE]");
        assert!(frames
            .iter()
            .all(|f| f.get("id").is_none_or(|id| id == "r1")));
        assert!(frames
            .iter()
            .all(|f| f.get("model").is_none_or(|m| m == "my-gemini")));
    }

    #[test]
    fn function_calls_carry_their_signature_in_the_id() {
        let input = sse(&[
            r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"weather","args":{"location":"San Francisco"}},"thoughtSignature":"c2ln+/="},{"functionCall":{"name":"now"}}],"role":"model"},"index":0}]}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":""}],"role":"model"},"finishReason":"STOP","index":0}]}"#,
        ]);
        let mut t = GeminiStream::<StreamWriter>::new(Some("m".into()), false);
        let frames = t.run(&input);
        let calls: Vec<&Value> = frames
            .iter()
            .filter_map(|f| f.pointer("/choices/0/delta/tool_calls/0"))
            .collect();
        let id = calls[0]["id"].as_str().unwrap();
        let (base, signature) = id.split_once(THOUGHT_SEPARATOR).unwrap();
        assert!(base.starts_with("call_") && base.len() == 29, "{base}");
        assert_eq!(signature, "c2ln+/=");
        assert_eq!(calls[0]["function"]["name"], "weather");
        assert_eq!(
            calls[1]["function"]["arguments"],
            r#"{"location":"San Francisco"}"#
        );
        assert_eq!(calls[2]["index"], 1);
        assert!(!calls[2]["id"].as_str().unwrap().contains(THOUGHT_SEPARATOR));
        assert_ne!(calls[2]["id"], base);
        assert_eq!(calls[3]["function"]["arguments"], "{}");
        assert_eq!(
            frames[frames.len() - 2]["choices"][0]["finish_reason"],
            "tool_calls"
        );
    }

    #[test]
    fn blocked_prompt_is_a_content_filter_answer() {
        let input = sse(&[
            r#"{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},"usageMetadata":{"promptTokenCount":9,"totalTokenCount":9},"responseId":"x"}"#,
        ]);
        let mut t = GeminiStream::<StreamWriter>::new(Some("m".into()), true);
        let frames = t.run(&input);
        let d = deltas(&frames);
        assert!(d[1]["content"]
            .as_str()
            .unwrap()
            .contains("PROHIBITED_CONTENT"));
        assert_eq!(
            frames[frames.len() - 3]["choices"][0]["finish_reason"],
            "content_filter"
        );
        assert_eq!(frames[frames.len() - 2]["usage"]["prompt_tokens"], 9);
    }

    #[test]
    fn error_event_ends_the_stream_with_its_status() {
        let input = sse(&[
            r#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"index":0}]}"#,
            r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
        ]);
        let mut t = GeminiStream::<StreamWriter>::new(Some("m".into()), true);
        let frames = t.run(&input);
        let error = &frames.last().unwrap()["error"];
        assert_eq!(error["message"], "The model is overloaded.");
        assert_eq!(error["code"], "UNAVAILABLE");
        assert_eq!(error["status"], 503);
        assert!(!t.writer().done());
    }

    /// How Google ends a stream that fails after its 200: the error pretty-printed, bare.
    const BARE_429: &str = "{\n  \"error\": {\n    \"code\": 429,\n    \"message\": \"Resource has been exhausted (e.g. check quota).\",\n    \"status\": \"RESOURCE_EXHAUSTED\"\n  }\n}\n";

    #[test]
    fn a_bare_error_object_ends_the_stream_with_its_status_and_message() {
        let mut input = sse(&[
            r#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"index":0}]}"#,
        ]);
        input.extend_from_slice(BARE_429.as_bytes());
        let mut t = GeminiStream::<StreamWriter>::new(Some("m".into()), true);
        let frames = t.run(&input);
        assert_eq!(deltas(&frames)[1]["content"], "Hi");
        let error = &frames.last().unwrap()["error"];
        assert_eq!(
            error["message"],
            "Resource has been exhausted (e.g. check quota)."
        );
        assert_eq!(error["code"], "RESOURCE_EXHAUSTED");
        assert_eq!(error["type"], "rate_limit_error");
        assert_eq!(error["status"], 429);
        assert!(!t.writer().failed());
    }

    #[test]
    fn a_bare_error_array_ends_the_stream_with_its_status() {
        let input = format!("[{}]\n", BARE_429.trim_end());
        let mut t = GeminiStream::<StreamWriter>::new(Some("m".into()), true);
        let frames = t.run(input.as_bytes());
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0]["error"]["status"], 429);
    }

    #[test]
    fn a_bare_error_cut_off_is_a_truncation() {
        let input = &BARE_429.as_bytes()[..30];
        let mut t = GeminiStream::<StreamWriter>::new(Some("m".into()), true);
        let frames = t.run(input);
        assert_eq!(frames.last().unwrap()["error"]["code"], "stream_truncated");
    }

    #[test]
    fn candidates_stream_as_choices_with_their_own_indexes() {
        let input = sse(&[
            r#"{"candidates":[{"content":{"parts":[{"text":"A1"}],"role":"model"},"index":0},{"content":{"parts":[{"text":"B1"}],"role":"model"},"index":1}],"responseId":"r"}"#,
            r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{}}}],"role":"model"},"index":1,"finishReason":"STOP"}]}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"A2"}],"role":"model"},"finishReason":"MAX_TOKENS","index":0}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":6}}"#,
        ]);
        let mut t = GeminiStream::<StreamWriter>::new(Some("m".into()), true);
        let frames = t.run(&input);
        let choices: Vec<&Value> = frames
            .iter()
            .filter_map(|f| f.pointer("/choices/0"))
            .collect();
        let of = |index: u64| -> Vec<&Value> {
            choices
                .iter()
                .copied()
                .filter(|c| c["index"] == index)
                .collect()
        };
        let (zero, one) = (of(0), of(1));
        assert_eq!(zero[0]["delta"]["role"], "assistant");
        assert_eq!(zero[0]["delta"]["content"], "");
        assert_eq!(zero[1]["delta"]["content"], "A1");
        assert_eq!(one[0]["delta"]["role"], "assistant");
        assert_eq!(one[0]["delta"]["content"], "B1");
        assert_eq!(one[1]["delta"]["tool_calls"][0]["index"], 0);
        assert_eq!(zero[2]["delta"]["content"], "A2");
        assert_eq!(zero.last().unwrap()["finish_reason"], "length");
        assert_eq!(one.last().unwrap()["finish_reason"], "tool_calls");
        // The finish chunks come in index order, then the usage, then [DONE].
        let n = frames.len();
        assert_eq!(frames[n - 4]["choices"][0]["index"], 0);
        assert_eq!(frames[n - 3]["choices"][0]["index"], 1);
        assert_eq!(frames[n - 2]["usage"]["completion_tokens"], 6);
        assert_eq!(t.writer().finish_reason(), Some("length"));
    }

    #[test]
    fn a_stream_whose_second_candidate_never_finishes_is_truncated() {
        let input = sse(&[
            r#"{"candidates":[{"content":{"parts":[{"text":"A"}],"role":"model"},"index":0,"finishReason":"STOP"},{"content":{"parts":[{"text":"B"}],"role":"model"},"index":1}]}"#,
        ]);
        let mut t = GeminiStream::<StreamWriter>::new(Some("m".into()), true);
        let frames = t.run(&input);
        assert_eq!(frames.last().unwrap()["error"]["code"], "stream_truncated");
    }

    #[test]
    fn whole_response_candidates_are_choices_in_index_order() {
        let body = br#"{"candidates":[{"content":{"parts":[{"text":"second"}],"role":"model"},"finishReason":"MAX_TOKENS","index":1},{"content":{"parts":[{"text":"first"}],"role":"model"},"finishReason":"STOP","index":0},{"content":{"parts":[{"text":"ignored"}]},"index":99}]}"#;
        let (out, _) = translate_response(body, Some("m")).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let choices = v["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 2);
        assert_eq!(choices[0]["index"], 0);
        assert_eq!(choices[0]["message"]["content"], "first");
        assert_eq!(choices[0]["finish_reason"], "stop");
        assert_eq!(choices[1]["index"], 1);
        assert_eq!(choices[1]["message"]["content"], "second");
        assert_eq!(choices[1]["finish_reason"], "length");
    }

    #[test]
    fn a_stream_without_finish_reason_is_truncated() {
        let input = sse(&[
            r#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"index":0}]}"#,
        ]);
        let mut t = GeminiStream::<StreamWriter>::new(Some("m".into()), true);
        let frames = t.run(&input);
        assert_eq!(frames.last().unwrap()["error"]["code"], "stream_truncated");
    }

    #[test]
    fn garbage_fails_the_stream() {
        let mut t = GeminiStream::<StreamWriter>::new(Some("m".into()), true);
        let frames = t.run(b"data: {nope\r\n\r\n");
        assert_eq!(
            frames.last().unwrap()["error"]["code"],
            "upstream_protocol_error"
        );
        assert!(t.writer().failed());
    }

    #[test]
    fn whole_response() {
        let body = br#"{"candidates":[{"content":{"parts":[{"text":"hmm","thought":true,"thoughtSignature":"dA=="},{"text":"Hello "},{"text":"there"},{"functionCall":{"id":"fc_1","name":"f","args":{"a":[1,2]}},"thoughtSignature":"Zg=="}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":9,"thoughtsTokenCount":3,"cachedContentTokenCount":1},"responseId":"resp_1","modelVersion":"gemini-2.5-pro"}"#;
        let (out, usage) = translate_response(body, Some("alias")).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], "resp_1");
        assert_eq!(v["model"], "alias");
        let message = &v["choices"][0]["message"];
        assert_eq!(message["content"], "Hello there");
        assert_eq!(message["reasoning_content"], "hmm");
        assert_eq!(message["thinking_blocks"][0]["thinking"], "hmm");
        assert_eq!(message["thinking_blocks"][0]["signature"], "dA==");
        assert_eq!(message["tool_calls"][0]["id"], "fc_1__thought__Zg==");
        assert_eq!(
            message["tool_calls"][0]["function"]["arguments"],
            "{\"a\":[1,2]}"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        let usage = usage.unwrap();
        assert_eq!(usage.completion_tokens, 12);
        assert_eq!(usage.reasoning_tokens, Some(3));
        assert_eq!(usage.cached_tokens, Some(1));
        assert_eq!(
            v["usage"]["completion_tokens_details"]["reasoning_tokens"],
            3
        );
    }

    #[test]
    fn whole_response_blocked_prompt() {
        let body = br#"{"promptFeedback":{"blockReason":"SAFETY","blockReasonMessage":"Unsafe."},"usageMetadata":{"promptTokenCount":9}}"#;
        let (out, _) = translate_response(body, Some("m")).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
        let content = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(content.contains("SAFETY") && content.ends_with("Unsafe."));
    }

    #[test]
    fn an_error_body_with_a_success_status_is_an_upstream_error() {
        let body =
            br#"{"error":{"code":429,"message":"Quota exceeded.","status":"RESOURCE_EXHAUSTED"}}"#;
        assert_eq!(
            translate_response(body, None).err(),
            Some(CoreError::Upstream {
                status: 429,
                code: "RESOURCE_EXHAUSTED".to_owned(),
                message: "Quota exceeded.".to_owned()
            })
        );
        let body = br#"{"error":{"message":"Backend unavailable.","status":"UNAVAILABLE"}}"#;
        assert!(matches!(
            translate_response(body, None).err(),
            Some(CoreError::Upstream { status: 503, .. })
        ));
    }

    #[test]
    fn finish_reasons() {
        for (reason, calls, expected) in [
            ("STOP", false, "stop"),
            ("STOP", true, "tool_calls"),
            ("MAX_TOKENS", false, "length"),
            ("MAX_TOKENS", true, "length"),
            ("SAFETY", false, "content_filter"),
            ("RECITATION", false, "content_filter"),
            ("BLOCKLIST", false, "content_filter"),
            ("PROHIBITED_CONTENT", false, "content_filter"),
            ("SPII", false, "content_filter"),
            ("IMAGE_SAFETY", false, "content_filter"),
            ("MALFORMED_FUNCTION_CALL", false, "stop"),
            ("OTHER", false, "stop"),
            ("LANGUAGE", false, "stop"),
        ] {
            assert_eq!(finish_reason(reason, calls).as_str(), expected, "{reason}");
        }
    }

    #[test]
    fn call_ids_differ() {
        assert_ne!(random_id("call_"), random_id("call_"));
    }
}
