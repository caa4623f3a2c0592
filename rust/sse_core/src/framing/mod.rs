//! Framing only: turn the bytes of a response body into events, with no knowledge of any provider.
//! AWS eventstream (Bedrock) framing will live beside `sse` as `eventstream`.

pub mod sse;

pub use sse::{SseEvent, SseParser};
