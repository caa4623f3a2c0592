//! Arbitrary bytes never panic the parser or the translators (errors are fine).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use _core::framing::SseParser;
use _core::providers::{
    new_stream_translator, new_stream_translator_for, translate_response, translate_response_for,
    ClientApi, PROVIDERS,
};
use common::split_at_cuts;
use proptest::prelude::*;

/// Bytes biased toward SSE and JSON syntax, so that deep paths are reached too.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    let tokens = prop_oneof![
        3 => any::<u8>().prop_map(|b| vec![b]),
        1 => prop::sample::select(vec![
            &b"data: "[..], b"data:", b"event: error\n", b"\n", b"\r", b"\r\n", b"\n\n", b":",
            b"{", b"}", b"[", b"]", b"\"", b",", b"null", b"[DONE]", b"\"model\":", b"\"usage\":",
            b"\"choices\":", b"\"error\":", b"\"finish_reason\":", b"\"message\":", b"\"stop\"",
            b"\xEF\xBB\xBF", b"{\"prompt_tokens\":1}", b"\\u00e9", b"\\",
            // Anthropic's event shapes.
            b"\"type\":", b"\"message_start\"", b"\"content_block_start\"", b"\"content_block_delta\"",
            b"\"content_block_stop\"", b"\"message_delta\"", b"\"message_stop\"", b"\"index\":0",
            b"\"delta\":", b"\"content_block\":", b"\"tool_use\"", b"\"thinking\"", b"\"text_delta\"",
            b"\"input_json_delta\"", b"\"partial_json\":", b"\"stop_reason\":", b"\"signature_delta\"",
            // Gemini's response shapes.
            b"\"candidates\":[", b"\"content\":{", b"\"parts\":[", b"\"text\":", b"\"thought\":true",
            b"\"thoughtSignature\":", b"\"functionCall\":{", b"\"args\":", b"\"name\":",
            b"\"finishReason\":", b"\"usageMetadata\":", b"\"promptFeedback\":", b"\"blockReason\":",
            b"\"code\":503",
            // OpenAI chat deltas as the decoder reads them.
            b"\"delta\":{\"content\":", b"\"reasoning_content\":", b"\"tool_calls\":[{\"index\":0,",
            b"\"id\":\"call_1\",", b"\"function\":{\"name\":\"f\",\"arguments\":", b"\"thinking_blocks\":[",
            b"event: message_start\n", b"event: content_block_delta\n",
        ])
        .prop_map(<[u8]>::to_vec),
    ];
    prop::collection::vec(tokens, 0..200).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn parser_never_panics(input in bytes(), cuts in prop::collection::vec(any::<usize>(), 0..4)) {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for piece in split_at_cuts(&input, &cuts) {
            parser.feed(piece, &mut out);
        }
        parser.finish(&mut out);
    }

    #[test]
    fn translators_never_panic(
        input in bytes(),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
        client_model in prop::option::of("[a-z\"\\\\é]{0,5}"),
        include_usage in any::<bool>(),
    ) {
        for provider in PROVIDERS {
            let mut t = new_stream_translator(provider, client_model.clone(), include_usage).unwrap();
            for piece in split_at_cuts(&input, &cuts) {
                let _ = t.feed(piece);
            }
            let _ = t.finish();
            let _ = translate_response(provider, &input, client_model.as_deref());
            let mut t = new_stream_translator_for(
                provider, client_model.clone(), include_usage, ClientApi::Anthropic,
            ).unwrap();
            for piece in split_at_cuts(&input, &cuts) {
                let _ = t.feed(piece);
            }
            let _ = t.finish();
            let _ = translate_response_for(
                provider, &input, client_model.as_deref(), ClientApi::Anthropic,
            );
        }
    }

    #[test]
    fn anthropic_client_output_is_named_events_of_json_objects_ending_once(
        input in bytes(),
        client_model in prop::option::of("[a-z\"\\\\é]{0,5}"),
    ) {
        // Whatever comes in, an Anthropic client gets `event: <type>` frames whose data is a JSON
        // object of that type, and nothing after `message_stop` or `error`.
        for provider in ["openai", "anthropic", "gemini"] {
            let mut t = new_stream_translator_for(
                provider, client_model.clone(), true, ClientApi::Anthropic,
            ).unwrap();
            let mut out = Vec::new();
            if let Ok(bytes) = t.feed(&input) {
                out.extend(bytes);
                if let Ok(bytes) = t.finish() {
                    out.extend(bytes);
                }
            }
            let mut parser = SseParser::new();
            let mut events = Vec::new();
            parser.feed(&out, &mut events);
            parser.finish(&mut events);
            let mut ended = false;
            for event in events {
                prop_assert!(!ended, "{}: event after the end", provider);
                let name = event.event.clone().unwrap_or_default();
                let value: serde_json::Value = serde_json::from_slice(&event.data).unwrap();
                if provider != "anthropic" {
                    // The pass-through keeps the upstream's own names.
                    prop_assert_eq!(value["type"].as_str(), Some(name.as_str()));
                }
                ended = name == "message_stop" || name == "error";
            }
            prop_assert!(ended, "{}: no end", provider);
        }
    }

    #[test]
    fn translator_output_is_valid_sse_of_json_objects(
        input in bytes(),
        client_model in prop::option::of("[a-z\"\\\\é]{0,5}"),
        include_usage in any::<bool>(),
    ) {
        // Whatever comes in, what goes out re-parses as SSE whose payloads are JSON objects
        // (or [DONE]), and nothing follows [DONE].
        let mut t = new_stream_translator("openai", client_model, include_usage).unwrap();
        let mut out = Vec::new();
        if let Ok(bytes) = t.feed(&input) {
            out.extend(bytes);
            if let Ok(bytes) = t.finish() {
                out.extend(bytes);
            }
        }
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        parser.feed(&out, &mut events);
        parser.finish(&mut events);
        let mut seen_done = false;
        for event in events {
            prop_assert!(!seen_done, "event after [DONE]");
            prop_assert_eq!(event.event, None);
            if event.data == b"[DONE]" {
                seen_done = true;
                continue;
            }
            let value: serde_json::Value = serde_json::from_slice(&event.data).unwrap();
            prop_assert!(value.is_object());
        }
    }
}
