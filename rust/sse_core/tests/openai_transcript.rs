//! The OpenAI golden transcript (the bench's `stream.sse`: 33 content chunks, a `stop` chunk, a
//! usage chunk, `[DONE]`) through the translator: exact output, and the same output whatever the split.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use _core::error_kind::{ErrorKind, TRUNCATED_MESSAGE};
use _core::framing::SseParser;
use _core::providers::openai::OpenAIStream;
use common::split_at_cuts;
use proptest::prelude::*;

const TRANSCRIPT: &[u8] = include_bytes!("data/openai_stream.sse");

/// (client_model, include_usage) pairs covering the fast path and every edit.
const CONFIGS: &[(Option<&str>, bool)] = &[
    (None, true),
    (None, false),
    (Some("x"), true),
    (Some("x"), false),
];

fn translate(pieces: &[&[u8]], client_model: Option<&str>, include_usage: bool) -> Vec<u8> {
    let mut t = OpenAIStream::new(client_model.map(str::to_owned), include_usage);
    let mut out = Vec::new();
    for piece in pieces {
        out.extend(t.feed(piece).unwrap());
    }
    out.extend(t.finish().unwrap());
    out
}

fn payloads(sse: &[u8]) -> Vec<Vec<u8>> {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    parser.feed(sse, &mut events);
    parser.finish(&mut events);
    events.into_iter().map(|e| e.data).collect()
}

#[test]
fn transcript_passes_through_verbatim_without_edits() {
    assert_eq!(translate(&[TRANSCRIPT], None, true), TRANSCRIPT);
}

#[test]
fn transcript_with_model_rewrite_and_no_usage() {
    let input = payloads(TRANSCRIPT);
    let output = payloads(&translate(&[TRANSCRIPT], Some("x"), false));
    // The usage chunk is gone, [DONE] is kept, nothing else is dropped.
    assert_eq!(input.len(), 35);
    assert_eq!(output.len(), 34);
    assert_eq!(output.last().unwrap(), b"[DONE]");
    for (before, after) in input.iter().zip(&output).take(33) {
        let mut before: serde_json::Value = serde_json::from_slice(before).unwrap();
        let after: serde_json::Value = serde_json::from_slice(after).unwrap();
        before["model"] = "x".into();
        assert_eq!(before, after);
    }
    // Byte-exact for one chunk: only the model's value changed, every other byte as it came.
    assert_eq!(
        std::str::from_utf8(&output[0]).unwrap(),
        r#"{"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1700000000, "model": "x", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Once "}, "finish_reason": null}]}"#
    );
}

#[test]
fn transcript_facts() {
    for &(client_model, include_usage) in CONFIGS {
        let mut t = OpenAIStream::new(client_model.map(str::to_owned), include_usage);
        t.feed(TRANSCRIPT).unwrap();
        t.finish().unwrap();
        assert_eq!(t.usage().map(|u| u.as_tuple()), Some((12, 40, 52)));
        assert_eq!(t.finish_reason(), Some("stop"));
        assert_eq!(t.error(), None);
        assert!(t.done());
    }
}

#[test]
fn transcript_without_done_gets_done() {
    let cut = TRANSCRIPT.len() - b"data: [DONE]\n\n".len();
    assert_eq!(translate(&[&TRANSCRIPT[..cut]], None, true), TRANSCRIPT);
}

#[test]
fn transcript_cut_mid_answer_gets_truncation_error() {
    // Cut between events, and in the middle of a payload: the half payload is not an upstream
    // error, it is the truncation.
    for cut in [TRANSCRIPT.len() / 2, TRANSCRIPT.len() / 2 + 40] {
        let out = translate(&[&TRANSCRIPT[..cut]], None, true);
        let mut frame = Vec::new();
        ErrorKind::StreamTruncated.write_event(&mut frame, TRUNCATED_MESSAGE);
        assert!(out.ends_with(&frame), "cut at {cut}");
    }
}

#[test]
fn transcript_cut_inside_done_gets_done() {
    let cut = TRANSCRIPT.len() - b"NE]\n\n".len();
    assert_eq!(translate(&[&TRANSCRIPT[..cut]], None, true), TRANSCRIPT);
}

#[test]
fn transcript_split_at_every_offset_gives_identical_output() {
    // The fast path and every edit at once (all four configs run in the proptest below).
    for (client_model, include_usage) in [(None, true), (Some("x"), false)] {
        let whole = translate(&[TRANSCRIPT], client_model, include_usage);
        for cut in 0..=TRANSCRIPT.len() {
            let (a, b) = TRANSCRIPT.split_at(cut);
            assert_eq!(
                translate(&[a, b], client_model, include_usage),
                whole,
                "cut at {cut} with {client_model:?}/{include_usage}"
            );
        }
    }
}

#[test]
fn transcript_with_crlf_and_cr_line_ends_gives_identical_output() {
    let whole = translate(&[TRANSCRIPT], Some("x"), false);
    for ending in [&b"\r\n"[..], b"\r"] {
        let converted: Vec<u8> = TRANSCRIPT
            .iter()
            .flat_map(|&b| if b == b'\n' { ending.to_vec() } else { vec![b] })
            .collect();
        assert_eq!(translate(&[&converted], Some("x"), false), whole);
        let bytes: Vec<&[u8]> = converted.chunks(1).collect();
        assert_eq!(translate(&bytes, Some("x"), false), whole);
    }
}

proptest! {
    #[test]
    fn transcript_split_anywhere_gives_identical_output(
        cuts in prop::collection::vec(0..=TRANSCRIPT.len(), 0..20),
        config in 0..CONFIGS.len(),
    ) {
        let (client_model, include_usage) = CONFIGS[config];
        let pieces = split_at_cuts(TRANSCRIPT, &cuts);
        prop_assert_eq!(
            translate(&pieces, client_model, include_usage),
            translate(&[TRANSCRIPT], client_model, include_usage)
        );
    }
}

/// Payloads an OpenAI-compatible upstream may send, in any order.
fn payload() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zé \"\\\\]{0,8}".prop_map(|text| {
            let content = serde_json::to_string(&text).unwrap();
            format!(r#"{{"id":"c","model":"m","choices":[{{"index":0,"delta":{{"content":{content}}},"finish_reason":null}}],"usage":null}}"#)
        }),
        1 => Just(r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#.to_owned()),
        1 => Just(r#"{"id":"c","model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#.to_owned()),
        1 => Just("{\"id\":\"c\",\n\"model\":\"m\",\n\"choices\":[]}".to_owned()),
        1 => Just(r#"{"error":{"message":"boom","type":"server_error"}}"#.to_owned()),
        1 => Just("[DONE]".to_owned()),
    ]
}

fn encode(payloads: &[String], endings: &[u8], comments: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, payload) in payloads.iter().enumerate() {
        let ending: &[u8] = match endings[i % endings.len()] {
            0 => b"\n",
            1 => b"\r\n",
            _ => b"\r",
        };
        if comments {
            out.extend_from_slice(b": keep-alive");
            out.extend_from_slice(ending);
        }
        for line in payload.split('\n') {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(ending);
        }
        out.extend_from_slice(ending); // the blank line ending the event
    }
    out
}

proptest! {
    #[test]
    fn generated_streams_translate_identically_whatever_the_split(
        payloads in prop::collection::vec(payload(), 0..12),
        endings in prop::collection::vec(0u8..3, 1..4),
        comments in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        config in 0..CONFIGS.len(),
    ) {
        let (client_model, include_usage) = CONFIGS[config];
        let input = encode(&payloads, &endings, comments);
        let pieces = split_at_cuts(&input, &cuts);
        let whole = translate(&[&input], client_model, include_usage);
        prop_assert_eq!(translate(&pieces, client_model, include_usage), whole.clone());
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(translate(&bytes, client_model, include_usage), whole);
    }
}
