//! The HTTP/1.1 response parser gives the same head and body whatever the read boundaries, and
//! never panics on arbitrary bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use _core::framing::{ResponseHead, ResponseParser};
use proptest::prelude::*;

/// A valid response: content-length or chunked (random chunk sizes, extensions, trailers), maybe
/// after interim 1xx answers.
fn response() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (
        prop::collection::vec(any::<u8>(), 0..600),
        any::<bool>(),
        prop::collection::vec(1usize..64, 0..20),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(body, chunked, sizes, interim, trailers)| {
            let mut out = Vec::new();
            if interim {
                out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n");
            if chunked {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                let mut rest = &body[..];
                let mut i = 0;
                while !rest.is_empty() {
                    let size = sizes.get(i).copied().unwrap_or(rest.len()).min(rest.len());
                    let ext = if i % 3 == 1 { ";name=value" } else { "" };
                    out.extend_from_slice(format!("{size:x}{ext}\r\n").as_bytes());
                    out.extend_from_slice(&rest[..size]);
                    out.extend_from_slice(b"\r\n");
                    rest = &rest[size..];
                    i += 1;
                }
                out.extend_from_slice(b"0\r\n");
                if trailers {
                    out.extend_from_slice(b"X-Checksum: abc\r\n");
                }
                out.extend_from_slice(b"\r\n");
            } else {
                out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                out.extend_from_slice(&body);
            }
            (out, body)
        })
}

fn feed_in_pieces(input: &[u8], cuts: &[usize]) -> (Option<ResponseHead>, Vec<u8>, bool, bool) {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut parser = ResponseParser::new();
    let mut body = Vec::new();
    let mut head = None;
    let mut start = 0;
    for cut in cuts.into_iter().chain(std::iter::once(input.len())) {
        if let Some(h) = parser.feed(&input[start..cut], &mut body).unwrap() {
            assert!(head.is_none(), "the head is returned once");
            head = Some(h);
        }
        start = cut;
    }
    (head, body, parser.is_complete(), parser.keep_alive())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_split_gives_the_same_head_and_body(
        (input, body) in response(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = feed_in_pieces(&input, &[]);
        prop_assert_eq!(whole.0.as_ref().map(|h| h.status), Some(200));
        prop_assert_eq!(&whole.1, &body);
        prop_assert!(whole.2 && whole.3);
        prop_assert_eq!(feed_in_pieces(&input, &cuts), whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        prefix in prop::sample::select(vec![
            &b""[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\n",
        ]),
        tail in prop::collection::vec(any::<u8>(), 0..300),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut input = prefix.to_vec();
        input.extend_from_slice(&tail);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        cuts.sort_unstable();
        let mut parser = ResponseParser::new();
        let mut body = Vec::new();
        let mut start = 0;
        for cut in cuts.into_iter().chain(std::iter::once(input.len())) {
            if parser.feed(&input[start..cut], &mut body).is_err() {
                return Ok(());
            }
            start = cut;
        }
        let _ = parser.finish();
    }
}
