//! Anthropic Messages clients (issue 19): every provider's recorded or written transcript,
//! translated with `client_api = anthropic`, gives a well-formed Messages event stream (the grammar
//! the anthropic SDKs accumulate: `message_start`, numbered blocks opened and closed in order,
//! `message_delta`, `message_stop`; or an `error` last), the same bytes whatever the split points
//! of the upstream body, and the content of the upstream's answer. The Anthropic pass-through is
//! byte for byte but the model, and Bedrock's InvokeModelWithResponseStream gives the same bytes
//! as the SSE it carries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use _core::framing::eventstream::encode_event;
use _core::providers::bedrock_anthropic::encode_chunk;
use _core::providers::{new_stream_translator_for, ClientApi};
use common::split_at_cuts;
use proptest::prelude::*;
use serde_json::Value;

const ANTHROPIC: &[u8] = include_bytes!("data/anthropic_tool_use.sse");
const OPENAI: &[u8] = include_bytes!("data/openai_stream.sse");
const GEMINI: &[u8] = include_bytes!("data/gemini_text_thought_signature.sse");
const BEDROCK_ERROR: &[u8] = include_bytes!("data/bedrock_model_stream_error.bin");

const OPENAI_TOOLS: &str = concat!(
    "data: {\"id\":\"chatcmpl-t\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"reasoning_content\":\"Plan \\u00e9\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-t\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-t\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\": \\\"Z\\u00fcrich\\\"}\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-t\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
    "data: {\"id\":\"chatcmpl-t\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":12,\"total_tokens\":42,\"prompt_tokens_details\":{\"cached_tokens\":10}}}\n\n",
    "data: [DONE]\n\n",
);

/// A Converse stream: reasoning with a signature, text, a tool call, stop, metadata.
fn bedrock() -> Vec<u8> {
    [
        encode_event("messageStart", br#"{"role":"assistant"}"#),
        encode_event("contentBlockDelta", br#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"Let me "}}}"#),
        encode_event("contentBlockDelta", br#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"think."}}}"#),
        encode_event("contentBlockDelta", br#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"signature":"EqQB"}}}"#),
        encode_event("contentBlockStop", br#"{"contentBlockIndex":0}"#),
        encode_event("contentBlockDelta", br#"{"contentBlockIndex":1,"delta":{"text":"Hi \u00e9"}}"#),
        encode_event("contentBlockStop", br#"{"contentBlockIndex":1}"#),
        encode_event("contentBlockStart", br#"{"contentBlockIndex":2,"start":{"toolUse":{"toolUseId":"tooluse_1","name":"get_weather"}}}"#),
        encode_event("contentBlockDelta", br#"{"contentBlockIndex":2,"delta":{"toolUse":{"input":"{\"city\":"}}}"#),
        encode_event("contentBlockDelta", br#"{"contentBlockIndex":2,"delta":{"toolUse":{"input":" \"Paris\"}"}}}"#),
        encode_event("contentBlockStop", br#"{"contentBlockIndex":2}"#),
        encode_event("messageStop", br#"{"stopReason":"tool_use"}"#),
        encode_event("metadata", br#"{"usage":{"inputTokens":10,"outputTokens":7,"totalTokens":23,"cacheReadInputTokens":4,"cacheWriteInputTokens":2},"metrics":{"latencyMs":120}}"#),
    ]
    .concat()
}

/// The data of each SSE event of `input`.
fn sse_payloads(input: &[u8]) -> Vec<Vec<u8>> {
    let mut parser = _core::framing::SseParser::new();
    let mut events = Vec::new();
    parser.feed(input, &mut events);
    parser.finish(&mut events);
    events.into_iter().map(|e| e.data).collect()
}

/// The Anthropic recording as Bedrock's InvokeModelWithResponseStream sends it.
fn bedrock_anthropic() -> Vec<u8> {
    sse_payloads(ANTHROPIC)
        .iter()
        .flat_map(|data| encode_chunk(data))
        .collect()
}

fn transcripts() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("openai", OPENAI.to_vec()),
        ("openai", OPENAI_TOOLS.as_bytes().to_vec()),
        ("anthropic", ANTHROPIC.to_vec()),
        ("gemini", GEMINI.to_vec()),
        ("bedrock", bedrock()),
        ("bedrock", BEDROCK_ERROR.to_vec()),
        ("bedrock-anthropic", bedrock_anthropic()),
    ]
}

fn translate(provider: &str, pieces: &[&[u8]]) -> Vec<u8> {
    let mut t =
        new_stream_translator_for(provider, Some("alias".into()), false, ClientApi::Anthropic)
            .unwrap();
    let mut out = Vec::new();
    for piece in pieces {
        out.extend(t.feed(piece).unwrap());
    }
    out.extend(t.finish().unwrap());
    out
}

/// `out` with generated ids (`msg_`, `toolu_` and 24 hex digits) replaced by a fixed one.
fn normalized(out: &[u8]) -> String {
    let text = String::from_utf8(out.to_vec()).unwrap();
    let mut result = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find(['m', 't']) {
        let (before, after) = rest.split_at(at);
        result.push_str(before);
        let prefix = ["msg_", "toolu_"]
            .into_iter()
            .find(|p| after.starts_with(p));
        match prefix {
            Some(p)
                if after.len() >= p.len() + 24
                    && after.as_bytes()[p.len()..p.len() + 24]
                        .iter()
                        .all(u8::is_ascii_hexdigit) =>
            {
                result.push_str(p);
                result.push_str("GENERATED");
                rest = &after[p.len() + 24..];
            }
            _ => {
                result.push_str(&after[..1]);
                rest = &after[1..];
            }
        }
    }
    result.push_str(rest);
    result
}

/// The events of an Anthropic stream, checked against the grammar the SDKs accumulate.
fn checked_events(out: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(out).unwrap();
    let events: Vec<(String, Value)> = text
        .split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|frame| {
            let (name, data) = frame.split_once('\n').unwrap();
            let name = name.strip_prefix("event: ").unwrap().to_owned();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"], name.as_str(), "{frame}");
            (name, data)
        })
        .collect();
    let mut started = false;
    let mut next_block = 0;
    let mut open: Vec<u64> = Vec::new();
    let mut ended = false;
    for (i, (name, data)) in events.iter().enumerate() {
        assert!(!ended, "an event after the end: {name}");
        match name.as_str() {
            "message_start" => {
                assert!(!started);
                started = true;
                assert_eq!(data["message"]["type"], "message");
                assert_eq!(data["message"]["model"], "alias");
            }
            "ping" => {}
            "content_block_start" => {
                assert!(started);
                assert_eq!(data["index"], next_block);
                open.push(next_block);
                next_block += 1;
            }
            "content_block_delta" => {
                assert!(data["index"].as_u64().unwrap() < next_block);
            }
            "content_block_stop" => {
                let index = data["index"].as_u64().unwrap();
                assert!(open.contains(&index), "stop of a block not open");
                open.retain(|i| *i != index);
            }
            "message_delta" => {
                assert!(started && open.is_empty());
                assert!(data["delta"]["stop_reason"].is_string());
                assert!(data["usage"]["output_tokens"].is_u64());
            }
            "message_stop" => {
                assert_eq!(events[i - 1].0, "message_delta");
                ended = true;
            }
            "error" => {
                assert!(data["error"]["type"].is_string());
                assert!(data["error"]["message"].is_string());
                ended = true;
            }
            other => panic!("unexpected event {other}"),
        }
    }
    assert!(ended, "the stream has no end");
    events
}

#[test]
fn every_transcript_gives_a_well_formed_messages_stream() {
    for (provider, input) in transcripts() {
        let events = checked_events(&translate(provider, &[&input]));
        let last = &events.last().unwrap().0;
        if input == BEDROCK_ERROR {
            assert_eq!(last, "error");
        } else {
            assert_eq!(last, "message_stop", "{provider}");
        }
    }
}

#[test]
fn split_at_every_offset_gives_the_same_bytes() {
    for (provider, input) in transcripts() {
        let reference = normalized(&translate(provider, &[&input]));
        for cut in 0..=input.len() {
            let out = translate(provider, &[&input[..cut], &input[cut..]]);
            assert_eq!(normalized(&out), reference, "{provider}: cut at {cut}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_split_gives_the_same_bytes(cuts in prop::collection::vec(any::<usize>(), 0..6)) {
        for (provider, input) in transcripts() {
            let reference = normalized(&translate(provider, &[&input]));
            let out = translate(provider, &split_at_cuts(&input, &cuts));
            prop_assert_eq!(normalized(&out), reference, "{}", provider);
        }
    }
}

#[test]
fn the_anthropic_recording_passes_through_byte_for_byte_but_the_model() {
    let out = translate("anthropic", &[ANTHROPIC]);
    let original = String::from_utf8(ANTHROPIC.to_vec()).unwrap();
    let expected = original.replacen(
        "\"model\":\"claude-sonnet-4-20250514\"",
        "\"model\":\"alias\"",
        1,
    );
    assert_eq!(String::from_utf8(out).unwrap(), expected);
}

#[test]
fn bedrock_invoke_model_stream_gives_the_bytes_of_the_sse_it_carries() {
    let sse = translate("anthropic", &[ANTHROPIC]);
    let bedrock = translate("bedrock-anthropic", &[&bedrock_anthropic()]);
    // The recording names its events as their types, so the two are identical.
    assert_eq!(
        String::from_utf8(bedrock).unwrap(),
        String::from_utf8(sse).unwrap()
    );
}

fn text_of(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter_map(|(_, d)| d.pointer("/delta/text").and_then(Value::as_str))
        .collect()
}

#[test]
fn the_recorded_gemini_answer_keeps_its_text_signature_and_usage() {
    let events = checked_events(&translate("gemini", &[GEMINI]));
    let expected: String = sse_payloads(GEMINI)
        .iter()
        .map(|data| serde_json::from_slice::<Value>(data).unwrap())
        .flat_map(|v| {
            v["candidates"][0]["content"]["parts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|part| part["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text_of(&events), expected);
    let signature = events
        .iter()
        .find_map(|(_, d)| d.pointer("/delta/signature").and_then(Value::as_str))
        .unwrap();
    assert!(!signature.is_empty());
    let (_, delta) = &events[events.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(delta["usage"]["input_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn openai_and_bedrock_answers_keep_text_tools_and_usage() {
    let events = checked_events(&translate("openai", &[OPENAI]));
    let expected: String = sse_payloads(OPENAI)
        .iter()
        .filter_map(|data| serde_json::from_slice::<Value>(data).ok())
        .filter_map(|v| {
            v.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text_of(&events), expected);
    assert_eq!(events[events.len() - 2].1["usage"]["input_tokens"], 12);

    let events = checked_events(&translate("openai", &[OPENAI_TOOLS.as_bytes()]));
    let tool = events
        .iter()
        .find_map(|(_, d)| d.get("content_block").filter(|b| b["type"] == "tool_use"))
        .unwrap();
    assert_eq!(tool["id"], "call_1");
    let arguments: String = events
        .iter()
        .filter_map(|(_, d)| d.pointer("/delta/partial_json").and_then(Value::as_str))
        .collect();
    assert_eq!(arguments, "{\"city\": \"Zürich\"}");
    let usage = &events[events.len() - 2].1["usage"];
    assert_eq!(usage["input_tokens"], 20);
    assert_eq!(usage["cache_read_input_tokens"], 10);

    let events = checked_events(&translate("bedrock", &[&bedrock()]));
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|(_, d)| d.pointer("/content_block/type").and_then(Value::as_str))
        .collect();
    assert_eq!(kinds, ["thinking", "text", "tool_use"]);
    let (_, delta) = &events[events.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["input_tokens"], 10);
    assert_eq!(delta["usage"]["cache_creation_input_tokens"], 2);
}
