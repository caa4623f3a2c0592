//! The provider registry: one module per upstream API, each decoding that provider's responses into
//! the canonical events ([`events::Encoder`]), and one encoder per client API (OpenAI chat:
//! [`encoder`]; Anthropic Messages: [`anthropic_encoder`]). Adding a provider means a module, its
//! arms in [`new_stream_translator_for`] and [`translate_response_for`], and a name in
//! [`PROVIDERS`] (a test checks that every listed name is constructible for every client API).

pub mod anthropic;
pub mod anthropic_encoder;
pub mod anthropic_passthrough;
pub mod bedrock;
pub mod bedrock_anthropic;
pub mod encoder;
pub mod events;
pub mod gemini;
pub mod openai;
pub mod openai_decode;
pub mod sse_stream;

use serde::Deserialize;

pub use events::{ClientApi, Encoder, CLIENT_APIS};

use crate::error::CoreError;

/// The provider names accepted by [`new_stream_translator`] and [`translate_response`]:
/// `bedrock` is the Converse API, `bedrock-anthropic` Claude on Bedrock through `InvokeModel` /
/// `InvokeModelWithResponseStream` (Anthropic Messages bodies and events).
pub const PROVIDERS: &[&str] = &[
    "openai",
    "anthropic",
    "bedrock",
    "bedrock-anthropic",
    "gemini",
];

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

    /// [`Self::from_prompt_parts`] from the counts an upstream reported, any of them missing (0).
    #[must_use]
    pub(crate) fn from_reported_parts(
        input: Option<u64>,
        cache_read: Option<u64>,
        cache_write: Option<u64>,
        output: Option<u64>,
        total: Option<u64>,
    ) -> Self {
        Self::from_prompt_parts(
            input.unwrap_or(0),
            cache_read.unwrap_or(0),
            cache_write.unwrap_or(0),
            output.unwrap_or(0),
            total,
        )
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

/// One upstream streaming response being written for one client API: what every translator of
/// the registry is (a provider's decoder and a client API's encoder, or a pass-through).
pub trait Translate: std::fmt::Debug + Send + Sync {
    /// Translate one chunk of the upstream body (any split), appending complete frames to `out`.
    fn feed_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), CoreError>;
    /// Signal upstream EOF, appending the last frames to `out`.
    fn finish_into(&mut self, out: &mut Vec<u8>) -> Result<(), CoreError>;
    /// The last usage the upstream reported.
    fn usage(&self) -> Option<Usage>;
    /// The finish reason of the answer, in OpenAI's terms.
    fn finish_reason(&self) -> Option<&str>;
    /// The message of the upstream error, in-stream error or truncation recorded, if any.
    fn error(&self) -> Option<&str>;
    /// Whether the client's stream ended normally (`[DONE]`, `message_stop`).
    fn done(&self) -> bool;
    /// Whether an untranslatable upstream chunk ended the stream with an error event.
    fn failed(&self) -> bool;
    /// Write the answer as choice `index` of a merged one ([`Encoder::as_choice`]); false when
    /// this translator cannot (a pass-through, or a client API without choices).
    fn as_choice(&mut self, index: u32, id: &str) -> bool {
        let _ = (index, id);
        false
    }
}

impl<T: sse_stream::SseEvents + std::fmt::Debug + Send + Sync, W: Encoder> Translate
    for sse_stream::SseStream<T, W>
{
    fn feed_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), CoreError> {
        sse_stream::SseStream::feed_into(self, chunk, out)
    }
    fn finish_into(&mut self, out: &mut Vec<u8>) -> Result<(), CoreError> {
        sse_stream::SseStream::finish_into(self, out)
    }
    fn usage(&self) -> Option<Usage> {
        self.writer().usage()
    }
    fn finish_reason(&self) -> Option<&str> {
        self.writer().finish_reason()
    }
    fn error(&self) -> Option<&str> {
        self.writer().error_message()
    }
    fn done(&self) -> bool {
        self.writer().done()
    }
    fn failed(&self) -> bool {
        self.writer().failed()
    }
    fn as_choice(&mut self, index: u32, id: &str) -> bool {
        self.writer_mut().as_choice(index, id)
    }
}

impl<W: Encoder> Translate for bedrock::BedrockStream<W> {
    fn feed_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), CoreError> {
        bedrock::BedrockStream::feed_into(self, chunk, out)
    }
    fn finish_into(&mut self, out: &mut Vec<u8>) -> Result<(), CoreError> {
        bedrock::BedrockStream::finish_into(self, out)
    }
    fn usage(&self) -> Option<Usage> {
        self.writer().usage()
    }
    fn finish_reason(&self) -> Option<&str> {
        self.writer().finish_reason()
    }
    fn error(&self) -> Option<&str> {
        self.writer().error_message()
    }
    fn done(&self) -> bool {
        self.writer().done()
    }
    fn failed(&self) -> bool {
        self.writer().failed()
    }
    fn as_choice(&mut self, index: u32, id: &str) -> bool {
        self.writer_mut().as_choice(index, id)
    }
}

impl Translate for openai::OpenAIStream {
    fn feed_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), CoreError> {
        openai::OpenAIStream::feed_into(self, chunk, out)
    }
    fn finish_into(&mut self, out: &mut Vec<u8>) -> Result<(), CoreError> {
        openai::OpenAIStream::finish_into(self, out)
    }
    fn usage(&self) -> Option<Usage> {
        openai::OpenAIStream::usage(self)
    }
    fn finish_reason(&self) -> Option<&str> {
        openai::OpenAIStream::finish_reason(self)
    }
    fn error(&self) -> Option<&str> {
        openai::OpenAIStream::error(self)
    }
    fn done(&self) -> bool {
        openai::OpenAIStream::done(self)
    }
    fn failed(&self) -> bool {
        openai::OpenAIStream::failed(self)
    }
}

/// A streaming translator for one upstream response, whatever the provider and the client API.
#[derive(Debug)]
pub struct StreamTranslator(Box<dyn Translate>);

/// Build the stream translator registered under `provider`, writing OpenAI Chat Completions.
///
/// `client_model` is the model name the client asked for (written into every chunk in place of
/// the upstream's), `include_usage` whether the client asked for the usage chunk.
pub fn new_stream_translator(
    provider: &str,
    client_model: Option<String>,
    include_usage: bool,
) -> Result<StreamTranslator, CoreError> {
    new_stream_translator_for(provider, client_model, include_usage, ClientApi::OpenAI)
}

/// Build the stream translator registered under `provider`, writing for the client API `api`.
/// One arm per provider and client API: the provider's decoder through the API's encoder, or a
/// pass-through where the upstream already speaks the client's API (OpenAI chat to OpenAI chat,
/// Anthropic Messages to Anthropic Messages).
pub fn new_stream_translator_for(
    provider: &str,
    client_model: Option<String>,
    include_usage: bool,
    api: ClientApi,
) -> Result<StreamTranslator, CoreError> {
    use anthropic_encoder::MessagesWriter as Anthropic;
    use encoder::StreamWriter as OpenAI;
    let (m, u) = (client_model, include_usage);
    let translator: Box<dyn Translate> = match (provider, api) {
        ("openai", ClientApi::OpenAI) => Box::new(openai::OpenAIStream::new(m, u)),
        ("openai", ClientApi::Anthropic) => {
            Box::new(openai_decode::OpenAIChatStream::<Anthropic>::new(m, u))
        }
        ("anthropic", ClientApi::OpenAI) => {
            Box::new(anthropic::AnthropicStream::<OpenAI>::new(m, u))
        }
        ("anthropic", ClientApi::Anthropic) => {
            Box::new(anthropic_passthrough::PassthroughStream::new(m))
        }
        ("bedrock", ClientApi::OpenAI) => Box::new(bedrock::BedrockStream::<OpenAI>::new(m, u)),
        ("bedrock", ClientApi::Anthropic) => {
            Box::new(bedrock::BedrockStream::<Anthropic>::new(m, u))
        }
        ("bedrock-anthropic", ClientApi::OpenAI) => {
            Box::new(bedrock_anthropic::decoded::<OpenAI>(m, u))
        }
        ("bedrock-anthropic", ClientApi::Anthropic) => Box::new(bedrock_anthropic::passthrough(m)),
        ("gemini", ClientApi::OpenAI) => Box::new(gemini::GeminiStream::<OpenAI>::new(m, u)),
        ("gemini", ClientApi::Anthropic) => Box::new(gemini::GeminiStream::<Anthropic>::new(m, u)),
        (other, _) => return Err(unknown_provider(other)),
    };
    Ok(StreamTranslator(translator))
}

/// Translate a whole (non-streaming) response body from `provider` into an OpenAI Chat Completions
/// body, and return the usage it reports.
pub fn translate_response(
    provider: &str,
    body: &[u8],
    client_model: Option<&str>,
) -> Result<(Vec<u8>, Option<Usage>), CoreError> {
    translate_response_for(provider, body, client_model, ClientApi::OpenAI)
}

/// Translate a whole (non-streaming) response body from `provider` into a body of the client API
/// `api`, and return the usage it reports. Where the upstream speaks the client's API the body is
/// passed on with only its top-level `model` rewritten; otherwise it is read into the canonical
/// answer ([`encoder::Completion`]) and written by the API's encoder.
pub fn translate_response_for(
    provider: &str,
    body: &[u8],
    client_model: Option<&str>,
    api: ClientApi,
) -> Result<(Vec<u8>, Option<Usage>), CoreError> {
    match (provider, api) {
        ("openai", ClientApi::OpenAI) => return openai::translate_response(body, client_model),
        ("anthropic" | "bedrock-anthropic", ClientApi::Anthropic) => {
            return anthropic_passthrough::translate_response(body, client_model)
        }
        _ => {}
    }
    let completion = match provider {
        "openai" => openai_decode::decode_response(body, client_model)?,
        "anthropic" | "bedrock-anthropic" => anthropic::decode_response(body, client_model)?,
        "bedrock" => bedrock::decode_response(body, client_model)?,
        "gemini" => gemini::decode_response(body, client_model, api.tool_id_prefix())?,
        other => return Err(unknown_provider(other)),
    };
    let out = match api {
        ClientApi::OpenAI => completion.to_json(),
        ClientApi::Anthropic => anthropic_encoder::message_json(&completion),
    };
    Ok((out, completion.usage))
}

#[cold]
#[inline(never)]
fn unknown_provider(name: &str) -> CoreError {
    CoreError::UnknownProvider(name.to_owned())
}

impl StreamTranslator {
    /// Translate one chunk of the upstream body (any split), appending complete frames to `out`.
    pub fn feed_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), CoreError> {
        self.0.feed_into(chunk, out)
    }

    /// Signal upstream EOF, appending the last frames to `out`.
    pub fn finish_into(&mut self, out: &mut Vec<u8>) -> Result<(), CoreError> {
        self.0.finish_into(out)
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
        self.0.usage()
    }

    /// The finish reason of the answer, in OpenAI's terms (`stop`, `length`, `tool_calls`,
    /// `content_filter`), whatever the client API.
    #[must_use]
    pub fn finish_reason(&self) -> Option<&str> {
        self.0.finish_reason()
    }

    /// The message of the upstream error, in-stream error or truncation recorded, if any.
    #[must_use]
    pub fn error(&self) -> Option<&str> {
        self.0.error()
    }

    /// Whether the client's stream ended normally (`data: [DONE]`, or `message_stop` for an
    /// Anthropic client).
    #[must_use]
    pub fn done(&self) -> bool {
        self.0.done()
    }

    /// Whether an untranslatable upstream chunk ended the stream with an error frame; the caller
    /// should stop reading the upstream.
    #[must_use]
    pub fn failed(&self) -> bool {
        self.0.failed()
    }

    /// Write the answer as choice `index` of one the gateway merges from several upstream answers
    /// (`n` > 1 on providers that answer one choice per call): that index in every chunk, `id`
    /// (when not empty) as their id, no `[DONE]`. Call before the first chunk. False when this
    /// translator cannot (OpenAI's pass-through, Anthropic Messages clients).
    pub fn as_choice(&mut self, index: u32, id: &str) -> bool {
        self.0.as_choice(index, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_provider_has_a_stream_translator_and_a_response_translator() {
        for provider in PROVIDERS {
            for name in CLIENT_APIS {
                let api = ClientApi::from_name(name).unwrap_or(ClientApi::OpenAI);
                assert!(
                    new_stream_translator_for(provider, None, true, api).is_ok(),
                    "{provider} {name}"
                );
                assert!(
                    !matches!(
                        translate_response_for(provider, b"{}", None, api),
                        Err(CoreError::UnknownProvider(_))
                    ),
                    "{provider} {name}"
                );
            }
        }
        assert_eq!(
            ClientApi::from_name("anthropic"),
            Some(ClientApi::Anthropic)
        );
        assert_eq!(ClientApi::from_name("nope"), None);
    }

    #[test]
    #[allow(clippy::unwrap_used, clippy::indexing_slicing)]
    fn a_decoded_stream_can_be_one_choice_of_a_merged_answer_and_a_pass_through_cannot() {
        let upstream = concat!(
            "event: message_start\n",
            r#"data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"usage":{"input_tokens":10,"output_tokens":1}}}"#,
            "\n\nevent: content_block_start\n",
            r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            "\n\nevent: content_block_delta\n",
            r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
            "\n\nevent: message_delta\n",
            r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}"#,
            "\n\nevent: message_stop\n",
            r#"data: {"type":"message_stop"}"#,
            "\n\n",
        );
        for provider in ["anthropic", "bedrock", "gemini"] {
            let mut t = new_stream_translator(provider, Some("m".into()), false).unwrap();
            assert!(t.as_choice(2, "chatcmpl-1"), "{provider}");
        }
        let mut t = new_stream_translator("anthropic", Some("m".into()), false).unwrap();
        assert!(t.as_choice(2, "chatcmpl-1"));
        let mut out = t.feed(upstream.as_bytes()).unwrap();
        out.extend(t.finish().unwrap());
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("[DONE]"), "{text}");
        let frames = encoder::test_support::frames(text.as_bytes());
        assert_eq!(frames.len(), 3, "{text}");
        for frame in &frames {
            assert_eq!(frame["id"], "chatcmpl-1");
            assert_eq!(frame["choices"][0]["index"], 2);
        }
        assert!(t.done());
        assert_eq!(t.usage().map(|u| u.as_tuple()), Some((10, 3, 13)));
        let mut passthrough = new_stream_translator("openai", None, false).unwrap();
        assert!(!passthrough.as_choice(1, ""));
        let mut anthropic =
            new_stream_translator_for("anthropic", None, false, ClientApi::Anthropic).unwrap();
        assert!(!anthropic.as_choice(1, ""));
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
