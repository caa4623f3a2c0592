//! A recorded Anthropic stream (`data/anthropic_tool_use.sse`, from anthropic-sdk-python's test
//! fixtures, MIT: a text block, a ping, a tool_use block in `input_json_delta` pieces, message_delta
//! with stop_reason tool_use) through the translator: the expected OpenAI chunks, and the same
//! chunks whatever the split points of the input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use _core::providers::anthropic::AnthropicStream;
use _core::providers::encoder::StreamWriter;
use common::split_at_cuts;
use proptest::prelude::*;
use serde_json::Value;

const TRANSCRIPT: &[u8] = include_bytes!("data/anthropic_tool_use.sse");

fn translate(pieces: &[&[u8]], include_usage: bool) -> Vec<Value> {
    let mut t = AnthropicStream::<StreamWriter>::new(Some("claude".to_owned()), include_usage);
    let mut out = Vec::new();
    for piece in pieces {
        t.feed_into(piece, &mut out).unwrap();
    }
    t.finish_into(&mut out).unwrap();
    frames(&out)
}

/// The frames as JSON, without `created` (a clock reading, the one field allowed to differ).
fn frames(out: &[u8]) -> Vec<Value> {
    std::str::from_utf8(out)
        .unwrap()
        .split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            let data = f.strip_prefix("data: ").expect("one data line per frame");
            let mut value: Value = serde_json::from_str(data).unwrap_or(Value::String(data.into()));
            if let Some(object) = value.as_object_mut() {
                object.remove("created");
            }
            value
        })
        .collect()
}

#[test]
fn recorded_stream_becomes_openai_chunks() {
    let frames = translate(&[TRANSCRIPT], true);
    let deltas: Vec<&Value> = frames
        .iter()
        .filter_map(|f| f.pointer("/choices/0/delta"))
        .collect();
    assert_eq!(deltas[0]["role"], "assistant");
    let text: String = deltas
        .iter()
        .filter_map(|d| d["content"].as_str())
        .collect();
    assert_eq!(text, "I'll check the current weather in Paris for you.");
    let calls: Vec<&Value> = deltas
        .iter()
        .filter_map(|d| d.pointer("/tool_calls/0"))
        .collect();
    assert_eq!(calls[0]["id"], "toolu_01NRLabsLyVHZPKxbKvkfSMn");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert!(calls.iter().all(|c| c["index"] == 0));
    let arguments: String = calls
        .iter()
        .filter_map(|c| c.pointer("/function/arguments").and_then(Value::as_str))
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        serde_json::json!({"location": "Paris"})
    );
    let n = frames.len();
    assert_eq!(frames[n - 3]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(frames[n - 2]["usage"]["prompt_tokens"], 377);
    assert_eq!(frames[n - 2]["usage"]["completion_tokens"], 65);
    assert_eq!(frames[n - 1], "[DONE]");
    assert!(frames[..n - 1]
        .iter()
        .all(|f| f["id"] == "msg_019Q1hrJbZG26Fb9BQhrkHEr" && f["model"] == "claude"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn same_chunks_whatever_the_split(
        cuts in prop::collection::vec(0..TRANSCRIPT.len(), 0..12),
        include_usage in any::<bool>(),
    ) {
        let pieces = split_at_cuts(TRANSCRIPT, &cuts);
        prop_assert_eq!(translate(&pieces, include_usage), translate(&[TRANSCRIPT], include_usage));
    }
}

#[test]
fn every_single_cut_gives_the_same_chunks() {
    let whole = translate(&[TRANSCRIPT], true);
    for cut in 0..=TRANSCRIPT.len() {
        let (a, b) = TRANSCRIPT.split_at(cut);
        assert_eq!(translate(&[a, b], true), whole, "cut at {cut}");
    }
}
