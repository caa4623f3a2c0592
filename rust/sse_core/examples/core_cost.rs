//! Per-transcript cost of the core's hot paths, for instruction counts under valgrind (issue 22,
//! "Where the time goes"): wall time on the shared 2-core machine is too noisy to see a few percent.
//!
//! `core_cost <case> <n>` runs one recorded transcript through one translator `n` times (each run a
//! fresh translator fed the whole transcript in 512-byte reads, then `finish`), so that
//! `(instructions(n = 101) - instructions(n = 1)) / 100` is the cost of one transcript with the
//! start-up left out. `benches/core_instructions.sh` does that for every case; `core_cost list`
//! names the cases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;

use _core::framing::eventstream::encode_event;
use _core::framing::http1::{BodyBytes, ResponseParser};
use _core::framing::SseParser;
use _core::providers::bedrock_anthropic::encode_chunk;
use _core::providers::{new_stream_translator_for, ClientApi};

const OPENAI: &[u8] = include_bytes!("../tests/data/openai_stream.sse");
const ANTHROPIC: &[u8] = include_bytes!("../tests/data/anthropic_tool_use.sse");
const GEMINI: &[u8] = include_bytes!("../tests/data/gemini_text_thought_signature.sse");
const BEDROCK_ERROR: &[u8] = include_bytes!("../tests/data/bedrock_model_stream_error.bin");

/// The size of one upstream read.
const READ: usize = 512;

/// A Converse stream (reasoning with a signature, text, a tool call, stop, metadata), as in
/// `tests/anthropic_client_split.rs`: the recorded Bedrock fixture is a single exception frame.
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

/// The Anthropic recording as Bedrock's InvokeModelWithResponseStream carries it.
fn bedrock_anthropic() -> Vec<u8> {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    parser.feed(ANTHROPIC, &mut events);
    parser.finish(&mut events);
    events.iter().flat_map(|e| encode_chunk(&e.data)).collect()
}

/// A Content-Length response: the OpenAI recording as one body.
fn http1_length() -> Vec<u8> {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n",
        OPENAI.len()
    );
    [head.as_bytes(), OPENAI].concat()
}

/// A chunked response: the OpenAI recording, one chunk per event.
fn http1_chunked() -> Vec<u8> {
    let mut out =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    for event in OPENAI.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(format!("{:x}\r\n", event.len()).as_bytes());
        out.extend_from_slice(event);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// `(case, provider, client API)`; the provider `sse` and `http1` run only that framing layer.
const CASES: &[(&str, &str, &str)] = &[
    ("openai>openai", "openai", "openai"),
    ("openai>anthropic", "openai", "anthropic"),
    ("anthropic>openai", "anthropic", "openai"),
    ("anthropic>anthropic", "anthropic", "anthropic"),
    ("gemini>openai", "gemini", "openai"),
    ("gemini>anthropic", "gemini", "anthropic"),
    ("bedrock>openai", "bedrock", "openai"),
    ("bedrock>anthropic", "bedrock", "anthropic"),
    ("bedrock-error>openai", "bedrock", "openai"),
    ("bedrock-anthropic>openai", "bedrock-anthropic", "openai"),
    (
        "bedrock-anthropic>anthropic",
        "bedrock-anthropic",
        "anthropic",
    ),
    ("sse:openai", "sse", ""),
    ("http1:length", "http1", "copy"),
    ("http1:chunked", "http1", "copy"),
    ("http1:length/borrowed", "http1", "borrow"),
    ("http1:chunked/borrowed", "http1", "borrow"),
];

fn transcript(case: &str) -> Vec<u8> {
    match case.split(['>', ':']).next().unwrap_or_default() {
        "openai" | "sse" => OPENAI.to_vec(),
        "anthropic" => ANTHROPIC.to_vec(),
        "gemini" => GEMINI.to_vec(),
        "bedrock" => bedrock(),
        "bedrock-error" => BEDROCK_ERROR.to_vec(),
        "bedrock-anthropic" => bedrock_anthropic(),
        "http1" if case.contains("chunked") => http1_chunked(),
        "http1" => http1_length(),
        other => panic!("no transcript for {other}"),
    }
}

/// One run; returns the bytes written (kept so that nothing is optimized away).
fn run(provider: &str, api: &str, input: &[u8]) -> usize {
    match provider {
        "sse" => {
            let mut parser = SseParser::new();
            let mut events = Vec::new();
            let mut total = 0;
            for read in input.chunks(READ) {
                parser.feed(read, &mut events);
                total += events.iter().map(|e| e.data.len()).sum::<usize>();
                events.clear();
            }
            parser.finish(&mut events);
            total
        }
        "http1" => {
            let mut parser = ResponseParser::new();
            let mut body = Vec::new();
            let mut total = 0;
            for read in input.chunks(READ) {
                body.clear();
                // `copy`: the body bytes of every read appended to a buffer; `borrow`: left in
                // the read when they are one piece of it (what the Python binding does).
                let (head, len) = if api == "borrow" {
                    let (head, bytes) = parser.feed_borrowed(read, &mut body).unwrap();
                    let len = match bytes {
                        BodyBytes::Input(piece) => black_box(piece).len(),
                        BodyBytes::Buffer => body.len(),
                    };
                    (head, len)
                } else {
                    let head = parser.feed(read, &mut body).unwrap();
                    (head, body.len())
                };
                total += len + head.map_or(0, |h| h.headers.len());
            }
            parser.finish().unwrap();
            total
        }
        _ => {
            let api = ClientApi::from_name(api).unwrap();
            let mut t =
                new_stream_translator_for(provider, Some("alias".into()), true, api).unwrap();
            let mut out = Vec::new();
            for read in input.chunks(READ) {
                t.feed_into(read, &mut out).unwrap();
            }
            t.finish_into(&mut out).unwrap();
            black_box(t.usage());
            out.len()
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let case = args.get(1).map_or("list", String::as_str);
    if case == "list" {
        for (name, _, _) in CASES {
            println!("{name}");
        }
        return;
    }
    let n: usize = args.get(2).map_or(1, |n| n.parse().expect("n: a count"));
    let &(_, provider, api) = CASES
        .iter()
        .find(|(name, _, _)| *name == case)
        .unwrap_or_else(|| panic!("unknown case {case} (see `core_cost list`)"));
    let input = transcript(case);
    let mut total = 0;
    for _ in 0..n {
        total += run(provider, api, black_box(&input));
    }
    println!("{case} {n} {total}");
}
