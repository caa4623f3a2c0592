//! Gemini streams through the translator: the recorded Gemini 3 capture (`tests/data/`, from `../shared/fixtures`)
//! (when present) and a transcript with thoughts, a signed function call and a split UTF-8 text,
//! give the same client events whatever the split points of the upstream bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use _core::providers::encoder::StreamWriter;
use _core::providers::gemini::GeminiStream;
use proptest::prelude::*;
use serde_json::Value;

const TRANSCRIPT: &str = concat!(
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Think \\u00e9\",\"thought\":true}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":4,\"thoughtsTokenCount\":3},\"responseId\":\"r9\"}\r\n\r\n",
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"ing é\",\"thought\":true,\"thoughtSignature\":\"AAA=\"}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":4,\"thoughtsTokenCount\":7},\"responseId\":\"r9\"}\r\n\r\n",
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Calling \\\"f\\\"\"},{\"functionCall\":{\"id\":\"c1\",\"name\":\"f\",\"args\":{\"x\":\"ü\"}},\"thoughtSignature\":\"QkJC\"}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":6,\"thoughtsTokenCount\":7},\"responseId\":\"r9\"}\r\n\r\n",
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\"}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":8,\"thoughtsTokenCount\":7},\"responseId\":\"r9\"}\r\n\r\n",
);

fn translate(pieces: &[&[u8]]) -> Vec<Value> {
    let mut t = GeminiStream::<StreamWriter>::new(Some("g".into()), true);
    let mut out = Vec::new();
    for piece in pieces {
        t.feed_into(piece, &mut out).unwrap();
    }
    t.finish_into(&mut out).unwrap();
    std::str::from_utf8(&out)
        .unwrap()
        .split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            let data = f.strip_prefix("data: ").unwrap();
            let mut v: Value = serde_json::from_str(data).unwrap_or(Value::String(data.into()));
            // `created` may tick between two runs.
            if let Some(o) = v.as_object_mut() {
                o.remove("created");
            }
            v
        })
        .collect()
}

/// The recorded capture, copied into `tests/data/` (source and licence in its README).
const RECORDED: &[u8] = include_bytes!("data/gemini_text_thought_signature.sse");

#[test]
fn transcript_events() {
    let frames = translate(&[TRANSCRIPT.as_bytes()]);
    let deltas: Vec<&Value> = frames
        .iter()
        .filter_map(|f| f.pointer("/choices/0/delta"))
        .collect();
    assert_eq!(deltas[1]["reasoning_content"], "Think é");
    assert_eq!(deltas[3]["thinking_blocks"][0]["thinking"], "Think éing é");
    assert_eq!(deltas[4]["content"], "Calling \"f\"");
    assert_eq!(deltas[5]["tool_calls"][0]["id"], "c1__thought__QkJC");
    assert_eq!(
        deltas[6]["tool_calls"][0]["function"]["arguments"],
        "{\"x\":\"ü\"}"
    );
    assert_eq!(
        frames[frames.len() - 3]["choices"][0]["finish_reason"],
        "tool_calls"
    );
    assert_eq!(frames[frames.len() - 2]["usage"]["completion_tokens"], 15);
    assert_eq!(frames.last().unwrap(), "[DONE]");
}

#[test]
fn recorded_gemini3_stream() {
    let frames = translate(&[RECORDED]);
    let text: String = frames
        .iter()
        .filter_map(|f| {
            f.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(
        text,
        "There are **3** \"r\"s in strawberry.\n\nst**r**awbe**rr**y"
    );
    let block = frames
        .iter()
        .find_map(|f| f.pointer("/choices/0/delta/thinking_blocks/0"))
        .unwrap();
    assert_eq!(block["thinking"], "");
    assert!(block["signature"].as_str().unwrap().starts_with("EqsFCqgF"));
    let usage = &frames[frames.len() - 2]["usage"];
    assert_eq!(usage["prompt_tokens"], 9);
    assert_eq!(usage["completion_tokens"], 23 + 185);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 185);
    assert_eq!(
        frames[frames.len() - 3]["choices"][0]["finish_reason"],
        "stop"
    );
    assert!(frames
        .iter()
        .all(|f| f.get("id").is_none_or(|id| id == "bH6LaZW8Fp_3nsEPqtaSwQ4")));
}

#[test]
fn every_single_split_gives_the_same_events() {
    let whole = translate(&[TRANSCRIPT.as_bytes()]);
    let bytes = TRANSCRIPT.as_bytes();
    for cut in 0..=bytes.len() {
        assert_eq!(
            translate(&[&bytes[..cut], &bytes[cut..]]),
            whole,
            "cut at {cut}"
        );
    }
    let whole = translate(&[RECORDED]);
    for cut in 0..=RECORDED.len() {
        assert_eq!(
            translate(&[&RECORDED[..cut], &RECORDED[cut..]]),
            whole,
            "cut at {cut}"
        );
    }
}

/// The transcript's first event, then the error Google ends a failing stream with: bare,
/// pretty-printed over CRLF lines.
fn with_bare_error() -> Vec<u8> {
    let mut bytes = TRANSCRIPT
        .split_inclusive("\r\n\r\n")
        .next()
        .unwrap()
        .as_bytes()
        .to_vec();
    bytes.extend_from_slice(
        b"{\r\n  \"error\": {\r\n    \"code\": 429,\r\n    \"message\": \"Quota {exceeded}.\",\r\n    \"status\": \"RESOURCE_EXHAUSTED\"\r\n  }\r\n}\r\n",
    );
    bytes
}

#[test]
fn a_bare_error_ends_the_stream_with_its_status_whatever_the_split() {
    let bytes = with_bare_error();
    let whole = translate(&[&bytes]);
    let error = &whole.last().unwrap()["error"];
    assert_eq!(error["status"], 429);
    assert_eq!(error["code"], "RESOURCE_EXHAUSTED");
    assert_eq!(error["message"], "Quota {exceeded}.");
    for cut in 0..=bytes.len() {
        assert_eq!(
            translate(&[&bytes[..cut], &bytes[cut..]]),
            whole,
            "cut at {cut}"
        );
    }
}

/// Two candidates (`n` = 2), their pieces interleaved, each finishing on its own.
const TWO_CANDIDATES: &str = concat!(
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Un \\u00e9\",\"thought\":true}]},\"index\":0},{\"content\":{\"parts\":[{\"text\":\"Deux\"}]},\"index\":1}]}\r\n\r\n",
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"!\",\"thought\":true,\"thoughtSignature\":\"U0k=\"},{\"text\":\"One\"}]},\"index\":0,\"finishReason\":\"STOP\"},{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"f\",\"args\":{\"a\":1}}}]},\"index\":1}]}\r\n\r\n",
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\"}]},\"index\":1,\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":2,\"candidatesTokenCount\":5}}\r\n\r\n",
);

/// The client's frames with generated tool call ids blanked (they differ between runs).
fn stable(frames: Vec<Value>) -> Vec<Value> {
    frames
        .into_iter()
        .map(|mut f| {
            if let Some(id) = f.pointer_mut("/choices/0/delta/tool_calls/0/id") {
                *id = Value::Null;
            }
            if let Some(id) = f.get_mut("id") {
                *id = Value::Null;
            }
            f
        })
        .collect()
}

#[test]
fn two_candidates_are_two_choices() {
    let frames = translate(&[TWO_CANDIDATES.as_bytes()]);
    let text = |index: u64, field: &str| -> String {
        frames
            .iter()
            .filter(|f| f.pointer("/choices/0/index") == Some(&Value::from(index)))
            .filter_map(|f| f.pointer(&format!("/choices/0/delta/{field}")))
            .filter_map(Value::as_str)
            .collect()
    };
    assert_eq!(text(0, "reasoning_content"), "Un é!");
    assert_eq!(text(0, "content"), "One");
    assert_eq!(text(1, "content"), "Deux");
    let finishes: Vec<(&Value, &Value)> = frames
        .iter()
        .filter_map(|f| f.pointer("/choices/0"))
        .filter(|c| !c["finish_reason"].is_null())
        .map(|c| (&c["index"], &c["finish_reason"]))
        .collect();
    assert_eq!(
        finishes,
        vec![
            (&Value::from(0), &Value::from("stop")),
            (&Value::from(1), &Value::from("tool_calls"))
        ]
    );
}

proptest! {
    #[test]
    fn two_candidates_read_the_same_whatever_the_splits(cuts in prop::collection::vec(0..TWO_CANDIDATES.len(), 0..6)) {
        let bytes = TWO_CANDIDATES.as_bytes();
        let mut cuts = cuts;
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut start = 0;
        for cut in cuts {
            pieces.push(&bytes[start..cut]);
            start = cut;
        }
        pieces.push(&bytes[start..]);
        prop_assert_eq!(stable(translate(&pieces)), stable(translate(&[bytes])));
    }

    #[test]
    fn a_bare_error_reads_the_same_whatever_the_splits(cuts in prop::collection::vec(0..400usize, 0..6)) {
        let bytes = with_bare_error();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut start = 0;
        for cut in cuts {
            pieces.push(&bytes[start..cut]);
            start = cut;
        }
        pieces.push(&bytes[start..]);
        prop_assert_eq!(translate(&pieces), translate(&[&bytes]));
    }

    #[test]
    fn any_splits_give_the_same_events(cuts in prop::collection::vec(0..TRANSCRIPT.len(), 0..6)) {
        let bytes = TRANSCRIPT.as_bytes();
        let mut cuts = cuts;
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut start = 0;
        for cut in cuts {
            pieces.push(&bytes[start..cut]);
            start = cut;
        }
        pieces.push(&bytes[start..]);
        prop_assert_eq!(translate(&pieces), translate(&[bytes]));
    }
}
