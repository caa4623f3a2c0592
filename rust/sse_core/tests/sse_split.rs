//! Property tests of the SSE parser: generated event streams come out as modelled, whatever the
//! split points of the input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use _core::framing::{SseEvent, SseParser};
use common::split_at_cuts;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Line {
    Data(String),
    Event(String),
    Id(String),
    Comment(String),
    Retry(u32),
    Unknown(String),
}

#[derive(Debug, Clone)]
struct Stream {
    bom: bool,
    /// Events, each a list of lines followed by a blank line.
    events: Vec<Vec<Line>>,
    /// Line ending index (0 `\n`, 1 `\r\n`, 2 `\r`) for each line, cycled.
    endings: Vec<u8>,
    /// Whether `data:` lines are written without the optional space when possible.
    no_space: bool,
    /// 0: complete; 1: no final blank line; 2: no final blank line and no last line end.
    tail: u8,
}

fn value() -> impl Strategy<Value = String> {
    // No CR/LF (they would end the line); colons, spaces, NUL and non-ASCII are fair game.
    "[a-zA-Z0-9 :{}\\[\\]\",é☃\u{0}]{0,12}"
}

fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        4 => value().prop_map(Line::Data),
        1 => value().prop_map(Line::Event),
        1 => value().prop_map(Line::Id),
        1 => value().prop_map(Line::Comment),
        1 => any::<u32>().prop_map(Line::Retry),
        // Prefixed so as never to be a known field name.
        1 => "x[a-z]{0,5}".prop_map(Line::Unknown),
    ]
}

fn stream() -> impl Strategy<Value = Stream> {
    (
        any::<bool>(),
        prop::collection::vec(prop::collection::vec(line(), 0..5), 0..8),
        prop::collection::vec(0u8..3, 1..8),
        any::<bool>(),
        0u8..3,
    )
        .prop_map(|(bom, events, endings, no_space, tail)| Stream {
            bom,
            events,
            endings,
            no_space,
            tail,
        })
}

impl Stream {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.bom {
            out.extend_from_slice(b"\xEF\xBB\xBF");
        }
        let mut lines: Vec<String> = Vec::new();
        for event in &self.events {
            for line in event {
                lines.push(match line {
                    Line::Data(v) if self.no_space && !v.starts_with(' ') => format!("data:{v}"),
                    Line::Data(v) => format!("data: {v}"),
                    Line::Event(v) => format!("event: {v}"),
                    Line::Id(v) => format!("id: {v}"),
                    Line::Comment(v) => format!(":{v}"),
                    Line::Retry(v) => format!("retry: {v}"),
                    Line::Unknown(name) => format!("{name}: x"),
                });
            }
            lines.push(String::new());
        }
        if self.tail >= 1 && lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        let mut prev_cr = false;
        let count = lines.len();
        for (i, line) in lines.iter().enumerate() {
            out.extend_from_slice(line.as_bytes());
            if i + 1 == count && self.tail == 2 {
                break;
            }
            let mut ending = match self.endings[i % self.endings.len()] {
                0 => "\n",
                1 => "\r\n",
                _ => "\r",
            };
            if prev_cr && line.is_empty() && ending == "\n" {
                // `\r` then `\n` would be one line end, not an empty line.
                ending = "\r\n";
            }
            prev_cr = ending == "\r";
            out.extend_from_slice(ending.as_bytes());
        }
        out
    }

    /// The events the WHATWG rules (plus dispatch at EOF) give for this stream.
    fn expected(&self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        let mut last_id: Option<String> = None;
        for event in &self.events {
            let mut data: Option<String> = None;
            let mut name = None;
            for line in event {
                match line {
                    Line::Data(v) => {
                        data = Some(match data {
                            Some(d) => format!("{d}\n{v}"),
                            None => v.clone(),
                        });
                    }
                    Line::Event(v) => name = Some(v.clone()).filter(|v| !v.is_empty()),
                    Line::Id(v) if !v.contains('\0') => {
                        last_id = Some(v.clone()).filter(|v| !v.is_empty());
                    }
                    _ => {}
                }
            }
            if let Some(data) = data {
                out.push(SseEvent {
                    event: name,
                    data: data.into_bytes(),
                    id: last_id.clone(),
                    bare: false,
                });
            }
        }
        out
    }
}

fn parse_pieces(input: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    let mut out = Vec::new();
    for piece in split_at_cuts(input, cuts) {
        parser.feed(piece, &mut out);
    }
    parser.finish(&mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn generated_streams_parse_as_modelled_whatever_the_split(
        stream in stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let input = stream.encode();
        let expected = stream.expected();
        prop_assert_eq!(&parse_pieces(&input, &[]), &expected);
        prop_assert_eq!(&parse_pieces(&input, &cuts), &expected);
    }

    #[test]
    fn generated_streams_parse_the_same_byte_by_byte(stream in stream()) {
        let input = stream.encode();
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for byte in input.chunks(1) {
            parser.feed(byte, &mut out);
        }
        parser.finish(&mut out);
        prop_assert_eq!(out, stream.expected());
    }
}

/// A Google stream: `data:` events and, between them, bare JSON values pretty-printed over several
/// lines (how Gemini ends a failing stream).
#[derive(Debug, Clone)]
enum GoogleItem {
    Data(String),
    Bare(serde_json::Value),
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        "[a-z{}\\[\\]\"\\\\ :,é]{0,8}".prop_map(serde_json::Value::from),
        any::<i32>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z\"{]{1,4}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    // A bare value is an object or an array.
    prop_oneof![
        prop::collection::btree_map("[a-z]{1,4}", value.clone(), 0..4)
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        prop::collection::vec(value, 0..3).prop_map(serde_json::Value::from),
    ]
}

fn google_items() -> impl Strategy<Value = (Vec<GoogleItem>, bool)> {
    let item = prop_oneof![
        "[a-z{}\" ]{0,10}".prop_map(GoogleItem::Data),
        json_value().prop_map(GoogleItem::Bare),
    ];
    (prop::collection::vec(item, 0..6), any::<bool>())
}

fn encode_google(items: &[GoogleItem], crlf: bool) -> Vec<u8> {
    let end = if crlf { "\r\n" } else { "\n" };
    let mut out = String::new();
    for item in items {
        match item {
            GoogleItem::Data(payload) => out.push_str(&format!("data: {payload}{end}{end}")),
            GoogleItem::Bare(value) => {
                let pretty = serde_json::to_string_pretty(value).unwrap();
                out.push_str(&pretty.replace('\n', end));
                out.push_str(end);
            }
        }
    }
    out.into_bytes()
}

fn parse_google(input: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
    let mut parser = SseParser::with_bare_json(true);
    let mut out = Vec::new();
    for piece in split_at_cuts(input, cuts) {
        parser.feed(piece, &mut out);
    }
    parser.finish(&mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn bare_json_values_come_out_whole_whatever_the_split(
        (items, crlf) in google_items(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let input = encode_google(&items, crlf);
        let events = parse_google(&input, &[]);
        prop_assert_eq!(&parse_google(&input, &cuts), &events);
        prop_assert_eq!(events.len(), items.len());
        for (event, item) in events.iter().zip(&items) {
            match item {
                GoogleItem::Data(payload) => {
                    prop_assert!(!event.bare);
                    prop_assert_eq!(&event.data, payload.as_bytes());
                }
                GoogleItem::Bare(value) => {
                    prop_assert!(event.bare);
                    let parsed: serde_json::Value = serde_json::from_slice(&event.data).unwrap();
                    prop_assert_eq!(&parsed, value);
                }
            }
        }
    }
}
