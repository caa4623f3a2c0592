//! The provider registry: one module per upstream API, each turning that provider's responses into
//! OpenAI Chat Completions bytes. Adding a provider means a module, a variant of
//! [`StreamTranslator`], an arm in [`new_stream_translator`] and [`translate_response`], and a name
//! in [`PROVIDERS`] (a test checks that every listed name is constructible).

pub mod anthropic;
pub mod bedrock;
pub mod encoder;
pub mod gemini;
pub mod openai;
pub mod sse_stream;

use serde::Deserialize;

use crate::error::CoreError;

/// The provider names accepted by [`new_stream_translator`] and [`translate_response`].
pub const PROVIDERS: &[&str] = &["openai", "anthropic", "bedrock", "gemini"];

/// Token counts reported by the upstream, in OpenAI's terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// `prompt_tokens_details.cached_tokens`: prompt tokens read from the provider's cache.
    pub cached_tokens: Option<u64>,
    /// `completion_tokens_details.reasoning_tokens`: completion tokens spent on reasoning.
    pub reasoning_tokens: Option<u64>,
    /// Prompt tokens written to the provider's cache (Anthropic `cache_creation_input_tokens`,
    /// Bedrock `cacheWriteInputTokens`): priced apart, so kept apart for spend.
    pub cache_write_tokens: Option<u64>,
}

impl Usage {
    /// Read an OpenAI `usage` object; a missing (or null) count is 0. `None` when `raw` is not
    /// such an object.
    pub(crate) fn from_openai_json(raw: &str) -> Option<Self> {
        #[derive(Deserialize)]
        struct PromptDetails {
            cached_tokens: Option<u64>,
        }
        #[derive(Deserialize)]
        struct CompletionDetails {
            reasoning_tokens: Option<u64>,
        }
        #[derive(Deserialize)]
        struct View {
            prompt_tokens: Option<u64>,
            completion_tokens: Option<u64>,
            total_tokens: Option<u64>,
            prompt_tokens_details: Option<PromptDetails>,
            completion_tokens_details: Option<CompletionDetails>,
        }
        let view: View = serde_json::from_str(raw).ok()?;
        Some(Self {
            prompt_tokens: view.prompt_tokens.unwrap_or(0),
            completion_tokens: view.completion_tokens.unwrap_or(0),
            total_tokens: view.total_tokens.unwrap_or(0),
            cached_tokens: view.prompt_tokens_details.and_then(|d| d.cached_tokens),
            reasoning_tokens: view
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens),
            cache_write_tokens: None,
        })
    }

    /// Usage from a provider that counts cached prompt tokens apart from the rest (Anthropic,
    /// Bedrock): prompt = uncached input + cache reads + cache writes, `cached_tokens` = cache
    /// reads. `total` is the provider's own total when it reports one.
    #[must_use]
    pub fn from_prompt_parts(
        input: u64,
        cache_read: u64,
        cache_write: u64,
        output: u64,
        total: Option<u64>,
    ) -> Self {
        let prompt = input + cache_read + cache_write;
        Self {
            prompt_tokens: prompt,
            completion_tokens: output,
            total_tokens: total.unwrap_or(prompt + output),
            cached_tokens: Some(cache_read),
            reasoning_tokens: None,
            cache_write_tokens: Some(cache_write),
        }
    }

    /// `(prompt_tokens, completion_tokens, total_tokens)`.
    #[must_use]
    pub fn as_tuple(&self) -> (u64, u64, u64) {
        (
            self.prompt_tokens,
            self.completion_tokens,
            self.total_tokens,
        )
    }
}

/// Writers for the OpenAI-style SSE the gateway sends to its clients.
pub mod sse_writer {
    use memchr::memchr;

    /// The frame that ends an OpenAI stream.
    pub const DONE: &[u8] = b"data: [DONE]\n\n";

    /// Append `data: <payload>\n\n`. A payload holding `\n` (an upstream event made of several
    /// `data:` lines) is written as several `data:` lines, so the client reassembles the same bytes.
    pub fn write_data(out: &mut Vec<u8>, payload: &[u8]) {
        out.reserve(payload.len() + 8);
        let mut rest = payload;
        while let Some(pos) = memchr(b'\n', rest) {
            let (line, after) = rest.split_at(pos);
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line);
            out.push(b'\n');
            rest = after.get(1..).unwrap_or_default();
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(rest);
        out.extend_from_slice(b"\n\n");
    }

    /// Append `data: [DONE]\n\n`.
    pub fn write_done(out: &mut Vec<u8>) {
        out.extend_from_slice(DONE);
    }
}

/// A streaming translator for one upstream response, whatever the provider.
#[derive(Debug)]
pub enum StreamTranslator {
    OpenAI(openai::OpenAIStream),
    Anthropic(anthropic::AnthropicStream),
    Bedrock(bedrock::BedrockStream),
    Gemini(gemini::GeminiStream),
}

/// Build the stream translator registered under `provider`.
///
/// `client_model` is the model name the client asked for (written into every chunk in place of
/// the upstream's), `include_usage` whether the client asked for the usage chunk.
pub fn new_stream_translator(
    provider: &str,
    client_model: Option<String>,
    include_usage: bool,
) -> Result<StreamTranslator, CoreError> {
    match provider {
        "openai" => Ok(StreamTranslator::OpenAI(openai::OpenAIStream::new(
            client_model,
            include_usage,
        ))),
        "anthropic" => Ok(StreamTranslator::Anthropic(
            anthropic::AnthropicStream::new(client_model, include_usage),
        )),
        "bedrock" => Ok(StreamTranslator::Bedrock(bedrock::BedrockStream::new(
            client_model,
            include_usage,
        ))),
        "gemini" => Ok(StreamTranslator::Gemini(gemini::GeminiStream::new(
            client_model,
            include_usage,
        ))),
        other => Err(unknown_provider(other)),
    }
}

/// Translate a whole (non-streaming) response body from `provider` into an OpenAI Chat Completions
/// body, and return the usage it reports.
pub fn translate_response(
    provider: &str,
    body: &[u8],
    client_model: Option<&str>,
) -> Result<(Vec<u8>, Option<Usage>), CoreError> {
    match provider {
        "openai" => openai::translate_response(body, client_model),
        "anthropic" => anthropic::translate_response(body, client_model),
        "bedrock" => bedrock::translate_response(body, client_model),
        "gemini" => gemini::translate_response(body, client_model),
        other => Err(unknown_provider(other)),
    }
}

#[cold]
#[inline(never)]
fn unknown_provider(name: &str) -> CoreError {
    CoreError::UnknownProvider(name.to_owned())
}

impl StreamTranslator {
    /// Translate one chunk of the upstream body (any split), appending complete OpenAI SSE frames
    /// to `out`.
    pub fn feed_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), CoreError> {
        match self {
            Self::OpenAI(t) => t.feed_into(chunk, out),
            Self::Anthropic(t) => t.feed_into(chunk, out),
            Self::Bedrock(t) => t.feed_into(chunk, out),
            Self::Gemini(t) => t.feed_into(chunk, out),
        }
    }

    /// Signal upstream EOF, appending the last frames to `out`.
    pub fn finish_into(&mut self, out: &mut Vec<u8>) -> Result<(), CoreError> {
        match self {
            Self::OpenAI(t) => t.finish_into(out),
            Self::Anthropic(t) => t.finish_into(out),
            Self::Bedrock(t) => t.finish_into(out),
            Self::Gemini(t) => t.finish_into(out),
        }
    }

    /// [`Self::feed_into`] into a new buffer.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<u8>, CoreError> {
        let mut out = Vec::new();
        self.feed_into(chunk, &mut out)?;
        Ok(out)
    }

    /// [`Self::finish_into`] into a new buffer.
    pub fn finish(&mut self) -> Result<Vec<u8>, CoreError> {
        let mut out = Vec::new();
        self.finish_into(&mut out)?;
        Ok(out)
    }

    /// The last usage the upstream reported.
    #[must_use]
    pub fn usage(&self) -> Option<Usage> {
        match self {
            Self::OpenAI(t) => t.usage(),
            Self::Anthropic(t) => t.writer().usage(),
            Self::Bedrock(t) => t.writer().usage(),
            Self::Gemini(t) => t.writer().usage(),
        }
    }

    /// The last finish reason the upstream reported.
    #[must_use]
    pub fn finish_reason(&self) -> Option<&str> {
        match self {
            Self::OpenAI(t) => t.finish_reason(),
            Self::Anthropic(t) => t.writer().finish_reason(),
            Self::Bedrock(t) => t.writer().finish_reason(),
            Self::Gemini(t) => t.writer().finish_reason(),
        }
    }

    /// The message of the upstream error, in-stream error or truncation recorded, if any.
    #[must_use]
    pub fn error(&self) -> Option<&str> {
        match self {
            Self::OpenAI(t) => t.error(),
            Self::Anthropic(t) => t.writer().error_message(),
            Self::Bedrock(t) => t.writer().error_message(),
            Self::Gemini(t) => t.writer().error_message(),
        }
    }

    /// Whether the stream has been terminated with `data: [DONE]`.
    #[must_use]
    pub fn done(&self) -> bool {
        match self {
            Self::OpenAI(t) => t.done(),
            Self::Anthropic(t) => t.writer().done(),
            Self::Bedrock(t) => t.writer().done(),
            Self::Gemini(t) => t.writer().done(),
        }
    }

    /// Whether an untranslatable upstream chunk ended the stream with an error frame; the caller
    /// should stop reading the upstream.
    #[must_use]
    pub fn failed(&self) -> bool {
        match self {
            Self::OpenAI(t) => t.failed(),
            Self::Anthropic(t) => t.writer().failed(),
            Self::Bedrock(t) => t.writer().failed(),
            Self::Gemini(t) => t.writer().failed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_provider_has_a_stream_translator_and_a_response_translator() {
        for provider in PROVIDERS {
            assert!(
                new_stream_translator(provider, None, true).is_ok(),
                "{provider}"
            );
            assert!(
                !matches!(
                    translate_response(provider, b"{}", None),
                    Err(CoreError::UnknownProvider(_))
                ),
                "{provider}"
            );
        }
    }

    #[test]
    fn unknown_provider_is_an_error() {
        assert_eq!(
            new_stream_translator("nope", None, true).err(),
            Some(CoreError::UnknownProvider("nope".to_owned()))
        );
        assert_eq!(
            translate_response("nope", b"{}", None).err(),
            Some(CoreError::UnknownProvider("nope".to_owned()))
        );
    }

    #[test]
    fn usage_missing_counts_are_zero() {
        assert_eq!(
            Usage::from_openai_json(r#"{"prompt_tokens": 3, "total_tokens": null, "x": []}"#),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 0,
                total_tokens: 0,
                cached_tokens: None,
                reasoning_tokens: None,
                cache_write_tokens: None,
            })
        );
        assert_eq!(Usage::from_openai_json("[]"), None);
    }

    #[test]
    fn openai_usage_details_are_read_for_spend() {
        let usage = Usage::from_openai_json(
            r#"{"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                "prompt_tokens_details": {"cached_tokens": 4},
                "completion_tokens_details": {"reasoning_tokens": 3}}"#,
        );
        let usage = usage.unwrap_or_default();
        assert_eq!(usage.cached_tokens, Some(4));
        assert_eq!(usage.reasoning_tokens, Some(3));
        assert_eq!(usage.cache_write_tokens, None);
        assert_eq!(
            Usage::from_prompt_parts(1, 2, 3, 4, None).cache_write_tokens,
            Some(3)
        );
    }

    #[test]
    fn write_data_splits_multi_line_payloads() {
        let mut out = Vec::new();
        sse_writer::write_data(&mut out, b"{\n\"a\": 1\n}");
        sse_writer::write_done(&mut out);
        assert_eq!(out, b"data: {\ndata: \"a\": 1\ndata: }\n\ndata: [DONE]\n\n");
    }
}
