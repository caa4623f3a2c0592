//! The Rust core of agentgateway: sans-IO framing of upstream response bodies and translation of
//! each provider's responses into OpenAI Chat Completions bytes. Pure Rust (tested with plain
//! `cargo test`); the Python binding is compiled in with the `python` feature (maturin sets it).

pub mod error;
pub mod error_kind;
pub mod framing;
pub mod guard;
mod json;
pub mod providers;
pub mod sigv4;
pub mod stats;
pub mod tokenize;

#[cfg(feature = "python")]
mod python;

pub use error::CoreError;
pub use error_kind::ErrorKind;
pub use framing::{SseEvent, SseParser};
pub use providers::{new_stream_translator, translate_response, StreamTranslator, Usage};
