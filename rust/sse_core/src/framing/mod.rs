//! Framing only: turn the bytes of a response (HTTP/1.1 framing, then the body's event framing)
//! into events, with no knowledge of any provider.
//! AWS eventstream (Bedrock) framing will live beside `sse` as `eventstream`.

pub mod http1;
pub mod sse;

pub use http1::{ResponseHead, ResponseParser};
pub use sse::{SseEvent, SseParser};
