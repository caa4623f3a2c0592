//! Sans-IO framing of an HTTP/1.1 *response*, for the gateway's upstream client (RFC 9112).
//!
//! The client writes its request itself and hands every network read to [`ResponseParser::feed`],
//! which returns the head once it is complete and appends the decoded (de-chunked) body bytes of
//! that read to the caller's buffer. Body bytes are copied straight through: only an unfinished
//! head or chunk-size/trailer line is ever held, so memory stays bounded whatever the body size.
//!
//! Bodies end by `Content-Length`, by chunked encoding, or by the connection closing; interim
//! `1xx` answers (100 Continue, 103 Early Hints) are skipped; `204`/`304` have no body.

use memchr::{memchr, memmem};

use crate::error::CoreError;

/// The largest response head accepted (status line and headers).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The largest chunk-size line or trailer section accepted.
const MAX_LINE_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;

/// Status and headers of a response. Header names are lower-cased; values are trimmed bytes.
/// The reason phrase is not kept: it carries no meaning (RFC 9112 section 4), and copying it cost
/// an allocation per response (issue 22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Where [`ResponseParser::feed_borrowed`] left the body bytes of one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyBytes<'a> {
    /// They are this one piece of the read's input: nothing was copied.
    Input(&'a [u8]),
    /// They are in the caller's buffer (maybe none).
    Buffer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line.
    Size,
    /// This many data bytes of the current chunk are still to come.
    Data(u64),
    /// After the data: expecting `\r\n` (`seen_cr` once the `\r` arrived).
    DataEnd { seen_cr: bool },
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

/// An incremental parser of one HTTP/1.1 response.
#[derive(Debug)]
pub struct ResponseParser {
    state: State,
    /// Unconsumed bytes: an unfinished head, or an unfinished chunk-size or trailer line.
    pending: Vec<u8>,
    keep_alive: bool,
}

impl Default for ResponseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseParser {
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: State::Head,
            pending: Vec::new(),
            keep_alive: false,
        }
    }

    /// Parse one read. Appends the decoded body bytes of this read to `body_out` and returns the
    /// head when it completed during this call. Bytes after the end of the message are ignored
    /// (and make the connection unfit for reuse).
    pub fn feed(
        &mut self,
        data: &[u8],
        body_out: &mut Vec<u8>,
    ) -> Result<Option<ResponseHead>, CoreError> {
        if self.state != State::Head {
            self.feed_body(data, body_out)?;
            return Ok(None);
        }
        let Some((head, rest)) = self.feed_head(data)? else {
            return Ok(None);
        };
        self.feed_body(&rest, body_out)?;
        Ok(Some(head))
    }

    /// [`Self::feed`], without copying the body bytes when the whole read is body (a
    /// `Content-Length` or close-delimited body, or the data of one chunk, after the read that held
    /// the head): they are then [`BodyBytes::Input`] (all of `data`) and `body_out` is left as it
    /// was, for the caller to hand the read on as it is: one copy per read fewer (issue 22). Other
    /// reads go through [`Self::feed`] ([`BodyBytes::Buffer`]).
    pub fn feed_borrowed<'a>(
        &mut self,
        data: &'a [u8],
        body_out: &mut Vec<u8>,
    ) -> Result<(Option<ResponseHead>, BodyBytes<'a>), CoreError> {
        let len = data.len() as u64;
        let next = match self.state {
            State::UntilClose => Some(State::UntilClose),
            State::Length(remaining) if remaining >= len => Some(if remaining == len {
                State::Done
            } else {
                State::Length(remaining - len)
            }),
            State::Chunked(Chunk::Data(remaining)) if remaining >= len => {
                Some(State::Chunked(if remaining == len {
                    Chunk::DataEnd { seen_cr: false }
                } else {
                    Chunk::Data(remaining - len)
                }))
            }
            _ => None,
        };
        match next {
            Some(state) if !data.is_empty() => {
                self.state = state;
                Ok((None, BodyBytes::Input(data)))
            }
            _ => Ok((self.feed(data, body_out)?, BodyBytes::Buffer)),
        }
    }

    /// The connection closed. A body delimited by the close ends here; any other unfinished
    /// message is an error.
    pub fn finish(&mut self) -> Result<(), CoreError> {
        match self.state {
            State::Done => Ok(()),
            State::UntilClose => {
                self.state = State::Done;
                Ok(())
            }
            State::Head => Err(http_error(if self.pending.is_empty() {
                "the connection closed before a response"
            } else {
                "the connection closed in the middle of the response head"
            })),
            State::Length(_) | State::Chunked(_) => Err(http_error(
                "the connection closed in the middle of the response body",
            )),
        }
    }

    /// Whether the whole message has been read.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the connection may carry another request once the message is complete.
    #[must_use]
    pub fn keep_alive(&self) -> bool {
        self.keep_alive && self.state == State::Done
    }

    /// Collects head bytes; once the final head is complete, returns it and the bytes after it.
    fn feed_head(&mut self, data: &[u8]) -> Result<Option<(ResponseHead, Vec<u8>)>, CoreError> {
        // Only look at new bytes (and the 3 before them, for a terminator split across reads).
        let mut search_from = self.pending.len().saturating_sub(3);
        self.pending.extend_from_slice(data);
        loop {
            let Some(end) = head_end(&self.pending, search_from) else {
                if self.pending.len() > MAX_HEAD_BYTES {
                    return Err(http_error("the response head is larger than 64 KiB"));
                }
                return Ok(None);
            };
            if end > MAX_HEAD_BYTES {
                return Err(http_error("the response head is larger than 64 KiB"));
            }
            let head = self.parse_head(end)?;
            let rest = self.pending.split_off(end);
            self.pending.clear();
            if head.status == 101 {
                return Err(http_error("the upstream switched protocols (101)"));
            }
            if (100..200).contains(&head.status) {
                // An interim answer: drop it and look for the final head in what follows.
                self.pending = rest;
                search_from = 0;
                continue;
            }
            return Ok(Some((head, rest)));
        }
    }

    fn parse_head(&mut self, end: usize) -> Result<ResponseHead, CoreError> {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut slots);
        let bytes = self.pending.get(..end).unwrap_or_default();
        match response.parse(bytes) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(http_error("the response head is incomplete"))
            }
            Err(err) => return Err(http_error_owned(format!("malformed response head: {err}"))),
        }
        let status = response.code.unwrap_or(0);
        let version = response.version.unwrap_or(1);
        let headers: Vec<(Vec<u8>, Vec<u8>)> = response
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase().into_bytes(),
                    h.value.trim_ascii().to_vec(),
                )
            })
            .collect();
        if !(100..200).contains(&status) {
            self.state = body_framing(status, &headers)?;
            self.keep_alive =
                self.state != State::UntilClose && connection_persists(version, &headers);
        }
        Ok(ResponseHead { status, headers })
    }

    fn feed_body(&mut self, data: &[u8], body_out: &mut Vec<u8>) -> Result<(), CoreError> {
        let mut rest = data;
        while !rest.is_empty() {
            match self.state {
                State::Head => return Ok(()),
                State::Done => {
                    // Bytes after the end of the message: never reuse this connection.
                    self.keep_alive = false;
                    return Ok(());
                }
                State::UntilClose => {
                    body_out.extend_from_slice(rest);
                    return Ok(());
                }
                State::Length(remaining) => {
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(rest.len());
                    let (now, after) = rest.split_at(take);
                    body_out.extend_from_slice(now);
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Length(left)
                    };
                    rest = after;
                }
                State::Chunked(chunk) => rest = self.feed_chunked(chunk, rest, body_out)?,
            }
        }
        Ok(())
    }

    /// Advances the chunked decoder over `rest`; returns what it did not consume yet.
    fn feed_chunked<'a>(
        &mut self,
        chunk: Chunk,
        rest: &'a [u8],
        body_out: &mut Vec<u8>,
    ) -> Result<&'a [u8], CoreError> {
        match chunk {
            Chunk::Data(remaining) => {
                let take = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(rest.len());
                let (now, after) = rest.split_at(take);
                body_out.extend_from_slice(now);
                let left = remaining - take as u64;
                self.state = State::Chunked(if left == 0 {
                    Chunk::DataEnd { seen_cr: false }
                } else {
                    Chunk::Data(left)
                });
                Ok(after)
            }
            Chunk::DataEnd { seen_cr } => {
                let Some((&byte, after)) = rest.split_first() else {
                    return Ok(rest);
                };
                match (seen_cr, byte) {
                    (false, b'\r') => self.state = State::Chunked(Chunk::DataEnd { seen_cr: true }),
                    (_, b'\n') => self.state = State::Chunked(Chunk::Size),
                    _ => return Err(http_error("chunk data is not followed by CRLF")),
                }
                Ok(after)
            }
            Chunk::Size | Chunk::Trailers => {
                let Some(pos) = memchr(b'\n', rest) else {
                    if self.pending.len() + rest.len() > MAX_LINE_BYTES {
                        return Err(http_error("a chunk-size or trailer line is too long"));
                    }
                    self.pending.extend_from_slice(rest);
                    return Ok(&[]);
                };
                let (line_end, after) = rest.split_at(pos);
                let after = after.get(1..).unwrap_or_default();
                let mut line = std::mem::take(&mut self.pending);
                line.extend_from_slice(line_end);
                let line = line.strip_suffix(b"\r").unwrap_or(&line);
                if chunk == Chunk::Size {
                    let size = chunk_size(line)?;
                    self.state = State::Chunked(if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    });
                } else if line.is_empty() {
                    self.state = State::Done;
                }
                Ok(after)
            }
        }
    }
}

/// The end of the head (index just past the blank line), searching from `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let tail = buf.get(from..)?;
    let crlf = memmem::find(tail, b"\r\n\r\n").map(|i| from + i + 4);
    // Lenient: some servers end header lines with a bare LF.
    let lf = memmem::find(tail, b"\n\n").map(|i| from + i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn body_framing(status: u16, headers: &[(Vec<u8>, Vec<u8>)]) -> Result<State, CoreError> {
    if status == 204 || status == 304 {
        return Ok(State::Done);
    }
    let mut transfer_encoding: Option<&[u8]> = None;
    let mut length: Option<u64> = None;
    for (name, value) in headers {
        match name.as_slice() {
            b"transfer-encoding" => transfer_encoding = Some(value),
            b"content-length" => {
                for part in value.split(|&b| b == b',') {
                    let parsed = parse_decimal(part.trim_ascii())
                        .ok_or_else(|| http_error("invalid Content-Length"))?;
                    if length.is_some_and(|seen| seen != parsed) {
                        return Err(http_error("conflicting Content-Length values"));
                    }
                    length = Some(parsed);
                }
            }
            _ => {}
        }
    }
    if let Some(codings) = transfer_encoding {
        // Chunked must be the last coding; otherwise the body runs until the connection closes.
        let last = codings.rsplit(|&b| b == b',').next().unwrap_or_default();
        return Ok(if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            State::Chunked(Chunk::Size)
        } else {
            State::UntilClose
        });
    }
    Ok(match length {
        Some(0) => State::Done,
        Some(n) => State::Length(n),
        None => State::UntilClose,
    })
}

fn connection_persists(version: u8, headers: &[(Vec<u8>, Vec<u8>)]) -> bool {
    let mut close = false;
    let mut keep_alive = false;
    for (name, value) in headers {
        if name == b"connection" {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    !close && (version >= 1 || keep_alive)
}

fn parse_decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    text.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn chunk_size(line: &[u8]) -> Result<u64, CoreError> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 16 {
        return Err(http_error("invalid chunk size"));
    }
    digits.iter().try_fold(0u64, |n, &d| {
        let value = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err(http_error("invalid chunk size")),
        };
        Ok((n << 4) | u64::from(value))
    })
}

#[cold]
#[inline(never)]
fn http_error(detail: &'static str) -> CoreError {
    CoreError::Http(detail.to_owned())
}

#[cold]
#[inline(never)]
fn http_error_owned(detail: String) -> CoreError {
    CoreError::Http(detail)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces cut at `cuts`; returns (head, body, complete).
    fn run(input: &[u8], cuts: &[usize]) -> (Option<ResponseHead>, Vec<u8>, bool) {
        let mut parser = ResponseParser::new();
        let mut body = Vec::new();
        let mut head = None;
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            if let Some(h) = parser.feed(&input[start..cut], &mut body).unwrap() {
                assert!(head.is_none(), "head returned twice");
                head = Some(h);
            }
            start = cut;
        }
        // The borrowing feed gives the same head and body, copying only what is not one piece.
        let mut borrowing = ResponseParser::new();
        let (mut head2, mut body2, mut start) = (None, Vec::new(), 0);
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            let mut scratch = Vec::new();
            let (h, bytes) = borrowing
                .feed_borrowed(&input[start..cut], &mut scratch)
                .unwrap();
            head2 = head2.or(h);
            match bytes {
                BodyBytes::Input(piece) => {
                    assert!(scratch.is_empty());
                    body2.extend_from_slice(piece);
                }
                BodyBytes::Buffer => body2.extend_from_slice(&scratch),
            }
            start = cut;
        }
        assert_eq!((&head2, &body2), (&head, &body), "cuts {cuts:?}");
        assert_eq!(borrowing.is_complete(), parser.is_complete());
        (head, body, parser.is_complete())
    }

    #[test]
    fn a_body_in_one_piece_of_a_read_is_not_copied() {
        let mut parser = ResponseParser::new();
        let mut buf = Vec::new();
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234";
        let (h, bytes) = parser.feed_borrowed(head, &mut buf).unwrap();
        assert_eq!((h.map(|h| h.status), bytes), (Some(200), BodyBytes::Buffer));
        assert_eq!(buf, b"01234");
        buf.clear();
        let (_, bytes) = parser.feed_borrowed(b"56789", &mut buf).unwrap();
        assert_eq!(bytes, BodyBytes::Input(b"56789"));
        assert!(buf.is_empty() && parser.is_complete());
        // Two chunks in one read: copied, in order.
        let mut parser = ResponseParser::new();
        parser
            .feed_borrowed(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                &mut buf,
            )
            .unwrap();
        let (_, bytes) = parser
            .feed_borrowed(b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n", &mut buf)
            .unwrap();
        assert_eq!((bytes, buf.as_slice()), (BodyBytes::Buffer, &b"abcde"[..]));
    }

    fn every_split(input: &[u8], expected_body: &[u8]) {
        let (head, body, complete) = run(input, &[]);
        assert!(complete);
        assert_eq!(body, expected_body);
        for cut in 0..=input.len() {
            let (h, b, c) = run(input, &[cut]);
            assert_eq!(
                (h.as_ref(), b.as_slice(), c),
                (head.as_ref(), expected_body, true),
                "cut {cut}"
            );
        }
        let bytewise: Vec<usize> = (1..input.len()).collect();
        assert_eq!(run(input, &bytewise).1, expected_body);
    }

    #[test]
    fn content_length_body_any_split() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\":\"b\"}\r\n";
        every_split(input, b"{\"a\":\"b\"}\r\n");
        let (head, _, _) = run(input, &[]);
        let head = head.unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(
            head.headers[0],
            (b"content-type".to_vec(), b"application/json".to_vec())
        );
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers_any_split() {
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6 \r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";
        every_split(input, b"hello world");
    }

    #[test]
    fn zero_length_and_no_body_statuses() {
        assert!(run(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &[]).2);
        let (head, body, complete) = run(b"HTTP/1.1 204 No Content\r\n\r\n", &[]);
        assert_eq!((head.unwrap().status, body.len(), complete), (204, 0, true));
    }

    #[test]
    fn interim_answers_are_skipped() {
        let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        every_split(input, b"ok");
        assert_eq!(run(input, &[]).0.unwrap().status, 200);
        let mut parser = ResponseParser::new();
        assert!(parser
            .feed(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", &mut Vec::new())
            .is_err());
    }

    #[test]
    fn close_delimited_body_ends_at_finish() {
        let mut parser = ResponseParser::new();
        let mut body = Vec::new();
        parser
            .feed(b"HTTP/1.1 200 OK\r\n\r\nsome", &mut body)
            .unwrap();
        parser.feed(b" body", &mut body).unwrap();
        assert!(!parser.is_complete());
        parser.finish().unwrap();
        assert!(parser.is_complete());
        assert!(!parser.keep_alive());
        assert_eq!(body, b"some body");
    }

    #[test]
    fn truncation_is_an_error_at_finish() {
        for input in [
            &b""[..],
            b"HTTP/1.1 200 OK\r\nContent-Le",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
        ] {
            let mut parser = ResponseParser::new();
            parser.feed(input, &mut Vec::new()).unwrap();
            assert!(parser.finish().is_err(), "{input:?}");
        }
    }

    #[test]
    fn malformed_input_is_an_error() {
        for input in [
            &b"SSH-2.0-OpenSSH_9.6\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n",
        ] {
            let mut parser = ResponseParser::new();
            assert!(parser.feed(input, &mut Vec::new()).is_err(), "{input:?}");
        }
    }

    #[test]
    fn chunked_wins_over_content_length() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        every_split(input, b"ok");
    }

    #[test]
    fn head_larger_than_the_limit_is_an_error() {
        let mut parser = ResponseParser::new();
        let mut result = parser.feed(b"HTTP/1.1 200 OK\r\n", &mut Vec::new());
        let line = b"X-Filler: "
            .iter()
            .chain([b'a'; 1000].iter())
            .chain(b"\r\n")
            .copied()
            .collect::<Vec<u8>>();
        for _ in 0..70 {
            result = parser.feed(&line, &mut Vec::new());
            if result.is_err() {
                break;
            }
        }
        assert!(result.unwrap_err().to_string().contains("64 KiB"));
    }

    #[test]
    fn keep_alive_rules() {
        let complete = |input: &[u8]| {
            let mut parser = ResponseParser::new();
            parser.feed(input, &mut Vec::new()).unwrap();
            parser.keep_alive()
        };
        assert!(complete(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!complete(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!complete(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(complete(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(
            !complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"),
            "incomplete"
        );
        assert!(
            !complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"),
            "trailing bytes"
        );
    }
}
