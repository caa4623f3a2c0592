//! Framing only: turn the bytes of a response (HTTP/1.1 framing, then the body's event framing)
//! into events, with no knowledge of any provider: SSE (`sse`) and the AWS event stream
//! encoding (`eventstream`, Bedrock).

pub mod eventstream;
pub mod http1;
pub mod sse;

pub use eventstream::{EventMessage, EventStreamDecoder, EventStreamError};
pub use http1::{BodyBytes, ResponseHead, ResponseParser};
pub use sse::{SseEvent, SseParser};
