//! The panic guard every entry point of the Python binding runs under (issue 20).
//!
//! A bug in the core must fail one call (one stream, one answer, one signature), never the worker:
//! pyo3 turns an escaping panic into `PanicException`, a `BaseException` that the gateway's
//! handlers do not catch. [`guarded`] turns it into a [`CoreError::Internal`] that says *what*
//! failed ("the Bedrock eventstream translator failed: ..."). A stateful object (a translator, a
//! response parser, a signer) is left in an unknown state by a panic: [`Poison`] refuses every
//! later call on it with an error that names what failed earlier. Plain errors are not panics:
//! they neither poison nor change their text.
//!
//! Pure Rust, so `cargo test` covers it without Python.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::CoreError;

/// The text of a panic's payload (`panic!("...")` gives a `&str` or a `String`).
#[cold]
#[inline(never)]
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("panic without a message")
}

#[cold]
#[inline(never)]
fn panicked(what: &'static str, payload: &(dyn Any + Send)) -> CoreError {
    CoreError::Internal {
        what,
        detail: panic_message(payload).to_owned(),
    }
}

/// Runs `f`; a panic inside it becomes `CoreError::Internal` naming `what` ("the SigV4 signer").
pub fn guarded<T>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, CoreError>,
) -> Result<T, CoreError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(panicked(what, &*payload)))
}

/// Whether a stateful object panicked earlier (and so must not be used again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Poison {
    /// What failed, once it has.
    failed: Option<&'static str>,
}

impl Poison {
    /// Runs `f` unless an earlier call panicked; a panic now poisons every later call.
    pub fn guarded<T>(
        &mut self,
        what: &'static str,
        f: impl FnOnce() -> Result<T, CoreError>,
    ) -> Result<T, CoreError> {
        if let Some(what) = self.failed {
            return Err(Self::refused(what));
        }
        catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
            self.failed = Some(what);
            Err(panicked(what, &*payload))
        })
    }

    /// Like [`Poison::guarded`] for a call that cannot fail otherwise (a getter): its value, or the
    /// error when this object panicked before or panics now.
    pub fn guarded_value<T>(
        &mut self,
        what: &'static str,
        f: impl FnOnce() -> T,
    ) -> Result<T, CoreError> {
        self.guarded(what, || Ok(f()))
    }

    /// Whether an earlier call panicked.
    #[must_use]
    pub fn is_poisoned(&self) -> bool {
        self.failed.is_some()
    }

    #[cold]
    #[inline(never)]
    fn refused(what: &'static str) -> CoreError {
        CoreError::Internal {
            what,
            detail: "it failed earlier on this object, which cannot be used again".to_owned(),
        }
    }
}

/// What a stream translator of `provider` is called in an error ("the Bedrock eventstream
/// translator"): the provider's framing is part of it, so the text says where to look.
#[must_use]
pub fn stream_translator_name(provider: &str) -> &'static str {
    match provider {
        "openai" => "the OpenAI stream translator",
        "anthropic" => "the Anthropic stream translator",
        "bedrock" => "the Bedrock eventstream translator",
        "bedrock-anthropic" => "the Bedrock (Claude) eventstream translator",
        "gemini" => "the Gemini stream translator",
        _ => "the stream translator",
    }
}

/// What a whole-response translator of `provider` is called in an error.
#[must_use]
pub fn response_translator_name(provider: &str) -> &'static str {
    match provider {
        "openai" => "the OpenAI response translator",
        "anthropic" => "the Anthropic response translator",
        "bedrock" => "the Bedrock Converse response translator",
        "bedrock-anthropic" => "the Bedrock (Claude) response translator",
        "gemini" => "the Gemini response translator",
        _ => "the response translator",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_kind::ErrorKind;
    use crate::providers::PROVIDERS;

    #[test]
    fn a_panic_becomes_an_internal_error_that_names_what_failed() {
        let err = guarded::<()>("the SigV4 signer", || panic!("index out of bounds"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("the SigV4 signer failed: index out of bounds")
        );
        let formatted = guarded::<()>("the HTTP/1.1 response parser", || {
            panic!("bad length {}", 7)
        });
        assert_eq!(
            formatted.err().map(|e| e.to_string()).as_deref(),
            Some("the HTTP/1.1 response parser failed: bad length 7")
        );
    }

    #[test]
    fn a_panic_with_a_payload_that_is_not_text_still_names_what_failed() {
        let err = guarded::<()>("the error event writer", || std::panic::panic_any(42_u8));
        assert_eq!(
            err.err().map(|e| e.to_string()).as_deref(),
            Some("the error event writer failed: panic without a message")
        );
    }

    #[test]
    fn a_caught_panic_is_the_internal_error_kind_and_never_the_old_generic_text() {
        let err = guarded::<()>("the Gemini stream translator", || panic!("boom"));
        let Err(err) = err else {
            panic!("the panic was not caught")
        };
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(!err
            .to_string()
            .contains("internal error in the stream translator"));
    }

    #[test]
    fn results_and_plain_errors_pass_through_unchanged() {
        assert_eq!(guarded("x", || Ok(5)), Ok(5));
        let err = CoreError::Http("truncated".to_owned());
        assert_eq!(guarded::<()>("x", || Err(err.clone())), Err(err.clone()));
        let mut poison = Poison::default();
        assert_eq!(poison.guarded::<()>("x", || Err(err.clone())), Err(err));
        assert!(
            !poison.is_poisoned(),
            "an error is not a panic: the object stays usable"
        );
        assert_eq!(poison.guarded("x", || Ok(1)), Ok(1));
    }

    #[test]
    fn an_object_that_panicked_refuses_every_later_call_naming_what_failed() {
        let mut poison = Poison::default();
        let first = poison.guarded::<()>("the Bedrock eventstream translator", || panic!("oops"));
        assert_eq!(
            first.err().map(|e| e.to_string()).as_deref(),
            Some("the Bedrock eventstream translator failed: oops")
        );
        assert!(poison.is_poisoned());
        let mut ran = false;
        let later = poison.guarded("the other name", || {
            ran = true;
            Ok(())
        });
        assert!(!ran, "a poisoned object must not run again");
        let text = later.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.starts_with("the Bedrock eventstream translator failed: it failed earlier"),
            "{text}"
        );
        assert!(poison.guarded_value("getter", || 3).is_err());
    }

    #[test]
    fn a_getter_that_panics_poisons_too() {
        let mut poison = Poison::default();
        let got: Result<u8, _> =
            poison.guarded_value("the Gemini stream translator", || panic!("x"));
        assert!(got.is_err());
        assert!(poison.is_poisoned());
    }

    #[test]
    fn every_provider_has_its_own_names() {
        for provider in PROVIDERS {
            assert_ne!(
                stream_translator_name(provider),
                "the stream translator",
                "{provider}"
            );
            assert_ne!(
                response_translator_name(provider),
                "the response translator",
                "{provider}"
            );
        }
        assert_eq!(
            stream_translator_name("bedrock"),
            "the Bedrock eventstream translator"
        );
    }
}
