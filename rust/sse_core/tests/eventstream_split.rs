//! Property tests of the AWS event stream decoder and the Bedrock translator: generated message
//! sequences decode the same whatever the split points; a corrupted byte is an error (never a
//! message); a stream cut inside a message is reported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use _core::framing::eventstream::encode_message;
use _core::framing::{EventMessage, EventStreamDecoder, EventStreamError};
use _core::providers::new_stream_translator;
use proptest::prelude::*;

mod common;
use common::split_at_cuts;

/// String headers and a payload.
type Message = (Vec<(String, String)>, Vec<u8>);

fn message() -> impl Strategy<Value = Message> {
    (
        prop::collection::vec(("[:a-z-]{1,20}", "[ -~é]{0,30}"), 0..4),
        prop::collection::vec(any::<u8>(), 0..300),
    )
}

fn encode(messages: &[Message]) -> Vec<u8> {
    messages
        .iter()
        .flat_map(|(headers, payload)| {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            encode_message(&headers, payload)
        })
        .collect()
}

fn decode(pieces: &[&[u8]]) -> (Vec<EventMessage>, Result<(), EventStreamError>) {
    let mut decoder = EventStreamDecoder::new();
    let mut out = Vec::new();
    for piece in pieces {
        if let Err(err) = decoder.feed(piece, &mut out) {
            return (out, Err(err));
        }
    }
    let end = decoder.finish();
    (out, end)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn split_points_do_not_change_the_messages(
        messages in prop::collection::vec(message(), 0..6),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let input = encode(&messages);
        let (decoded, end) = decode(&split_at_cuts(&input, &cuts));
        prop_assert_eq!(end, Ok(()));
        prop_assert_eq!(decoded.len(), messages.len());
        for (got, (headers, payload)) in decoded.iter().zip(&messages) {
            prop_assert_eq!(&got.headers, headers);
            prop_assert_eq!(&got.payload, payload);
        }
    }

    #[test]
    fn a_corrupted_byte_is_an_error_and_no_message_comes_from_it(
        messages in prop::collection::vec(message(), 1..5),
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let which = which.index(messages.len());
        let before = encode(&messages[..which]);
        let mut target = encode(&messages[which..=which]);
        let at = at.index(target.len());
        target[at] ^= flip;
        let mut input = before;
        input.extend(target);
        input.extend(encode(&messages[which + 1..]));
        let (decoded, end) = decode(&split_at_cuts(&input, &cuts));
        prop_assert!(end.is_err(), "corruption at {} of message {} accepted", at, which);
        prop_assert!(decoded.len() <= which);
        for (got, (headers, payload)) in decoded.iter().zip(&messages) {
            prop_assert_eq!(&got.headers, headers);
            prop_assert_eq!(&got.payload, payload);
        }
    }

    #[test]
    fn a_stream_cut_inside_a_message_is_reported(
        messages in prop::collection::vec(message(), 1..5),
        cut in any::<prop::sample::Index>(),
    ) {
        let input = encode(&messages);
        let cut = cut.index(input.len());
        let mut boundaries = vec![0];
        let mut offset = 0;
        for m in &messages {
            offset += encode(std::slice::from_ref(m)).len();
            boundaries.push(offset);
        }
        let (decoded, end) = decode(&[&input[..cut]]);
        if boundaries.contains(&cut) {
            prop_assert_eq!(end, Ok(()));
        } else {
            prop_assert!(matches!(end, Err(EventStreamError::Truncated { .. })), "{:?}", end);
        }
        prop_assert_eq!(decoded.len(), boundaries.iter().filter(|b| **b <= cut && **b > 0).count());
    }

    #[test]
    fn bedrock_translation_is_the_same_whatever_the_split(
        texts in prop::collection::vec("[ -~é\"\\\\]{0,12}", 0..8),
        tool_pieces in prop::collection::vec("[ -~]{0,8}", 0..4),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
        include_usage in any::<bool>(),
    ) {
        let event = |kind: &str, payload: String| {
            encode_message(
                &[(":event-type", kind), (":content-type", "application/json"), (":message-type", "event")],
                payload.as_bytes(),
            )
        };
        let mut input = event("messageStart", r#"{"role":"assistant"}"#.into());
        for text in &texts {
            let payload = serde_json::json!({"contentBlockIndex": 0, "delta": {"text": text}});
            input.extend(event("contentBlockDelta", payload.to_string()));
        }
        input.extend(event(
            "contentBlockStart",
            r#"{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"t1","name":"f"}}}"#.into(),
        ));
        for piece in &tool_pieces {
            let payload = serde_json::json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": piece}}});
            input.extend(event("contentBlockDelta", payload.to_string()));
        }
        input.extend(event("contentBlockStop", r#"{"contentBlockIndex":1}"#.into()));
        input.extend(event("messageStop", r#"{"stopReason":"tool_use"}"#.into()));
        input.extend(event("metadata", r#"{"usage":{"inputTokens":1,"outputTokens":2,"totalTokens":3}}"#.into()));

        let run = |pieces: &[&[u8]]| {
            let mut t = new_stream_translator("bedrock", Some("m".into()), include_usage).unwrap();
            let mut out = Vec::new();
            for piece in pieces {
                out.extend(t.feed(piece).unwrap());
            }
            out.extend(t.finish().unwrap());
            let text = String::from_utf8(out).unwrap();
            // The id and created differ per translator: compare the rest of each frame.
            text.split("\n\n")
                .filter(|f| !f.is_empty())
                .map(|f| {
                    let data = f.strip_prefix("data: ").unwrap();
                    match serde_json::from_str::<serde_json::Value>(data) {
                        Ok(mut v) => {
                            v.as_object_mut().unwrap().remove("id");
                            v.as_object_mut().unwrap().remove("created");
                            v.to_string()
                        }
                        Err(_) => data.to_owned(),
                    }
                })
                .collect::<Vec<_>>()
        };
        let whole = run(&[&input]);
        prop_assert_eq!(whole.last().map(String::as_str), Some("[DONE]"));
        prop_assert_eq!(run(&split_at_cuts(&input, &cuts)), whole);
    }
}

/// Payloads biased toward the Converse event shapes, so that deep paths are reached.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    let tokens = prop_oneof![
        2 => any::<u8>().prop_map(|b| vec![b]),
        3 => prop::sample::select(vec![
            &b"{"[..], b"}", b"[", b"]", b"\"", b",", b":", b"null", b"1", b"\"x\"",
            b"\"contentBlockIndex\":", b"\"delta\":", b"\"text\":", b"\"toolUse\":", b"\"input\":",
            b"\"reasoningContent\":", b"\"signature\":", b"\"redactedContent\":", b"\"start\":",
            b"\"toolUseId\":", b"\"name\":", b"\"stopReason\":", b"\"usage\":", b"\"inputTokens\":",
            b"\"message\":", b"\"agentgateway_json_output\"", b"\"tool_use\"",
        ])
        .prop_map(<[u8]>::to_vec),
    ];
    prop::collection::vec(tokens, 0..40).prop_map(|t| t.concat())
}

fn frame() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec!["event", "exception", "error", "other"]),
        prop::sample::select(vec![
            "messageStart",
            "contentBlockStart",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata",
            "throttlingException",
            "unknown",
        ]),
        payload(),
    )
        .prop_map(|(message_type, kind, payload)| {
            encode_message(
                &[
                    (":message-type", message_type),
                    (":event-type", kind),
                    (":exception-type", kind),
                ],
                &payload,
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn bedrock_translator_never_panics_and_writes_json_sse(
        frames in prop::collection::vec(frame(), 0..12),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
        include_usage in any::<bool>(),
    ) {
        let input = frames.concat();
        let mut t = new_stream_translator("bedrock", Some("m".into()), include_usage).unwrap();
        let mut out = Vec::new();
        for piece in split_at_cuts(&input, &cuts) {
            out.extend(t.feed(piece).unwrap());
        }
        out.extend(t.finish().unwrap());
        let text = String::from_utf8(out).unwrap();
        let mut frames = text.split("\n\n").filter(|f| !f.is_empty()).peekable();
        while let Some(frame) = frames.next() {
            let data = frame.strip_prefix("data: ").unwrap();
            if data == "[DONE]" {
                prop_assert!(frames.peek().is_none(), "frame after [DONE]");
                continue;
            }
            let value: serde_json::Value = serde_json::from_str(data).unwrap();
            prop_assert!(value.is_object());
        }
        // Every stream ends one way or the other.
        prop_assert!(t.done() || t.error().is_some());
        let _ = _core::providers::translate_response("bedrock", &input, Some("m"));
    }
}
