//! Incremental, sans-IO parser for `text/event-stream` (Server-Sent Events).
//!
//! Follows the WHATWG HTML "event stream interpretation" rules
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>):
//!
//! * a line ends with `\n`, `\r\n` or `\r`; a `\r` at the end of one chunk followed by `\n` at the
//!   start of the next is one line end;
//! * lines starting with `:` are comments;
//! * `name:value` (one space after the colon is stripped), a line without a colon is a field whose
//!   name is the whole line and whose value is empty;
//! * `data` lines are joined with `\n`; `event` sets the event type; `id` sets the last event ID
//!   (ignored when it contains NUL, and, as in the spec, kept for the following events);
//!   `retry` and unknown fields are ignored;
//! * a blank line dispatches the event if at least one `data` line was seen (so `data:` alone
//!   dispatches an event with empty data), and resets the event type either way;
//! * one UTF-8 BOM at the very start of the stream is skipped, even when it is split across chunks.
//!
//! Deviation, on purpose: [`SseParser::finish`] dispatches a pending event (including a last line
//! without its line end) instead of discarding it, because gateways meet upstream servers that close
//! the connection without the final blank line.
//!
//! Opt-in extension ([`SseParser::with_bare_json`]), for Google's streams: a Gemini or Vertex AI
//! stream that fails after its 200 ends with the error as a bare JSON object, pretty-printed over
//! several lines and not in a `data:` field (`{\n  "error": {\n    "code": 429, …}\n}\n`). The
//! SSE rules would drop those lines (unknown field names); with the extension a line that starts
//! (after blanks) with `{` or `[` opens such a value, the lines up to the one that balances its
//! brackets (outside strings) are collected, and the value is dispatched as one event whose `bare`
//! is set — google-genai's own stream reader does the same (its `_RawJsonLineBuffer`).
//!
//! Cost stays linear in the bytes fed: each chunk is scanned once with `memchr`, and only the
//! unterminated trailing line is kept between calls, so a growing buffer is never rescanned.

use memchr::{memchr, memchr2};

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// One dispatched server-sent event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event` field, `None` when absent or empty (the spec's default type `message`).
    pub event: Option<String>,
    /// The `data` lines joined with `\n` (no trailing newline).
    pub data: Vec<u8>,
    /// The last event ID at dispatch time, `None` when no (non-empty) `id` was set.
    pub id: Option<String>,
    /// A bare JSON value (see the module docs), its lines joined with `\n`; `event` and `id` are
    /// `None` then.
    pub bare: bool,
}

/// A bare JSON value in progress: its lines so far and where its brackets stand.
#[derive(Debug, Clone, Default)]
struct BareJson {
    text: Vec<u8>,
    /// Open `{` / `[` minus closing ones, outside strings.
    depth: i64,
    in_string: bool,
    escaped: bool,
}

impl BareJson {
    /// Add one line; true once the value's brackets balance.
    fn add_line(&mut self, line: &[u8]) -> bool {
        if !self.text.is_empty() {
            self.text.push(b'\n');
        }
        self.text.extend_from_slice(line);
        for &byte in line {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if byte == b'\\' {
                    self.escaped = true;
                } else if byte == b'"' {
                    self.in_string = false;
                }
            } else {
                match byte {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => self.depth -= 1,
                    _ => {}
                }
            }
        }
        self.depth <= 0
    }
}

/// Whether `line` opens a bare JSON value: its first byte other than a space or tab is `{` or `[`.
fn opens_bare_json(line: &[u8]) -> bool {
    matches!(
        line.iter().find(|b| !matches!(b, b' ' | b'\t')),
        Some(b'{' | b'[')
    )
}

/// Where the parser is in recognising a BOM at the start of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BomState {
    /// This many leading bytes of the BOM have been matched so far (0, 1 or 2).
    Checking(usize),
    /// Past the start of the stream.
    Done,
}

/// Incremental SSE parser: feed bytes as they arrive, collect dispatched events.
///
/// The same events come out whatever the split points of the input.
#[derive(Debug, Clone)]
pub struct SseParser {
    bom: BomState,
    /// The unterminated trailing line of the input fed so far.
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` at the start of the next chunk belongs to it.
    skip_lf: bool,
    data: Vec<u8>,
    has_data: bool,
    event: Option<String>,
    last_id: Option<String>,
    /// Whether bare JSON values are read (see the module docs).
    bare_json: bool,
    /// The bare JSON value in progress, if any.
    bare: Option<BareJson>,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser at the start of a stream.
    #[must_use]
    pub fn new() -> Self {
        Self {
            bom: BomState::Checking(0),
            line: Vec::new(),
            skip_lf: false,
            data: Vec::new(),
            has_data: false,
            event: None,
            last_id: None,
            bare_json: false,
            bare: None,
        }
    }

    /// A parser that also reads bare JSON values between events (Google's errors, see the module
    /// docs) when `bare_json` is true.
    #[must_use]
    pub fn with_bare_json(bare_json: bool) -> Self {
        Self {
            bare_json,
            ..Self::new()
        }
    }

    /// Parse `input`, appending every event completed by it to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<SseEvent>) {
        let mut input = input;
        if let BomState::Checking(matched) = self.bom {
            input = self.skip_bom(matched, input);
        }
        if input.is_empty() {
            // Nothing to parse, and a pending `\r` must wait for a byte to be resolved.
            return;
        }
        if self.skip_lf {
            if let Some(rest) = input.strip_prefix(b"\n") {
                input = rest;
            }
            self.skip_lf = false;
        }
        while let Some(pos) = memchr2(b'\n', b'\r', input) {
            let (content, rest) = input.split_at(pos);
            // `rest` starts with the line-end byte found by memchr2.
            let (is_cr, mut rest) = match rest.split_first() {
                Some((byte, rest)) => (*byte == b'\r', rest),
                None => (false, rest),
            };
            if self.line.is_empty() {
                self.process_line(content, out);
            } else {
                self.line.extend_from_slice(content);
                let line = std::mem::take(&mut self.line);
                self.process_line(&line, out);
                // Give the allocation back for the next partial line.
                self.line = line;
                self.line.clear();
            }
            if is_cr {
                match rest.strip_prefix(b"\n") {
                    Some(after_lf) => rest = after_lf,
                    None => self.skip_lf = rest.is_empty(),
                }
            }
            input = rest;
        }
        self.line.extend_from_slice(input);
    }

    /// Bytes held for the event in progress (its data so far and the unterminated last line), so
    /// that callers can bound the memory an upstream that never ends a line can make them use.
    #[must_use]
    pub fn pending_len(&self) -> usize {
        self.line.len() + self.data.len() + self.bare.as_ref().map_or(0, |bare| bare.text.len())
    }

    /// Signal the end of the stream: dispatch the pending event, if it has data, even when the last
    /// line or the final blank line is missing. The parser is then back at the start of a stream.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        if let BomState::Checking(matched) = self.bom {
            // A stream that is a strict prefix of the BOM: those bytes were content after all.
            self.line
                .extend_from_slice(BOM.get(..matched).unwrap_or_default());
        }
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out);
        }
        self.dispatch(out);
        // A bare value cut off by the end of the stream is dispatched as it is: the reader decides.
        if let Some(bare) = self.bare.take() {
            out.push(bare_event(bare));
        }
        *self = Self::with_bare_json(self.bare_json);
    }

    /// Match the start of the stream against the BOM; return the input left to parse.
    fn skip_bom<'a>(&mut self, mut matched: usize, mut input: &'a [u8]) -> &'a [u8] {
        while let Some(&expected) = BOM.get(matched) {
            let Some((&byte, rest)) = input.split_first() else {
                // Out of input in the middle of a possible BOM: decide on the next chunk.
                self.bom = BomState::Checking(matched);
                return input;
            };
            if byte != expected {
                // Not a BOM: the bytes held back so far are the start of the first line.
                self.line
                    .extend_from_slice(BOM.get(..matched).unwrap_or_default());
                break;
            }
            matched += 1;
            input = rest;
        }
        self.bom = BomState::Done;
        input
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if self.bare_json && self.bare_line(line, out) {
            return;
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        let (name, value) = match memchr(b':', line) {
            Some(0) => return, // comment
            Some(colon) => {
                let (name, value) = line.split_at(colon);
                let value = value.get(1..).unwrap_or_default();
                (name, value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.event = non_empty_string(value),
            b"id" if memchr(0, value).is_none() => self.last_id = non_empty_string(value),
            // An `id` holding NUL is ignored; `retry` only concerns reconnecting browsers; other
            // names are ignored by the spec.
            _ => {}
        }
    }

    /// Take `line` into a bare JSON value (started by it or in progress); false when it is an SSE
    /// line. Blank lines inside a value are skipped, as google-genai does.
    fn bare_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> bool {
        if self.bare.is_none() {
            if !opens_bare_json(line) {
                return false;
            }
            // The value is an event of its own: an event in progress ends before it.
            self.dispatch(out);
        }
        if line.is_empty() {
            return true;
        }
        let bare = self.bare.get_or_insert_with(BareJson::default);
        if bare.add_line(line) {
            if let Some(bare) = self.bare.take() {
                out.push(bare_event(bare));
            }
        }
        true
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if !self.has_data {
            return;
        }
        self.has_data = false;
        out.push(SseEvent {
            event,
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone(),
            bare: false,
        });
    }
}

fn bare_event(bare: BareJson) -> SseEvent {
    SseEvent {
        event: None,
        data: bare.text,
        id: None,
        bare: true,
    }
}

fn non_empty_string(value: &[u8]) -> Option<String> {
    if value.is_empty() {
        None
    } else {
        Some(String::from_utf8_lossy(value).into_owned())
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out);
        }
        parser.finish(&mut out);
        out
    }

    /// Parse whole, then cut at every offset (two pieces) and byte by byte: all must agree.
    fn parse(input: &[u8]) -> Vec<SseEvent> {
        let whole = parse_chunks(&[input]);
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(parse_chunks(&[a, b]), whole, "split at {cut}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(parse_chunks(&bytes), whole, "byte by byte");
        whole
    }

    fn ev(data: &str) -> SseEvent {
        SseEvent {
            data: data.as_bytes().to_vec(),
            ..SseEvent::default()
        }
    }

    fn ev_named(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: Some(event.to_owned()),
            ..ev(data)
        }
    }

    #[test]
    fn lf_line_ends() {
        assert_eq!(parse(b"data: a\n\ndata: b\n\n"), vec![ev("a"), ev("b")]);
    }

    #[test]
    fn crlf_line_ends() {
        assert_eq!(
            parse(b"data: a\r\n\r\ndata: b\r\n\r\n"),
            vec![ev("a"), ev("b")]
        );
    }

    #[test]
    fn cr_line_ends() {
        assert_eq!(parse(b"data: a\r\rdata: b\r\r"), vec![ev("a"), ev("b")]);
    }

    #[test]
    fn mixed_line_ends() {
        assert_eq!(
            parse(b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\r\n"),
            vec![ev("a\nb\nc"), ev("d")]
        );
    }

    #[test]
    fn cr_at_chunk_end_then_lf_is_one_line_end() {
        let events = parse_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
        assert_eq!(events, vec![ev("a\nb")]);
    }

    #[test]
    fn cr_at_chunk_end_then_empty_chunk_then_lf_is_one_line_end() {
        let events = parse_chunks(&[b"data: a\r", b"", b"\n", b"data: b\n\n"]);
        assert_eq!(events, vec![ev("a\nb")]);
    }

    #[test]
    fn comments_are_ignored() {
        assert_eq!(
            parse(b": keep-alive\n\n:\ndata: a\n: inside\ndata: b\n\n"),
            vec![ev("a\nb")]
        );
    }

    #[test]
    fn multi_line_data_is_joined_with_lf() {
        assert_eq!(
            parse(b"data: {\ndata:  \"a\": 1\ndata: }\n\n"),
            vec![ev("{\n \"a\": 1\n}")]
        );
    }

    #[test]
    fn only_one_leading_space_is_stripped() {
        assert_eq!(
            parse(b"data:  two\n\ndata:none\n\n"),
            vec![ev(" two"), ev("none")]
        );
    }

    #[test]
    fn field_without_colon_has_empty_value() {
        // `data` alone is a data line with an empty value.
        assert_eq!(parse(b"data\n\n"), vec![ev("")]);
        assert_eq!(parse(b"data\ndata\n\n"), vec![ev("\n")]);
    }

    #[test]
    fn empty_data_value_dispatches_empty_event() {
        assert_eq!(parse(b"data:\n\n"), vec![ev("")]);
        assert_eq!(parse(b"data: \n\n"), vec![ev("")]);
    }

    #[test]
    fn blank_line_without_data_does_not_dispatch_and_resets_event_type() {
        assert_eq!(
            parse(b"\n\nevent: x\n\ndata: a\n\n"),
            vec![ev("a")],
            "the event type of a data-less event must not leak into the next one"
        );
    }

    #[test]
    fn event_field_sets_type_for_one_event() {
        assert_eq!(
            parse(b"event: error\ndata: a\n\ndata: b\n\nevent:\ndata: c\n\n"),
            vec![ev_named("error", "a"), ev("b"), ev("c")]
        );
    }

    #[test]
    fn id_field_persists_and_ignores_nul() {
        let events = parse(b"id: 1\ndata: a\n\ndata: b\n\nid: 2\0x\ndata: c\n\nid\ndata: d\n\n");
        let ids: Vec<Option<&str>> = events.iter().map(|e| e.id.as_deref()).collect();
        assert_eq!(ids, vec![Some("1"), Some("1"), Some("1"), None]);
    }

    #[test]
    fn retry_and_unknown_fields_are_ignored() {
        assert_eq!(parse(b"retry: 1000\nfoo: bar\ndata: a\n\n"), vec![ev("a")]);
    }

    #[test]
    fn field_names_are_case_sensitive() {
        assert_eq!(parse(b"Data: x\ndata: a\n\n"), vec![ev("a")]);
    }

    #[test]
    fn leading_bom_is_stripped() {
        assert_eq!(parse(b"\xEF\xBB\xBFdata: a\n\n"), vec![ev("a")]);
    }

    #[test]
    fn leading_bom_split_across_chunks_is_stripped() {
        let events = parse_chunks(&[b"\xEF", b"", b"\xBB", b"\xBF", b"data: a\n\n"]);
        assert_eq!(events, vec![ev("a")]);
    }

    #[test]
    fn only_the_first_bom_is_stripped() {
        // The second BOM makes the field name "\u{FEFF}data", an unknown field.
        assert_eq!(
            parse(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n"),
            vec![ev("b")]
        );
        assert_eq!(parse(b"data: a\n\xEF\xBB\xBF\n"), vec![ev("a")]);
    }

    #[test]
    fn partial_bom_prefix_is_content() {
        // `\xEF` then not `\xBB`: the held-back byte is part of the first line.
        let events = parse(b"\xEFdata: a\n\ndata: b\n\n");
        assert_eq!(events, vec![ev("b")]);
        let events = parse(b"\xEF\xBB:x\n\ndata: b\n\n");
        assert_eq!(events, vec![ev("b")]);
    }

    #[test]
    fn finish_dispatches_pending_event_without_blank_line() {
        assert_eq!(parse(b"data: a\n"), vec![ev("a")]);
        assert_eq!(parse(b"data: a\r"), vec![ev("a")]);
    }

    #[test]
    fn finish_dispatches_partial_last_line() {
        assert_eq!(parse(b"data: a\n\ndata: b"), vec![ev("a"), ev("b")]);
        assert_eq!(parse(b"data: a\ndata: b"), vec![ev("a\nb")]);
    }

    #[test]
    fn finish_without_data_dispatches_nothing() {
        assert_eq!(parse(b""), vec![]);
        assert_eq!(parse(b"event: x\n"), vec![]);
        assert_eq!(parse(b": comment"), vec![]);
        assert_eq!(parse(b"\xEF\xBB"), vec![]);
    }

    #[test]
    fn finish_resets_the_parser() {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        parser.feed(b"id: 7\ndata: a", &mut out);
        parser.finish(&mut out);
        parser.feed(b"\xEF\xBB\xBFdata: b\n\n", &mut out);
        assert_eq!(
            out,
            vec![
                SseEvent {
                    id: Some("7".to_owned()),
                    ..ev("a")
                },
                ev("b")
            ]
        );
    }

    #[test]
    fn events_are_emitted_as_soon_as_complete() {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        parser.feed(b"data: a\n", &mut out);
        assert!(out.is_empty());
        parser.feed(b"\n", &mut out);
        assert_eq!(out, vec![ev("a")]);
    }

    #[test]
    fn pending_len_counts_the_event_in_progress() {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        parser.feed(b"data: abc\ndata: de", &mut out);
        assert_eq!(parser.pending_len(), 3 + 8);
        parser.feed(b"\n\n", &mut out);
        assert_eq!(parser.pending_len(), 0);
    }

    fn parse_bare_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::with_bare_json(true);
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out);
        }
        parser.finish(&mut out);
        out
    }

    /// [`parse`] with bare JSON values read.
    fn parse_bare(input: &[u8]) -> Vec<SseEvent> {
        let whole = parse_bare_chunks(&[input]);
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(parse_bare_chunks(&[a, b]), whole, "split at {cut}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(parse_bare_chunks(&bytes), whole, "byte by byte");
        whole
    }

    fn bare(data: &str) -> SseEvent {
        SseEvent {
            bare: true,
            ..ev(data)
        }
    }

    /// What Google sends when a stream fails after its 200 (python-genai issue 1162).
    const GOOGLE_ERROR: &str = "{\r\n  \"error\": {\r\n    \"code\": 429,\r\n    \"message\": \"Resource exhausted {\\\"quota\\\"} [x]\",\r\n    \"status\": \"RESOURCE_EXHAUSTED\"\r\n  }\r\n}\r\n";

    #[test]
    fn a_bare_json_object_after_events_is_one_event() {
        let input = format!("data: {{\"a\":1}}\r\n\r\n{GOOGLE_ERROR}");
        let events = parse_bare(input.as_bytes());
        assert_eq!(events.len(), 2);
        assert_eq!(events[0], ev("{\"a\":1}"));
        assert!(events[1].bare);
        let value: serde_json::Value = serde_json::from_slice(&events[1].data).unwrap();
        assert_eq!(value["error"]["code"], 429);
        assert_eq!(
            value["error"]["message"],
            "Resource exhausted {\"quota\"} [x]"
        );
    }

    #[test]
    fn bare_json_lines_are_dropped_unless_asked_for() {
        let input = format!("data: a\n\n{GOOGLE_ERROR}");
        assert_eq!(parse(input.as_bytes()), vec![ev("a")]);
    }

    #[test]
    fn a_bare_value_ends_the_event_in_progress_and_skips_blank_lines() {
        assert_eq!(
            parse_bare(b"data: a\n[{\n\n\"b\": [1,\n2]}\n]\ndata: c\n\n"),
            vec![ev("a"), bare("[{\n\"b\": [1,\n2]}\n]"), ev("c")]
        );
        assert_eq!(parse_bare(b"  {}\n"), vec![bare("  {}")]);
    }

    #[test]
    fn a_bare_value_cut_off_by_the_end_is_dispatched_as_it_is() {
        assert_eq!(
            parse_bare(b"{\n  \"error\": {\"code\": 4"),
            vec![bare("{\n  \"error\": {\"code\": 4")]
        );
    }

    #[test]
    fn pending_len_counts_a_bare_value_in_progress() {
        let mut parser = SseParser::with_bare_json(true);
        let mut out = Vec::new();
        parser.feed(b"{\n\"a\": 1\n", &mut out);
        assert!(out.is_empty());
        assert_eq!(parser.pending_len(), 8);
        parser.feed(b"}\n", &mut out);
        assert_eq!(out, vec![bare("{\n\"a\": 1\n}")]);
        assert_eq!(parser.pending_len(), 0);
    }

    #[test]
    fn non_utf8_data_is_kept_as_bytes() {
        let events = parse(b"data: \xFF\xFE\n\n");
        assert_eq!(events[0].data, b"\xFF\xFE");
    }
}
