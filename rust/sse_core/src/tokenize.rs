//! Input-token counting before a request is sent (`params.tokenize`), with OpenAI's own BPE
//! vocabularies (tiktoken's `cl100k_base`, `o200k_base`, `o200k_harmony`, embedded by the
//! `tiktoken-rs` crate, so nothing is downloaded at run time).
//!
//! A chat request is counted as OpenAI's cookbook and agentgateway count it: every message costs
//! its text's tokens plus 3 of framing and 1 for the role, and the reply is primed with 3 more. The
//! count is exact for OpenAI models on the text it is given; for any other model (Claude, Gemini,
//! Llama, ...) it is `cl100k_base`'s count, an estimate of that model's own tokenizer, and the
//! caller is told so.

use tiktoken_rs::tokenizer::{get_tokenizer, Tokenizer};
use tiktoken_rs::CoreBPE;

/// What one message costs beyond its text: `<|start|>`, the role, `<|message|>` / `<|end|>`.
const TOKENS_PER_MESSAGE: u64 = 3 + 1;
/// Every reply is primed with `<|start|>assistant<|message|>`.
const TOKENS_PER_REPLY: u64 = 3;

/// The vocabulary a model is counted with, and whether that count is the model's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    tokenizer: Tokenizer,
    /// The model is one of OpenAI's and this is its tokenizer; false for an estimate.
    pub exact: bool,
}

impl Encoding {
    /// The encoding for `model` (an OpenAI model name, a fine-tune `ft:...` or an Azure
    /// deployment name such as `gpt-35-turbo`); `cl100k_base` as an estimate for other models.
    #[must_use]
    pub fn for_model(model: &str) -> Self {
        match get_tokenizer(model) {
            Some(
                tokenizer
                @ (Tokenizer::Cl100kBase | Tokenizer::O200kBase | Tokenizer::O200kHarmony),
            ) => Self {
                tokenizer,
                exact: true,
            },
            // Completion-era vocabularies (r50k, p50k) and unknown models: chat requests are not
            // what those models took, so their count is an estimate with the GPT-4 vocabulary.
            _ => Self {
                tokenizer: Tokenizer::Cl100kBase,
                exact: false,
            },
        }
    }

    /// tiktoken's name for the vocabulary.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self.tokenizer {
            Tokenizer::O200kBase => "o200k_base",
            Tokenizer::O200kHarmony => "o200k_harmony",
            _ => "cl100k_base",
        }
    }

    fn bpe(self) -> &'static CoreBPE {
        match self.tokenizer {
            Tokenizer::O200kBase => tiktoken_rs::o200k_base_singleton(),
            Tokenizer::O200kHarmony => tiktoken_rs::o200k_harmony_singleton(),
            _ => tiktoken_rs::cl100k_base_singleton(),
        }
    }

    /// Build the vocabulary now (about 0.1-0.3 s and tens of MB the first time, once per process),
    /// so that the first request does not pay for it.
    pub fn load(self) {
        let _ = self.bpe();
    }

    /// Tokens of `text`, special-token text counted as the ordinary text it is (a client cannot
    /// smuggle `<|endoftext|>` in as one token, nor is it refused).
    #[must_use]
    pub fn count_text(self, text: &str) -> u64 {
        self.bpe().encode_ordinary(text).len() as u64
    }

    /// Tokens of a chat request whose messages hold `texts` (one text per message: its content
    /// parts, tool calls and name joined by the caller).
    #[must_use]
    pub fn count_chat<S: AsRef<str>>(self, texts: &[S]) -> u64 {
        let bpe = self.bpe();
        texts.iter().fold(TOKENS_PER_REPLY, |total, text| {
            total + TOKENS_PER_MESSAGE + bpe.encode_ordinary(text.as_ref()).len() as u64
        })
    }
}

/// The Python binding (`agentgateway._core.count_chat_tokens`, `load_tokenizer`), registered by
/// `python.rs`. Counting runs without the GIL: a long prompt takes milliseconds.
#[cfg(feature = "python")]
pub(crate) mod python {
    use pyo3::prelude::*;

    use super::Encoding;
    use crate::guard::guarded;

    const TOKENIZER: &str = "the input-token counter";

    /// `(tokens, exact)`: the tokens of a chat request whose messages hold `texts`, counted with
    /// `model`'s vocabulary; `exact` is false when the model is not OpenAI's (an estimate).
    #[pyfunction]
    pub(crate) fn count_chat_tokens(
        py: Python<'_>,
        model: &str,
        texts: Vec<String>,
    ) -> PyResult<(u64, bool)> {
        let encoding = Encoding::for_model(model);
        let tokens = py.detach(|| guarded(TOKENIZER, || Ok(encoding.count_chat(&texts))))?;
        Ok((tokens, encoding.exact))
    }

    /// Builds `model`'s vocabulary now (once per process); returns its tiktoken name.
    #[pyfunction]
    pub(crate) fn load_tokenizer(py: Python<'_>, model: &str) -> PyResult<&'static str> {
        let encoding = Encoding::for_model(model);
        py.detach(|| {
            guarded(TOKENIZER, || {
                encoding.load();
                Ok(())
            })
        })?;
        Ok(encoding.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn openai_models_get_their_own_vocabulary() {
        for (model, name) in [
            ("gpt-4o-mini", "o200k_base"),
            ("gpt-4.1", "o200k_base"),
            ("gpt-5-mini", "o200k_base"),
            ("o3", "o200k_base"),
            ("gpt-4", "cl100k_base"),
            ("gpt-35-turbo", "cl100k_base"),
            ("ft:gpt-4o:acme::abc", "o200k_base"),
        ] {
            let encoding = Encoding::for_model(model);
            assert_eq!((encoding.name(), encoding.exact), (name, true), "{model}");
        }
    }

    #[test]
    fn other_models_are_an_estimate_with_cl100k() {
        for model in [
            "claude-sonnet-4-5",
            "gemini-2.5-flash",
            "llama3",
            "",
            "text-davinci-003",
        ] {
            let encoding = Encoding::for_model(model);
            assert_eq!(
                (encoding.name(), encoding.exact),
                ("cl100k_base", false),
                "{model}"
            );
        }
    }

    #[test]
    fn known_token_ids_counts() {
        // "hello world" is two tokens in both vocabularies; the framing adds 4 per message and 3.
        let o200k = Encoding::for_model("gpt-4o");
        assert_eq!(o200k.count_text("hello world"), 2);
        assert_eq!(o200k.count_chat(&["hello world"]), 2 + 4 + 3);
        assert_eq!(o200k.count_chat::<&str>(&[]), 3);
        let cl100k = Encoding::for_model("gpt-4");
        assert_eq!(cl100k.count_text("hello world"), 2);
        assert_eq!(
            cl100k.count_text("<|endoftext|>"),
            7,
            "special tokens count as text"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn chat_count_is_the_sum_of_its_messages(texts in proptest::collection::vec(".{0,40}", 0..5)) {
            let encoding = Encoding::for_model("gpt-4o-mini");
            let parts: u64 = texts.iter().map(|t| encoding.count_text(t) + TOKENS_PER_MESSAGE).sum();
            prop_assert_eq!(encoding.count_chat(&texts), parts + TOKENS_PER_REPLY);
        }
    }
}
