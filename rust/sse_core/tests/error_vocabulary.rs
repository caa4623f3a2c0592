//! One error vocabulary (issue 15): a cut-off stream, a garbage event, an endless event and an
//! error the upstream reported end every provider's client stream with the same error event: the
//! same keys, and the `type`, `code` and `status` of its kind in `error_kind`'s table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use _core::error_kind::anthropic_error_type_for_status;
use _core::error_kind::{error_type_for_status, ErrorKind, TRUNCATED_MESSAGE};
use _core::framing::eventstream::{encode_event, encode_message};
use _core::providers::bedrock_anthropic::encode_chunk;
use _core::providers::{new_stream_translator, new_stream_translator_for, ClientApi, PROVIDERS};
use serde_json::Value;

/// The start of an answer, cut off before its end, in each provider's wire format.
fn cut_off(provider: &str) -> Vec<u8> {
    match provider {
        "openai" => b"data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n".to_vec(),
        "anthropic" => b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n".to_vec(),
        "gemini" => b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}],\"role\":\"model\"},\"index\":0}]}\n\n".to_vec(),
        "bedrock" => [
            encode_event("messageStart", br#"{"role":"assistant"}"#),
            encode_event("contentBlockDelta", br#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#),
        ]
        .concat(),
        "bedrock-anthropic" => [
            encode_chunk(br#"{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":1}}}"#),
            encode_chunk(br#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#),
            encode_chunk(br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#),
        ]
        .concat(),
        other => panic!("no cut-off stream for {other}"),
    }
}

/// The same start, then something that is not the provider's wire format.
fn garbage(provider: &str) -> Vec<u8> {
    let mut input = cut_off(provider);
    if provider.starts_with("bedrock") {
        let last = input.len() - 1;
        input[last] ^= 0xFF; // the message CRC no longer matches
    } else {
        input.extend_from_slice(b"data: {not json\n\n");
    }
    input
}

/// An error the upstream reported in the middle of its stream: (input, status, code).
fn reported(provider: &str) -> (Vec<u8>, u16, &'static str) {
    match provider {
        "openai" => (
            br#"data: {"error":{"message":"Overloaded","type":"server_error","code":null}}

"#
            .to_vec(),
            500,
            "server_error",
        ),
        "anthropic" => (
            br#"event: error
data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}

"#
            .to_vec(),
            529,
            "overloaded_error",
        ),
        "gemini" => (
            br#"data: {"error":{"code":503,"message":"Overloaded","status":"UNAVAILABLE"}}

"#
            .to_vec(),
            503,
            "UNAVAILABLE",
        ),
        "bedrock" | "bedrock-anthropic" => (
            encode_message(
                &[
                    (":exception-type", "throttlingException"),
                    (":content-type", "application/json"),
                    (":message-type", "exception"),
                ],
                br#"{"message":"Overloaded"}"#,
            ),
            429,
            "throttlingException",
        ),
        other => panic!("no reported error for {other}"),
    }
}

/// All of `input` in one read, then EOF: the client's last frame, which must be an error event.
fn last_error(provider: &str, input: &[u8]) -> Value {
    let mut t = new_stream_translator(provider, Some("m".to_owned()), true).unwrap();
    let mut out = t.feed(input).unwrap();
    out.extend(t.finish().unwrap());
    assert!(!t.done(), "{provider}: no [DONE] after an error");
    let text = String::from_utf8(out).unwrap();
    let last = text.split_terminator("\n\n").last().unwrap().to_owned();
    assert!(
        last.starts_with("data: {\"error\":{\"message\":"),
        "{provider}: {last}"
    );
    let event: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    let error = event["error"].clone();
    assert_eq!(
        event.as_object().unwrap().len(),
        1,
        "{provider}: {event} has only `error`"
    );
    let keys: Vec<&str> = error
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["code", "message", "param", "status", "type"], // serde_json's map is sorted
        "{provider}: {error}"
    );
    assert_eq!(error["param"], Value::Null, "{provider}");
    assert!(error["message"].is_string(), "{provider}");
    assert_eq!(t.error(), error["message"].as_str(), "{provider}");
    error
}

fn assert_kind(provider: &str, error: &Value, kind: ErrorKind) {
    assert_eq!(error["type"], kind.openai_type(), "{provider}: {error}");
    assert_eq!(error["code"], kind.code().unwrap(), "{provider}: {error}");
    assert_eq!(error["status"], kind.status(), "{provider}: {error}");
}

#[test]
fn a_cut_off_stream_ends_with_the_same_truncation_event_for_every_provider() {
    for provider in PROVIDERS {
        let error = last_error(provider, &cut_off(provider));
        assert_kind(provider, &error, ErrorKind::StreamTruncated);
        assert_eq!(error["message"], TRUNCATED_MESSAGE, "{provider}");
    }
}

#[test]
fn a_garbage_event_ends_with_the_same_protocol_error_event_for_every_provider() {
    for provider in PROVIDERS {
        let error = last_error(provider, &garbage(provider));
        assert_kind(provider, &error, ErrorKind::UpstreamProtocolError);
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with("the upstream's stream could not be read: "),
            "{provider}: {message}"
        );
    }
}

#[test]
fn a_message_cut_in_the_middle_is_a_truncation_too() {
    let whole = cut_off("bedrock");
    let error = last_error("bedrock", &whole[..whole.len() - 3]);
    assert_kind("bedrock", &error, ErrorKind::StreamTruncated);
    let half = b"data: {\"id\":\"c\",\"model\":\"m\",\"choi";
    for provider in ["openai", "anthropic", "gemini"] {
        let error = last_error(provider, half);
        assert_kind(provider, &error, ErrorKind::StreamTruncated);
    }
}

#[test]
fn an_endless_event_ends_with_the_same_event_too_large_event_for_every_sse_provider() {
    let piece = vec![b'x'; 1 << 20];
    for provider in ["openai", "anthropic", "gemini"] {
        let mut t = new_stream_translator(provider, None, true).unwrap();
        let mut out = t.feed(b"data: ").unwrap();
        while !t.failed() {
            out.extend(t.feed(&piece).unwrap());
        }
        let text = String::from_utf8(out).unwrap();
        let event: Value =
            serde_json::from_str(text.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_kind(provider, &event["error"], ErrorKind::EventTooLarge);
    }
}

#[test]
fn an_error_the_upstream_reported_keeps_its_status_and_name_in_the_same_shape() {
    for provider in PROVIDERS {
        let (input, status, code) = reported(provider);
        let error = last_error(provider, &input);
        assert_eq!(error["message"], "Overloaded", "{provider}");
        assert_eq!(error["status"], status, "{provider}");
        assert_eq!(error["code"], code, "{provider}");
        assert_eq!(error["type"], error_type_for_status(status), "{provider}");
    }
}

/// For an Anthropic client: all of `input` in one read, then EOF: the last event, which must be
/// Anthropic's `event: error` with `{"type": "error", "error": {"type", "message"}}`.
fn last_anthropic_error(provider: &str, input: &[u8]) -> Value {
    let mut t =
        new_stream_translator_for(provider, Some("m".to_owned()), true, ClientApi::Anthropic)
            .unwrap();
    let mut out = t.feed(input).unwrap();
    out.extend(t.finish().unwrap());
    assert!(!t.done(), "{provider}: no message_stop after an error");
    let text = String::from_utf8(out).unwrap();
    let last = text.split_terminator("\n\n").last().unwrap().to_owned();
    let data = last
        .strip_prefix("event: error\ndata: ")
        .unwrap_or_else(|| panic!("{provider}: {last}"));
    let event: Value = serde_json::from_str(data).unwrap();
    assert_eq!(event["type"], "error", "{provider}");
    let keys: Vec<&str> = event["error"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["message", "type"], "{provider}: {event}");
    assert_eq!(t.error(), event["error"]["message"].as_str(), "{provider}");
    event["error"].clone()
}

#[test]
fn an_anthropic_client_gets_the_same_errors_in_anthropic_shape_from_every_provider() {
    for provider in PROVIDERS {
        let error = last_anthropic_error(provider, &cut_off(provider));
        assert_eq!(error["type"], "api_error", "{provider}");
        assert_eq!(error["message"], TRUNCATED_MESSAGE, "{provider}");
        let error = last_anthropic_error(provider, &garbage(provider));
        assert_eq!(error["type"], "api_error", "{provider}");
        let (input, status, _) = reported(provider);
        let error = last_anthropic_error(provider, &input);
        assert_eq!(error["message"], "Overloaded", "{provider}");
        assert_eq!(
            error["type"],
            anthropic_error_type_for_status(status),
            "{provider}"
        );
    }
}
