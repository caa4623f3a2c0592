//! What every provider whose stream is SSE shares (Anthropic, Gemini): the incremental parser, the
//! bound on an event that never ends, one translation pass per network read, and the rule that an
//! untranslatable event ends the client's stream with an error event after the good ones. A provider
//! supplies only what its events mean ([`SseEvents`]).

use super::encoder::StreamWriter;
use super::events::Encoder;
use super::openai::{is_cut_off, MAX_EVENT_BYTES};
use crate::error::CoreError;
use crate::framing::{SseEvent, SseParser};

/// A provider's reading of its SSE events, written to the client through the shared encoder.
pub trait SseEvents {
    /// Whether the stream may carry bare JSON values between its events (Google's errors; see
    /// [`crate::framing::sse`]), which then reach [`Self::event`] with `bare` set.
    const BARE_JSON: bool = false;

    /// Translate one event. An error ends the client's stream with an `upstream_protocol_error`
    /// event (the frames before it are kept).
    fn event<W: Encoder>(
        &mut self,
        event: &SseEvent,
        writer: &mut W,
        out: &mut Vec<u8>,
    ) -> Result<(), CoreError>;

    /// The upstream closed and the client's stream is still open: end it if the answer is
    /// complete, or report it truncated. By default the answer is complete once every choice has
    /// its finish reason (streams without an end marker of their own, or one that may be left
    /// out).
    fn end_of_stream<W: Encoder>(&mut self, writer: &mut W, out: &mut Vec<u8>) {
        if writer.every_choice_finished() {
            writer.end(out);
        } else {
            writer.truncated(out);
        }
    }
}

/// Translator for one SSE stream of a provider (`T` knows its events), written for the client by
/// `W` (OpenAI chat by default).
#[derive(Debug)]
pub struct SseStream<T, W = StreamWriter> {
    parser: SseParser,
    /// Scratch list of the events parsed from one read, kept to reuse its allocation.
    events: Vec<SseEvent>,
    writer: W,
    handler: T,
}

impl<T: SseEvents + Default, W: Encoder> SseStream<T, W> {
    /// `client_model`: the model name reported to the client (default: the upstream's);
    /// `include_usage`: whether the client asked for the usage chunk.
    #[must_use]
    pub fn new(client_model: Option<String>, include_usage: bool) -> Self {
        Self {
            parser: SseParser::with_bare_json(T::BARE_JSON),
            events: Vec::new(),
            writer: W::for_client(client_model.unwrap_or_default(), include_usage),
            handler: T::default(),
        }
    }
}

impl<T: SseEvents, W: Encoder> SseStream<T, W> {
    /// Translate one chunk of the upstream body (any split), appending complete frames to `out`.
    pub fn feed_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), CoreError> {
        self.parser.feed(chunk, &mut self.events);
        self.drain_events(out);
        if self.parser.pending_len() > MAX_EVENT_BYTES {
            self.writer.fail(
                out,
                &CoreError::EventTooLarge {
                    limit: MAX_EVENT_BYTES,
                },
            );
        }
        Ok(())
    }

    /// Signal upstream EOF, appending the last frames to `out`.
    pub fn finish_into(&mut self, out: &mut Vec<u8>) -> Result<(), CoreError> {
        self.parser.finish(&mut self.events);
        // As for OpenAI: an event never terminated by a blank line whose payload does not parse was
        // cut off by the end of the stream, a truncation (reported below), not invalid JSON.
        self.events.retain(|event| !is_cut_off(&event.data));
        self.drain_events(out);
        if !self.writer.closed() {
            self.handler.end_of_stream(&mut self.writer, out);
        }
        Ok(())
    }

    /// The shared writer, for the facts it keeps.
    #[must_use]
    pub fn writer(&self) -> &W {
        &self.writer
    }

    /// The shared writer, to configure it before the first chunk ([`Encoder::as_choice`]).
    pub fn writer_mut(&mut self) -> &mut W {
        &mut self.writer
    }

    fn drain_events(&mut self, out: &mut Vec<u8>) {
        let mut events = std::mem::take(&mut self.events);
        for event in &events {
            if self.writer.closed() {
                break;
            }
            if let Err(err) = self.handler.event(event, &mut self.writer, out) {
                self.writer.fail(out, &err);
            }
        }
        events.clear();
        self.events = events;
    }
}

#[cfg(test)]
impl<T: SseEvents, W: Encoder> SseStream<T, W> {
    /// All of `input` in one read, then EOF: the client's frames as JSON (for unit tests).
    #[allow(clippy::unwrap_used)]
    pub(crate) fn run(&mut self, input: &[u8]) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        self.feed_into(input, &mut out).unwrap();
        self.finish_into(&mut out).unwrap();
        super::encoder::test_support::frames(&out)
    }
}
