//! The per-exchange telemetry work in the core (issue 18): the metric updates of one settled
//! exchange (bucket searches and `+=` on the worker's table of `f64` values) and the access log's
//! text line, appended to a buffer of `PIPE_BUF` batches.
//!
//! Sans-IO like the rest of the core: the table is a `&mut [f64]` (the binding hands in the
//! worker's memory-mapped file, `telemetry/_table.py`), and log lines are bytes the caller writes.
//!
//! Every value written is the one the Python recorder wrote before (`telemetry/_metrics.py`):
//! the same buckets (`bisect_left`: the first bound not below the value), the same additions in
//! `f64`, token counts converted to `f64` as Python's `float + int` converts them. The text line is
//! byte for byte `telemetry/_access_log.py`'s: `format(x, '.6g')` ([`write_g6`]) and
//! `f"{x:.6f}"` ([`write_f6`]) as Python writes them, strings quoted as its `_text` quotes them;
//! so is the JSON line orjson wrote ([`write_json_line`]: its floats as orjson writes them,
//! [`write_json_f64`], after Python's `round(x, 6)`, [`round6`]).

use std::collections::VecDeque;
use std::fmt::{self, Write as _};

use crate::json;

/// `agentgateway_request_duration_seconds` (agentgateway's HTTP buckets), seconds.
pub const HTTP_DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 80.0,
];
/// `agentgateway_gen_ai_server_request_duration` (the GenAI conventions' advice), seconds.
pub const GENAI_DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// `agentgateway_gen_ai_client_token_usage`: powers of 4, tokens.
pub const TOKEN_BUCKETS: [f64; 14] = [
    1.0,
    4.0,
    16.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];
/// `agentgateway_gen_ai_server_time_to_first_token` (with agentgateway's 1 ms bucket), seconds.
pub const TTFT_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// `agentgateway_gen_ai_server_time_per_output_token`, seconds.
pub const TPOT_BUCKETS: [f64; 14] = [
    0.001, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];

/// Every histogram's bounds, in the order the binding exports them (`STATS_BUCKETS`): HTTP
/// duration, GenAI duration, tokens, time to first token, time per output token.
pub const ALL_BUCKETS: [&[f64]; 5] = [
    &HTTP_DURATION_BUCKETS,
    &GENAI_DURATION_BUCKETS,
    &TOKEN_BUCKETS,
    &TTFT_BUCKETS,
    &TPOT_BUCKETS,
];

/// The bucket of `x` among `bounds` (sorted): how many bounds are below it, as Python's
/// `bisect_left` finds it (a value equal to a bound is in that bound's bucket; NaN in the first).
#[inline]
#[must_use]
pub fn bucket(bounds: &[f64], x: f64) -> usize {
    bounds.partition_point(|bound| *bound < x)
}

/// How many values a histogram series takes: a count per bucket, one for `+Inf`, then the sum.
#[must_use]
pub const fn histogram_width(bounds: &[f64]) -> usize {
    bounds.len() + 2
}

/// The GenAI series of a group (requests that reached a backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenAiSlots {
    /// First value of the `agentgateway_gen_ai_server_request_duration` histogram.
    pub duration: usize,
    /// Token-usage histograms: input, output, input_cache_read, input_cache_write.
    pub tokens: [usize; 4],
    /// Time-to-first-token histogram.
    pub ttft: usize,
    /// Time-per-output-token histogram.
    pub tpot: usize,
    /// The cost counter.
    pub cost: usize,
    /// The unpriced-requests counter.
    pub unpriced: usize,
}

/// The slots of every series one kind of request updates (the same labels), resolved once per
/// label group by the caller: `record` only adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSlots {
    requests: usize,
    duration: usize,
    genai: Option<GenAiSlots>,
    /// Other counters every exchange of the group adds one to (its upstream attempt's).
    counters: Vec<usize>,
    /// One past the last value any `record` of this group writes.
    end: usize,
}

impl GroupSlots {
    /// `requests`: the request counter; `duration`: the HTTP duration histogram's first value;
    /// `genai`: the GenAI series (None: the request reached no backend). None when a slot is so
    /// large that its series would end past `usize::MAX`.
    #[must_use]
    pub fn new(requests: usize, duration: usize, genai: Option<GenAiSlots>) -> Option<Self> {
        let counter = |slot: usize| slot.checked_add(1);
        let histogram = |slot: usize, bounds: &[f64]| slot.checked_add(histogram_width(bounds));
        let mut end = counter(requests)?.max(histogram(duration, &HTTP_DURATION_BUCKETS)?);
        if let Some(g) = &genai {
            end = end
                .max(histogram(g.duration, &GENAI_DURATION_BUCKETS)?)
                .max(histogram(g.ttft, &TTFT_BUCKETS)?)
                .max(histogram(g.tpot, &TPOT_BUCKETS)?)
                .max(counter(g.cost)?)
                .max(counter(g.unpriced)?);
            for slot in g.tokens {
                end = end.max(histogram(slot, &TOKEN_BUCKETS)?);
            }
        }
        Some(Self {
            requests,
            duration,
            genai,
            counters: Vec::new(),
            end,
        })
    }

    /// The same group, whose exchanges also add one to each of `counters`.
    #[must_use]
    pub fn with_counters(mut self, counters: &[usize]) -> Option<Self> {
        for &slot in counters {
            self.end = self.end.max(slot.checked_add(1)?);
        }
        self.counters = counters.to_vec();
        Some(self)
    }

    /// One past the last value any `record` of this group writes: the table must hold that many.
    #[must_use]
    pub fn end(&self) -> usize {
        self.end
    }
}

/// One exchange's token counts (as floats: what is added to the sums).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenCounts {
    pub input: f64,
    pub output: f64,
    /// Input tokens read from the cache (a histogram observation only when not zero).
    pub cached: f64,
    /// Input tokens written to the cache (a histogram observation only when not zero).
    pub cache_write: f64,
}

/// What one settled exchange adds to its group's series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Seconds from the request's start to its settling.
    pub elapsed: f64,
    /// Whether the answer was streamed (time to first token is only observed then).
    pub streamed: bool,
    /// Seconds to the first token, when one came.
    pub ttft: Option<f64>,
    /// The usage, when the upstream reported one.
    pub tokens: Option<TokenCounts>,
    /// USD; None when the model has no price (counted as unpriced). Only read with `tokens`.
    pub cost: Option<f64>,
}

/// A group whose series end past the table: nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfRange {
    /// One past the last value the group writes.
    pub end: usize,
    /// How many values the table has.
    pub len: usize,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a series ends at value {} of a table of {} values",
            self.end, self.len
        )
    }
}

#[inline]
fn add(values: &mut [f64], slot: usize, amount: f64) {
    if let Some(value) = values.get_mut(slot) {
        *value += amount;
    }
}

#[inline]
fn observe(values: &mut [f64], base: usize, bounds: &[f64], x: f64) {
    add(values, base + bucket(bounds, x), 1.0);
    add(values, base + bounds.len() + 1, x);
}

/// Adds one exchange to its group's series in `values`. Every slot is checked against the table
/// first: a group that does not fit writes nothing (`OutOfRange`), never past the end.
pub fn record(values: &mut [f64], slots: &GroupSlots, ex: &Observation) -> Result<(), OutOfRange> {
    let len = values.len();
    let Some(values) = values.get_mut(..slots.end) else {
        return Err(OutOfRange {
            end: slots.end,
            len,
        });
    };
    // Every index below is < slots.end (GroupSlots::new): `add` checks anyway.
    let elapsed = ex.elapsed;
    add(values, slots.requests, 1.0);
    for &slot in &slots.counters {
        add(values, slot, 1.0);
    }
    observe(values, slots.duration, &HTTP_DURATION_BUCKETS, elapsed);
    let Some(genai) = &slots.genai else {
        return Ok(());
    };
    observe(values, genai.duration, &GENAI_DURATION_BUCKETS, elapsed);
    if let Some(tokens) = &ex.tokens {
        let [input, output, cached, cache_write] = genai.tokens;
        observe(values, input, &TOKEN_BUCKETS, tokens.input);
        observe(values, output, &TOKEN_BUCKETS, tokens.output);
        if tokens.cached != 0.0 {
            observe(values, cached, &TOKEN_BUCKETS, tokens.cached);
        }
        if tokens.cache_write != 0.0 {
            observe(values, cache_write, &TOKEN_BUCKETS, tokens.cache_write);
        }
        match ex.cost {
            None => add(values, genai.unpriced, 1.0),
            // Python's `elif cost:` (NaN is true there too)
            Some(cost) if cost != 0.0 => add(values, genai.cost, cost),
            Some(_) => {}
        }
    }
    if let (true, Some(ttft)) = (ex.streamed, ex.ttft) {
        observe(values, genai.ttft, &TTFT_BUCKETS, ttft);
        if let Some(tokens) = &ex.tokens {
            if tokens.output > 1.0 {
                let tpot = (elapsed - ttft) / (tokens.output - 1.0);
                observe(values, genai.tpot, &TPOT_BUCKETS, tpot);
            }
        }
    }
    Ok(())
}

/// Adds `amount` to one counter of the table, checked like [`record`].
pub fn add_checked(values: &mut [f64], slot: usize, amount: f64) -> Result<(), OutOfRange> {
    let len = values.len();
    match values.get_mut(slot) {
        Some(value) => {
            *value += amount;
            Ok(())
        }
        None => Err(OutOfRange {
            end: slot.saturating_add(1),
            len,
        }),
    }
}

// -- floats as Python formats them ------------------------------------------------------------

/// A formatting target on the stack (Rust's float formatting writes through `fmt::Write`).
struct Stack {
    buf: [u8; 40],
    len: usize,
}

impl Stack {
    fn new() -> Self {
        Self {
            buf: [0; 40],
            len: 0,
        }
    }

    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl fmt::Write for Stack {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// `inf`, `-inf` and `nan` as Python writes them (the sign of a NaN is not written).
fn write_special(out: &mut Vec<u8>, x: f64) -> bool {
    if x.is_nan() {
        out.extend_from_slice(b"nan");
    } else if x.is_infinite() {
        out.extend_from_slice(if x < 0.0 { b"-inf" } else { b"inf" });
    } else {
        return false;
    }
    true
}

/// Appends `format(x, '.6g')` as Python writes it: six significant digits, correctly rounded
/// (ties to even, on the exact binary value), fixed notation for exponents -4 to 5 and
/// `d.ddddde±XX` otherwise, trailing zeros and a trailing point removed; `-0` for negative zero.
pub fn write_g6(out: &mut Vec<u8>, x: f64) {
    if write_special(out, x) {
        return;
    }
    let (negative, digits, exp) = match g6_digits_exact(x) {
        Some((digits, exp)) => (x.is_sign_negative(), digits, exp),
        None => g6_digits_std(x),
    };
    // Significant digits once trailing zeros are dropped (at least one).
    let significant = digits
        .iter()
        .rposition(|&d| d != b'0')
        .map_or(1, |last| last + 1);
    if negative {
        out.push(b'-');
    }
    if (-4..6).contains(&exp) {
        if exp < 0 {
            out.extend_from_slice(b"0.");
            for _ in 0..(-exp - 1) {
                out.push(b'0');
            }
            out.extend_from_slice(digits.get(..significant).unwrap_or_default());
        } else {
            // exp in 0..6: the integer part is the first exp + 1 digits.
            let whole = usize::try_from(exp).unwrap_or(0) + 1;
            out.extend_from_slice(digits.get(..whole).unwrap_or_default());
            if significant > whole {
                out.push(b'.');
                out.extend_from_slice(digits.get(whole..significant).unwrap_or_default());
            }
        }
    } else {
        out.extend_from_slice(digits.get(..1).unwrap_or_default());
        if significant > 1 {
            out.push(b'.');
            out.extend_from_slice(digits.get(1..significant).unwrap_or_default());
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let magnitude = exp.unsigned_abs();
        if magnitude < 10 {
            out.push(b'0');
        }
        json::write_u64(out, magnitude);
    }
}

/// The six significant digits of a finite `x` and the decimal exponent after rounding, from
/// Rust's exact `{:.5e}` (which rounds as Python's dtoa does: ties to even on the exact value).
fn g6_digits_std(x: f64) -> (bool, [u8; 6], i32) {
    let mut digits = [b'0'; 6];
    let mut text = Stack::new();
    // at most 13 bytes ("-1.23456e-308"): cannot fail
    let _ = write!(text, "{x:.5e}");
    let text = text.bytes();
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let e_at = text.iter().position(|&b| b == b'e').unwrap_or(text.len());
    let (mantissa, exponent) = text.split_at(e_at);
    let exp = parse_exponent(exponent.get(1..).unwrap_or_default());
    let mut count = 0;
    for &b in mantissa {
        if b.is_ascii_digit() {
            if let Some(slot) = digits.get_mut(count) {
                *slot = b;
                count += 1;
            }
        }
    }
    (negative, digits, exp)
}

/// `x = m * 2^e` exactly (finite `x`; the sign dropped).
fn decompose(x: f64) -> (u64, i32) {
    let bits = x.to_bits();
    // 11 bits: the cast is exact
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), biased - 1075)
    }
}

/// `m * 2^e * 10^k` rounded to an integer, ties to even, in exact integer arithmetic: the floor
/// and the rounded value; None when a term does not fit 128 bits (the caller formats otherwise).
fn scaled(m: u64, e: i32, k: i32) -> Option<(u128, u128)> {
    let ten = |power: i32| 10u128.checked_pow(power.unsigned_abs());
    let shift = |value: u128, by: i32| {
        let by = by.unsigned_abs();
        (by < 128 && value.leading_zeros() >= by).then(|| value << by)
    };
    let mut num = u128::from(m);
    let mut den: u128 = 1;
    if k >= 0 {
        num = num.checked_mul(ten(k)?)?;
    } else {
        den = ten(k)?;
    }
    if e >= 0 {
        num = shift(num, e)?;
    } else {
        den = shift(den, e)?;
    }
    let floor = num / den;
    let rest = num % den;
    // rest < den < 2^127 here or `shift` refused: doubling cannot overflow
    let twice = rest.checked_mul(2)?;
    let up = twice > den || (twice == den && floor & 1 == 1);
    Some((floor, floor + u128::from(up)))
}

/// The six significant digits and the decimal exponent of `format(x, '.6e')`-style rounding of a
/// finite `x`, in exact integer arithmetic (the quick way: no decimal expansion of the exact
/// value); None for zero or when the numbers do not fit (huge or tiny `x`).
fn g6_digits_exact(x: f64) -> Option<([u8; 6], i32)> {
    let (m, e) = decompose(x);
    if m == 0 {
        return None;
    }
    // An estimate of floor(log10 |x|) from the binary exponent (|x| = m * 2^e, m < 2^53:
    // log2 |x| is within one of e + bit length of m - 1; 78913 / 2^18 is log10(2) rounded down),
    // corrected below by a step or two.
    let log2 = e + 63 - i32::try_from(m.leading_zeros()).unwrap_or(0);
    let mut exp = (log2 * 78_913) >> 18;
    for _ in 0..4 {
        let (floor, rounded) = scaled(m, e, 5 - exp)?;
        if floor >= 1_000_000 {
            exp += 1;
        } else if floor < 100_000 {
            exp -= 1;
        } else {
            let (value, exp) = if rounded == 1_000_000 {
                (100_000, exp + 1)
            } else {
                (rounded, exp)
            };
            let mut digits = [b'0'; 6];
            let mut rest = value;
            for slot in digits.iter_mut().rev() {
                // rest % 10 < 10: the cast is exact
                *slot = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
            return Some((digits, exp));
        }
    }
    None
}

/// Appends `f"{x:.6f}"` as Python writes it: six decimals, correctly rounded (ties to even on the
/// exact binary value), every digit of the integer part; `-0.000000` for negative zero (and any
/// negative number that rounds to zero).
pub fn write_f6(out: &mut Vec<u8>, x: f64) {
    if write_special(out, x) {
        return;
    }
    let (m, e) = decompose(x);
    match scaled(m, e, 6) {
        // Exact integer arithmetic for all but huge values (the quick way).
        Some((_, micros)) if micros < u128::from(u64::MAX) => {
            if x.is_sign_negative() {
                out.push(b'-');
            }
            let micros = u64::try_from(micros).unwrap_or(0);
            json::write_u64(out, micros / 1_000_000);
            let fraction = micros % 1_000_000;
            out.push(b'.');
            let mut digits = [b'0'; 6];
            let mut rest = fraction;
            for slot in digits.iter_mut().rev() {
                // rest % 10 < 10: the cast is exact
                *slot = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
            out.extend_from_slice(&digits);
        }
        // Writing to a Vec cannot fail.
        _ => {
            let _ = std::io::Write::write_fmt(out, format_args!("{x:.6}"));
        }
    }
}

/// Python's `round(x, 6)`: the nearest float to `x` correctly rounded to six decimals (ties to
/// even on the exact binary value, as CPython's dtoa rounds), what the JSON line logs for
/// durations. NaN and infinities are returned as they are.
#[must_use]
pub fn round6(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let mut text = Vec::with_capacity(32);
    write_f6(&mut text, x);
    std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(x)
}

/// Appends `x` as orjson writes a float: its shortest round-trip digits (an exact tie between two
/// to the even one), in fixed notation for decimal exponents -5 to 15 (with `.0` when it is whole:
/// `123456.0`, `0.00001`), else as `d.ddde-7` / `1e+16`; `null` for NaN and infinities. That is
/// serde_json's float writer (zmij), which these tests and tests/test_native_stats.py check
/// against orjson's bytes. (Rust's own `{}` breaks exact ties upwards: `849053650497420.3`.)
pub fn write_json_f64(out: &mut Vec<u8>, x: f64) {
    // Writing to a Vec cannot fail; serde_json writes `null` for NaN and infinities.
    let _ = serde_json::to_writer(&mut *out, &x);
}

/// Appends `round(x, 6)` as orjson writes it (`write_json_f64(round6(x))`), the quick way where it
/// can: from 1e-5 to 1e9 (and zero) the shortest digits of the rounded value are its six decimals
/// without their trailing zeros (a shorter decimal would be a whole unit of the sixth decimal
/// away, farther than the value's half-ulp), and orjson writes them in fixed notation.
pub fn write_json_round6(out: &mut Vec<u8>, x: f64) {
    if x.is_finite() {
        let (m, e) = decompose(x);
        if let Some((_, micros)) = scaled(m, e, 6) {
            if micros < 1_000_000_000_000_000 && (micros == 0 || micros >= 10) {
                let micros = u64::try_from(micros).unwrap_or(0);
                if x.is_sign_negative() {
                    out.push(b'-');
                }
                json::write_u64(out, micros / 1_000_000);
                out.push(b'.');
                let mut digits = [b'0'; 6];
                let mut rest = micros % 1_000_000;
                for slot in digits.iter_mut().rev() {
                    // rest % 10 < 10: the cast is exact
                    *slot = b'0' + (rest % 10) as u8;
                    rest /= 10;
                }
                let kept = digits
                    .iter()
                    .rposition(|&d| d != b'0')
                    .map_or(1, |last| last + 1);
                out.extend_from_slice(digits.get(..kept).unwrap_or_default());
                return;
            }
        }
    }
    write_json_f64(out, round6(x));
}

/// The exponent of Rust's `{:e}` output (`-5`, `16`).
fn parse_exponent(text: &[u8]) -> i32 {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let mut exp: i32 = 0;
    for &digit in digits {
        exp = exp
            .saturating_mul(10)
            .saturating_add(i32::from(digit.wrapping_sub(b'0')));
    }
    if negative {
        -exp
    } else {
        exp
    }
}

// -- the access log's text line ---------------------------------------------------------------

/// Whether a logfmt value may hold `b` unquoted (`_access_log._SAFE`).
#[inline]
fn is_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'@' | b'*' | b'+')
}

/// A logfmt value: `-` for None; as it is when it is not empty and every byte is safe; else a JSON
/// string (what orjson writes: control characters escaped, so no line is forged).
pub fn write_value(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.push(b'-'),
        Some(text) if !text.is_empty() && text.bytes().all(is_safe) => {
            out.extend_from_slice(text.as_bytes());
        }
        Some(text) => json::write_str(out, text),
    }
}

fn write_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    json::write_u64(out, n.unsigned_abs());
}

/// The access log's timestamp, `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC), its seconds part kept between
/// calls (as `AccessLog._time` keeps it).
#[derive(Debug, Clone)]
pub struct Clock {
    second: i64,
    stamp: [u8; 19],
}

impl Default for Clock {
    fn default() -> Self {
        Self {
            second: i64::MIN,
            stamp: [b'0'; 19],
        }
    }
}

impl Clock {
    /// Appends the stamp of `millis` (milliseconds since the Unix epoch, UTC).
    pub fn write(&mut self, out: &mut Vec<u8>, millis: i64) {
        let second = millis.div_euclid(1000);
        if second != self.second {
            self.second = second;
            self.stamp = civil(second);
        }
        out.extend_from_slice(&self.stamp);
        // rem_euclid(1000) is in 0..1000: the casts are exact.
        let ms = millis.rem_euclid(1000) as u16;
        out.extend_from_slice(&[
            b'.',
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
            b'Z',
        ]);
    }
}

/// Two decimal digits of `n` (0..100).
fn push2(out: &mut Vec<u8>, n: i64) {
    // n.rem_euclid(100) is in 0..100: both casts are exact.
    let n = n.rem_euclid(100) as u8;
    out.push(b'0' + n / 10);
    out.push(b'0' + n % 10);
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix second (UTC; Howard Hinnant's days-to-civil).
fn civil(unix_second: i64) -> [u8; 19] {
    let days = unix_second.div_euclid(86_400);
    let rest = unix_second.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = (yoe + era * 400 + i64::from(month <= 2)).clamp(0, 9999);
    let mut out = Vec::with_capacity(19);
    push2(&mut out, year / 100);
    push2(&mut out, year % 100);
    out.push(b'-');
    push2(&mut out, month);
    out.push(b'-');
    push2(&mut out, day);
    out.push(b'T');
    push2(&mut out, rest / 3600);
    out.push(b':');
    push2(&mut out, rest % 3600 / 60);
    out.push(b':');
    push2(&mut out, rest % 60);
    let mut stamp = [b'0'; 19];
    for (slot, byte) in stamp.iter_mut().zip(out) {
        *slot = byte;
    }
    stamp
}

/// The fields of one text line (`AccessLog.write`'s arguments, in their order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextLine<'a> {
    pub request_id: &'a str,
    pub upstream_id: Option<&'a str>,
    pub caller: Option<&'a str>,
    pub model: Option<&'a str>,
    pub backend: Option<&'a str>,
    pub attempts: i64,
    pub status: i64,
    /// input, output, cached, reasoning
    pub tokens: Option<[i64; 4]>,
    pub cost: Option<f64>,
    pub duration: f64,
    pub ttft: Option<f64>,
    pub error: Option<&'a str>,
}

/// Appends the text line (with its newline) after the timestamp `clock` writes for `millis`:
/// ``<time> request id=.. upstream_id=.. caller=.. model=.. backend=.. attempts=.. status=..
/// input=.. output=.. cached=.. reasoning=.. cost=.. duration=.. ttft=.. error=..``.
pub fn write_text_line(out: &mut Vec<u8>, clock: &mut Clock, millis: i64, line: &TextLine<'_>) {
    clock.write(out, millis);
    out.extend_from_slice(b" request id=");
    write_value(out, Some(line.request_id));
    out.extend_from_slice(b" upstream_id=");
    write_value(out, line.upstream_id);
    out.extend_from_slice(b" caller=");
    write_value(out, line.caller);
    out.extend_from_slice(b" model=");
    write_value(out, line.model);
    out.extend_from_slice(b" backend=");
    write_value(out, line.backend);
    out.extend_from_slice(b" attempts=");
    write_i64(out, line.attempts);
    out.extend_from_slice(b" status=");
    write_i64(out, line.status);
    match line.tokens {
        None => out.extend_from_slice(b" input=- output=- cached=- reasoning=-"),
        Some([input, output, cached, reasoning]) => {
            out.extend_from_slice(b" input=");
            write_i64(out, input);
            out.extend_from_slice(b" output=");
            write_i64(out, output);
            out.extend_from_slice(b" cached=");
            write_i64(out, cached);
            out.extend_from_slice(b" reasoning=");
            write_i64(out, reasoning);
        }
    }
    out.extend_from_slice(b" cost=");
    match line.cost {
        None => out.push(b'-'),
        Some(cost) => write_g6(out, cost),
    }
    out.extend_from_slice(b" duration=");
    write_f6(out, line.duration);
    out.extend_from_slice(b" ttft=");
    match line.ttft {
        None => out.push(b'-'),
        Some(ttft) => write_g6(out, ttft),
    }
    out.extend_from_slice(b" error=");
    write_value(out, line.error);
    out.push(b'\n');
}

/// Appends the JSON line (with its newline) as `AccessLog.write` writes it with orjson:
/// `{"time","id","upstream_id","caller","model","backend","attempts","status","input","output",
/// "cached","reasoning","cost","duration","ttft","error"}` in that order, compact, a member left
/// out when its value is None (the four counts together), `duration` and `ttft` rounded to six
/// decimals (`round6`).
pub fn write_json_line(out: &mut Vec<u8>, clock: &mut Clock, millis: i64, line: &TextLine<'_>) {
    out.extend_from_slice(b"{\"time\":\"");
    clock.write(out, millis);
    out.extend_from_slice(b"\",\"id\":");
    json::write_str(out, line.request_id);
    let strings = [
        (&b",\"upstream_id\":"[..], line.upstream_id),
        (b",\"caller\":", line.caller),
        (b",\"model\":", line.model),
        (b",\"backend\":", line.backend),
    ];
    for (key, value) in strings {
        if let Some(value) = value {
            out.extend_from_slice(key);
            json::write_str(out, value);
        }
    }
    out.extend_from_slice(b",\"attempts\":");
    write_i64(out, line.attempts);
    out.extend_from_slice(b",\"status\":");
    write_i64(out, line.status);
    if let Some([input, output, cached, reasoning]) = line.tokens {
        out.extend_from_slice(b",\"input\":");
        write_i64(out, input);
        out.extend_from_slice(b",\"output\":");
        write_i64(out, output);
        out.extend_from_slice(b",\"cached\":");
        write_i64(out, cached);
        out.extend_from_slice(b",\"reasoning\":");
        write_i64(out, reasoning);
    }
    if let Some(cost) = line.cost {
        out.extend_from_slice(b",\"cost\":");
        write_json_f64(out, cost);
    }
    out.extend_from_slice(b",\"duration\":");
    write_json_round6(out, line.duration);
    if let Some(ttft) = line.ttft {
        out.extend_from_slice(b",\"ttft\":");
        write_json_round6(out, ttft);
    }
    if let Some(error) = line.error {
        out.extend_from_slice(b",\"error\":");
        json::write_str(out, error);
    }
    out.extend_from_slice(b"}\n");
}

/// Whole lines waiting to be written, in batches of at most `limit` bytes (a longer line alone),
/// as `AccessLog` batched them: a line that does not fit after the current batch's closes it.
#[derive(Debug, Clone)]
pub struct Batches {
    limit: usize,
    current: Vec<u8>,
    full: VecDeque<Vec<u8>>,
}

impl Batches {
    #[must_use]
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            current: Vec::new(),
            full: VecDeque::new(),
        }
    }

    /// Adds one line; true when a closed batch waits (write it: [`Batches::pop_full`]).
    pub fn push(&mut self, line: &[u8]) -> bool {
        if !self.current.is_empty() && self.current.len().saturating_add(line.len()) > self.limit {
            let capacity = self.current.capacity();
            let closed = std::mem::replace(&mut self.current, Vec::with_capacity(capacity));
            self.full.push_back(closed);
        }
        self.current.extend_from_slice(line);
        !self.full.is_empty()
    }

    /// The oldest closed batch, taken.
    pub fn pop_full(&mut self) -> Option<Vec<u8>> {
        self.full.pop_front()
    }

    /// The next batch to write: the oldest closed one, else the open one (without taking it:
    /// [`Batches::consume`] it once written).
    #[must_use]
    pub fn next(&self) -> Option<&[u8]> {
        match self.full.front() {
            Some(batch) => Some(batch),
            None if self.current.is_empty() => None,
            None => Some(&self.current),
        }
    }

    /// Drops the batch [`Batches::next`] returned (the open one keeps its capacity, up to 64 KiB).
    pub fn consume(&mut self) {
        if self.full.pop_front().is_none() {
            self.current.clear();
            if self.current.capacity() > 1 << 16 {
                self.current = Vec::new();
            }
        }
    }

    /// Bytes waiting, over every batch.
    #[must_use]
    pub fn len(&self) -> usize {
        self.full.iter().map(Vec::len).sum::<usize>() + self.current.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.current.is_empty() && self.full.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn g6(x: f64) -> String {
        let mut out = Vec::new();
        write_g6(&mut out, x);
        String::from_utf8(out).unwrap_or_default()
    }

    fn f6(x: f64) -> String {
        let mut out = Vec::new();
        write_f6(&mut out, x);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn g6_writes_what_python_writes() {
        // Each pair checked with CPython 3.11's format(x, '.6g').
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-1.5, "-1.5"),
            (0.5, "0.5"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (0.00012345678, "0.000123457"),
            (2.58e-05, "2.58e-05"),
            (123456.5, "123456"),
            (123457.5, "123458"),
            (999999.5, "1e+06"),
            (999999.0, "999999"),
            (1234565.0, "1.23456e+06"),
            (1e16, "1e+16"),
            (1.7976931348623157e308, "1.79769e+308"),
            (5e-324, "4.94066e-324"),
            (0.0078125, "0.0078125"),
            (0.0005, "0.0005"),
            (3.0e-5, "3e-05"),
            (0.000132, "0.000132"),
            (100.0, "100"),
            (1e5, "100000"),
            (1e6, "1e+06"),
            (1.5e100, "1.5e+100"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (-f64::NAN, "nan"),
        ];
        for &(x, want) in cases {
            assert_eq!(g6(x), want, "{x:e}");
        }
    }

    #[test]
    fn f6_writes_what_python_writes() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0.000000"),
            (-0.0, "-0.000000"),
            (0.0078125, "0.007812"),
            (0.0000005, "0.000000"),
            (0.0000015, "0.000002"),
            (123456.5, "123456.500000"),
            (1e16, "10000000000000000.000000"),
            (0.012345678, "0.012346"),
            (f64::INFINITY, "inf"),
            (f64::NAN, "nan"),
        ];
        for &(x, want) in cases {
            assert_eq!(f6(x), want, "{x:e}");
        }
    }

    /// `format(x, '.6g')` the slow way: the `{:.5e}` digits laid out by Python's rule.
    fn g6_reference(x: f64) -> String {
        if x.is_nan() {
            return "nan".into();
        }
        if x.is_infinite() {
            return if x < 0.0 { "-inf" } else { "inf" }.into();
        }
        let sci = format!("{x:.5e}");
        let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let body = if (-4..6).contains(&exp) {
            let decimals = usize::try_from(5 - exp).unwrap_or(0);
            format!("{x:.decimals$}")
        } else {
            mantissa.to_owned()
        };
        let body = if body.contains('.') {
            body.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            body
        };
        if (-4..6).contains(&exp) {
            body
        } else {
            let sign = if exp < 0 { '-' } else { '+' };
            format!("{body}e{sign}{:02}", exp.unsigned_abs())
        }
    }

    proptest! {
        #[test]
        fn g6_matches_the_reference_for_any_float(bits in any::<u64>()) {
            let x = f64::from_bits(bits);
            prop_assert_eq!(g6(x), g6_reference(x));
        }

        #[test]
        fn g6_matches_the_reference_near_the_notation_switch(
            mantissa in 1.0f64..10.0, exp in -8i32..10
        ) {
            let x = mantissa * 10f64.powi(exp);
            prop_assert_eq!(g6(x), g6_reference(x));
        }

        #[test]
        fn buckets_are_bisect_left(x in any::<f64>(), which in 0usize..5) {
            let bounds = ALL_BUCKETS.get(which).copied().unwrap_or(&[]);
            let linear = bounds.iter().take_while(|b| **b < x).count();
            prop_assert_eq!(bucket(bounds, x), linear);
        }

        #[test]
        fn a_record_never_writes_past_the_table(
            len in 0usize..200,
            requests in 0usize..200,
            duration in 0usize..200,
            genai in proptest::option::of(proptest::array::uniform9(0usize..200)),
            elapsed in any::<f64>(),
            output in 0u32..100,
        ) {
            let genai = genai.map(|s| GenAiSlots {
                duration: s[0], tokens: [s[1], s[2], s[3], s[4]], ttft: s[5], tpot: s[6], cost: s[7],
                unpriced: s[8],
            });
            let slots = GroupSlots::new(requests, duration, genai);
            prop_assert!(slots.is_some());
            let Some(slots) = slots else { return Ok(()) };
            // A canary past the table's end.
            let mut memory = vec![0.0; len + 8];
            let (table, canary) = memory.split_at_mut(len);
            let ex = Observation {
                elapsed,
                streamed: true,
                ttft: Some(0.01),
                tokens: Some(TokenCounts {
                    input: 3.0, output: f64::from(output), cached: 1.0, cache_write: 2.0,
                }),
                cost: None,
            };
            let result = record(table, &slots, &ex);
            prop_assert!(canary.iter().all(|v| *v == 0.0));
            if slots.end() > len {
                prop_assert!(result.is_err());
                prop_assert!(table.iter().all(|v| *v == 0.0), "nothing written");
            } else {
                prop_assert!(result.is_ok());
            }
        }

        #[test]
        fn batches_keep_every_line_whole_and_in_order(
            lines in proptest::collection::vec(proptest::collection::vec(b'a'..=b'z', 1..300), 0..60),
            limit in 1usize..1000,
        ) {
            let mut batches = Batches::new(limit);
            let mut written: Vec<Vec<u8>> = Vec::new();
            for line in &lines {
                let mut line = line.clone();
                line.push(b'\n');
                if batches.push(&line) {
                    while let Some(batch) = batches.pop_full() {
                        written.push(batch);
                    }
                }
            }
            while let Some(batch) = batches.next() {
                written.push(batch.to_vec());
                batches.consume();
            }
            prop_assert!(batches.is_empty());
            for batch in &written {
                prop_assert!(batch.ends_with(b"\n"));
                prop_assert!(batch.len() <= limit || batch.iter().filter(|b| **b == b'\n').count() == 1);
            }
            let joined: Vec<u8> = written.concat();
            let expected: Vec<u8> = lines.iter().flat_map(|l| l.iter().copied().chain([b'\n'])).collect();
            prop_assert_eq!(joined, expected);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn rounded_json_floats_are_orjsons_of_the_rounded_value(bits in any::<u64>()) {
            let x = f64::from_bits(bits);
            let mut quick = Vec::new();
            write_json_round6(&mut quick, x);
            let mut slow = Vec::new();
            write_json_f64(&mut slow, round6(x));
            prop_assert_eq!(quick, slow, "{:e}", x);
        }

        #[test]
        fn rounded_durations_are_orjsons_of_the_rounded_value(x in -1e10f64..1e10, scale in -12i32..2) {
            let x = x * 10f64.powi(scale);
            let mut quick = Vec::new();
            write_json_round6(&mut quick, x);
            let mut slow = Vec::new();
            write_json_f64(&mut slow, round6(x));
            prop_assert_eq!(String::from_utf8(quick).unwrap_or_default(), String::from_utf8(slow).unwrap_or_default());
        }

        #[test]
        fn the_integer_paths_agree_with_rusts_exact_formatting(bits in any::<u64>()) {
            let x = f64::from_bits(bits);
            if x.is_finite() {
                if let Some((digits, exp)) = g6_digits_exact(x) {
                    let (_, want, want_exp) = g6_digits_std(x);
                    prop_assert_eq!((digits, exp), (want, want_exp), "{:e}", x);
                }
                let mut fast = Vec::new();
                write_f6(&mut fast, x);
                prop_assert_eq!(String::from_utf8(fast).unwrap_or_default(), format!("{x:.6}"));
            }
        }

        #[test]
        fn the_integer_paths_agree_where_durations_and_costs_are(
            mantissa in 1.0f64..10.0, exp in -12i32..16, neg in any::<bool>()
        ) {
            let x = mantissa * 10f64.powi(exp) * if neg { -1.0 } else { 1.0 };
            let digits = g6_digits_exact(x);
            prop_assert!(digits.is_some(), "{:e} took the slow way", x);
            let (_, want, want_exp) = g6_digits_std(x);
            prop_assert_eq!(digits, Some((want, want_exp)), "{:e}", x);
            let mut fast = Vec::new();
            write_f6(&mut fast, x);
            prop_assert_eq!(String::from_utf8(fast).unwrap_or_default(), format!("{x:.6}"));
        }
    }

    fn group() -> Option<GroupSlots> {
        let histogram = histogram_width(&HTTP_DURATION_BUCKETS);
        GroupSlots::new(
            0,
            1,
            Some(GenAiSlots {
                duration: 1 + histogram,
                tokens: [
                    1 + 2 * histogram,
                    1 + 3 * histogram,
                    1 + 4 * histogram,
                    1 + 5 * histogram,
                ],
                ttft: 1 + 6 * histogram,
                tpot: 1 + 6 * histogram + histogram_width(&TTFT_BUCKETS),
                cost: 200,
                unpriced: 201,
            }),
        )
    }

    #[test]
    fn a_streamed_exchange_updates_each_series_as_the_python_recorder_did() {
        let Some(slots) = group() else {
            panic!("no group")
        };
        let mut values = vec![0.0; 202];
        let ex = Observation {
            elapsed: 0.3,
            streamed: true,
            ttft: Some(0.05),
            tokens: Some(TokenCounts {
                input: 12.0,
                output: 41.0,
                cached: 0.0,
                cache_write: 4.0,
            }),
            cost: Some(2.5e-5),
        };
        assert_eq!(record(&mut values, &slots, &ex), Ok(()));
        let at = |i: usize| values.get(i).copied().unwrap_or(f64::NAN);
        let h = histogram_width(&HTTP_DURATION_BUCKETS);
        assert_eq!(at(0), 1.0, "requests");
        assert_eq!(at(1 + 7), 1.0, "0.3 s: the 0.5 bucket, index 7");
        assert_eq!(at(1 + 15), 0.3, "HTTP sum");
        assert_eq!(at(1 + h + 5), 1.0, "GenAI: the 0.32 bucket");
        assert_eq!(at(1 + 2 * h + 2), 1.0, "12 input tokens: the 16 bucket");
        assert_eq!(at(1 + 2 * h + 15), 12.0);
        assert_eq!(at(1 + 3 * h + 3), 1.0, "41 output tokens: the 64 bucket");
        assert!(
            (1 + 4 * h..1 + 5 * h).all(|i| at(i) == 0.0),
            "no cached tokens: not observed"
        );
        assert_eq!(at(1 + 5 * h + 1), 1.0, "4 written: the 4 bucket (le)");
        assert_eq!(
            at(1 + 6 * h + 5),
            1.0,
            "ttft 0.05: the 0.06 bucket, index 5"
        );
        let tpot_base = 1 + 6 * h + histogram_width(&TTFT_BUCKETS);
        assert_eq!(at(tpot_base + 1), 1.0, "(0.3 - 0.05) / 40: the 0.01 bucket");
        assert_eq!(at(tpot_base + 15), (0.3 - 0.05) / 40.0);
        assert_eq!(at(200), 2.5e-5, "cost");
        assert_eq!(at(201), 0.0, "priced");
    }

    #[test]
    fn unpriced_usage_counts_and_a_plain_answer_has_no_ttft() {
        let Some(slots) = group() else {
            panic!("no group")
        };
        let mut values = vec![0.0; 202];
        let ex = Observation {
            elapsed: 0.3,
            streamed: false,
            ttft: Some(0.05),
            tokens: Some(TokenCounts {
                input: 1.0,
                output: 2.0,
                cached: 0.0,
                cache_write: 0.0,
            }),
            cost: None,
        };
        assert_eq!(record(&mut values, &slots, &ex), Ok(()));
        assert_eq!(values.get(201).copied(), Some(1.0));
        let h = histogram_width(&HTTP_DURATION_BUCKETS);
        let ttft = 1 + 6 * h;
        assert!(values
            .get(ttft..ttft + 2 * h + 2)
            .is_some_and(|v| v.iter().all(|x| *x == 0.0)));
    }

    #[test]
    fn a_request_that_reached_no_backend_counts_only_its_http_series() {
        let Some(slots) = GroupSlots::new(20, 0, None) else {
            panic!("no group")
        };
        assert_eq!(slots.end(), 21);
        let mut values = vec![0.0; 21];
        let ex = Observation {
            elapsed: 2.0,
            streamed: true,
            ttft: None,
            tokens: None,
            cost: None,
        };
        assert_eq!(record(&mut values, &slots, &ex), Ok(()));
        assert_eq!(values.iter().sum::<f64>(), 1.0 + 1.0 + 2.0);
        let mut short = vec![0.0; 20];
        assert_eq!(
            record(&mut short, &slots, &ex),
            Err(OutOfRange { end: 21, len: 20 })
        );
        assert!(short.iter().all(|v| *v == 0.0));
        assert!(add_checked(&mut short, 20, 1.0).is_err());
        assert!(add_checked(&mut short, 19, 1.0).is_ok());
    }

    #[test]
    fn a_groups_counters_count_each_exchange_and_bound_the_table_too() {
        let slots = GroupSlots::new(0, 1, None).and_then(|g| g.with_counters(&[17, 30]));
        let Some(slots) = slots else {
            panic!("no group")
        };
        assert_eq!(slots.end(), 31);
        let ex = Observation {
            elapsed: 0.2,
            streamed: false,
            ttft: None,
            tokens: None,
            cost: None,
        };
        let mut values = vec![0.0; 31];
        assert_eq!(record(&mut values, &slots, &ex), Ok(()));
        assert_eq!(record(&mut values, &slots, &ex), Ok(()));
        assert_eq!((values.get(17), values.get(30)), (Some(&2.0), Some(&2.0)));
        assert!(record(&mut vec![0.0; 30], &slots, &ex).is_err());
        assert!(GroupSlots::new(0, 1, None)
            .and_then(|g| g.with_counters(&[usize::MAX]))
            .is_none());
    }

    #[test]
    fn slots_near_the_top_of_usize_are_refused() {
        assert!(GroupSlots::new(usize::MAX, 0, None).is_none());
        assert!(GroupSlots::new(0, usize::MAX - 3, None).is_none());
    }

    #[test]
    fn values_are_quoted_as_the_python_log_quotes_them() {
        let quoted = |value: Option<&str>| {
            let mut out = Vec::new();
            write_value(&mut out, value);
            String::from_utf8(out).unwrap_or_default()
        };
        assert_eq!(quoted(None), "-");
        assert_eq!(quoted(Some("")), "\"\"");
        assert_eq!(quoted(Some("gpt-4o-mini")), "gpt-4o-mini");
        assert_eq!(quoted(Some("a/b:c@d*e+f_g.h")), "a/b:c@d*e+f_g.h");
        assert_eq!(
            quoted(Some("evil\nmodel status=200 \"x\"")),
            "\"evil\\nmodel status=200 \\\"x\\\"\""
        );
        assert_eq!(quoted(Some("é")), "\"é\"");
        assert_eq!(quoted(Some("\u{1}\u{7f}")), "\"\\u0001\u{7f}\"");
    }

    #[test]
    fn the_clock_writes_utc_with_milliseconds() {
        let stamp = |millis: i64| {
            let mut out = Vec::new();
            Clock::default().write(&mut out, millis);
            String::from_utf8(out).unwrap_or_default()
        };
        assert_eq!(stamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(stamp(1_440_938_160_007), "2015-08-30T12:36:00.007Z");
        assert_eq!(stamp(951_782_400_999), "2000-02-29T00:00:00.999Z");
        assert_eq!(stamp(4_102_444_799_120), "2099-12-31T23:59:59.120Z");
        let mut clock = Clock::default();
        let mut out = Vec::new();
        clock.write(&mut out, 1_000_500);
        clock.write(&mut out, 1_000_999);
        clock.write(&mut out, 1_001_000);
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            "1970-01-01T00:16:40.500Z1970-01-01T00:16:40.999Z1970-01-01T00:16:41.000Z"
        );
    }

    #[test]
    fn a_text_line_is_the_python_line() {
        let mut out = Vec::new();
        let line = TextLine {
            request_id: "0a1b2c3d4e5f00000001",
            upstream_id: Some("req_fake_123"),
            caller: None,
            model: Some("gpt-4o-mini"),
            backend: Some("gpt-4o-mini"),
            attempts: 1,
            status: 200,
            tokens: Some([12, 40, 0, 0]),
            cost: Some(2.58e-5),
            duration: 0.0012345,
            ttft: Some(0.0005),
            error: None,
        };
        write_text_line(&mut out, &mut Clock::default(), 1_440_938_160_007, &line);
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            "2015-08-30T12:36:00.007Z request id=0a1b2c3d4e5f00000001 upstream_id=req_fake_123 \
             caller=- model=gpt-4o-mini backend=gpt-4o-mini attempts=1 status=200 input=12 \
             output=40 cached=0 reasoning=0 cost=2.58e-05 duration=0.001234 ttft=0.0005 error=-\n"
        );
        let mut out = Vec::new();
        let line = TextLine {
            request_id: "client id",
            upstream_id: None,
            tokens: None,
            cost: None,
            ttft: None,
            status: 404,
            attempts: 0,
            error: Some("model_not_found"),
            ..line
        };
        write_text_line(&mut out, &mut Clock::default(), 0, &line);
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            "1970-01-01T00:00:00.000Z request id=\"client id\" upstream_id=- caller=- \
             model=gpt-4o-mini backend=gpt-4o-mini attempts=0 status=404 input=- output=- \
             cached=- reasoning=- cost=- duration=0.001234 ttft=- error=model_not_found\n"
        );
    }

    fn json_f64(x: f64) -> String {
        let mut out = Vec::new();
        write_json_f64(&mut out, x);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn json_floats_are_what_orjson_writes() {
        // Each pair checked with orjson 3.13.
        let cases: &[(f64, &str)] = &[
            (2.58e-05, "0.0000258"),
            (1e-7, "1e-7"),
            (0.0001, "0.0001"),
            (1e-5, "0.00001"),
            (1.5e-6, "1.5e-6"),
            (123456.0, "123456.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345e20, "1.2345e+20"),
            (0.1, "0.1"),
            (1.0, "1.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (12.5, "12.5"),
            (1e-10, "1e-10"),
            (0.00123456789012, "0.00123456789012"),
            (9999000000000000.0, "9999000000000000.0"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (-2.5e-6, "-2.5e-6"),
            (849_053_650_497_420.2, "849053650497420.2"), // exactly ...420.25, a tie: to even
            (9_007_199_254_740_992.0, "9007199254740992.0"),
            (f64::NAN, "null"),
            (f64::INFINITY, "null"),
        ];
        for &(x, want) in cases {
            assert_eq!(json_f64(x), want, "{x:e}");
        }
    }

    #[test]
    fn round6_is_pythons_round() {
        // round(x, 6) in CPython 3.11
        let cases: &[(f64, f64)] = &[
            (0.0012345, 0.001234),
            (0.0078125, 0.007812),
            (0.0000005, 0.0),
            (0.0000015, 0.000002),
            (2.5, 2.5),
            (0.1234565, 0.123456),
            (-0.0000001, -0.0),
            (1e300, 1e300),
        ];
        for &(x, want) in cases {
            assert_eq!(round6(x).to_bits(), want.to_bits(), "{x:e}");
        }
        assert!(round6(f64::NAN).is_nan());
    }

    #[test]
    fn a_json_line_is_orjsons() {
        let mut out = Vec::new();
        let line = TextLine {
            request_id: "0a1b",
            upstream_id: Some("req_fake_123"),
            caller: None,
            model: Some("evil\nmodel \"x\""),
            backend: Some("gpt-4o-mini"),
            attempts: 1,
            status: 200,
            tokens: Some([12, 40, 0, -1]),
            cost: Some(2.58e-5),
            duration: 0.0012345,
            ttft: Some(0.0005),
            error: None,
        };
        write_json_line(&mut out, &mut Clock::default(), 7, &line);
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            "{\"time\":\"1970-01-01T00:00:00.007Z\",\"id\":\"0a1b\",\"upstream_id\":\"req_fake_123\",\
             \"model\":\"evil\\nmodel \\\"x\\\"\",\"backend\":\"gpt-4o-mini\",\"attempts\":1,\
             \"status\":200,\"input\":12,\"output\":40,\"cached\":0,\"reasoning\":-1,\
             \"cost\":0.0000258,\"duration\":0.001234,\"ttft\":0.0005}\n"
        );
        let mut out = Vec::new();
        let line = TextLine {
            upstream_id: None,
            model: None,
            backend: None,
            tokens: None,
            cost: None,
            ttft: None,
            error: Some("model_not_found"),
            ..line
        };
        write_json_line(&mut out, &mut Clock::default(), 7, &line);
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            "{\"time\":\"1970-01-01T00:00:00.007Z\",\"id\":\"0a1b\",\"attempts\":1,\"status\":200,\
             \"duration\":0.001234,\"error\":\"model_not_found\"}\n"
        );
    }

    proptest! {
        #[test]
        fn json_floats_read_back_and_are_laid_out_as_orjson_lays_them_out(bits in any::<u64>()) {
            let x = f64::from_bits(bits);
            let text = json_f64(x);
            if !x.is_finite() {
                prop_assert_eq!(text, "null");
                return Ok(());
            }
            prop_assert_eq!(text.parse::<f64>().ok().map(f64::to_bits), Some(x.to_bits()));
            // the exponent of the shortest digits (Rust's `{:e}` has the same, ties aside)
            let exp: i32 = format!("{x:e}")
                .split_once('e')
                .and_then(|(_, e)| e.parse().ok())
                .unwrap_or(0);
            let digits = text.trim_start_matches('-');
            if (-5..16).contains(&exp) {
                prop_assert!(!digits.contains('e') && digits.contains('.'), "{}", text);
                prop_assert!(digits.len() <= 24, "{}", text);
            } else {
                let sign = if exp < 0 { '-' } else { '+' };
                let suffix = format!("e{sign}{}", exp.unsigned_abs());
                prop_assert!(digits.ends_with(&suffix), "{} {}", text, suffix);
                let mantissa = digits.trim_end_matches(&suffix);
                prop_assert!(!mantissa.ends_with('0') && !mantissa.ends_with('.'), "{}", text);
                prop_assert!(mantissa.len() == 1 || mantissa.as_bytes().get(1) == Some(&b'.'), "{}", text);
            }
        }

        #[test]
        fn rounded_durations_read_back(x in 0.0f64..1e6) {
            let rounded = round6(x);
            prop_assert_eq!(json_f64(rounded).parse::<f64>().ok(), Some(rounded));
            prop_assert!((rounded - x).abs() <= 5e-7 * (1.0 + f64::EPSILON) + x * f64::EPSILON);
        }
    }

    #[test]
    fn a_line_longer_than_a_batch_goes_alone() {
        let mut batches = Batches::new(10);
        assert!(!batches.push(b"abc\n"));
        assert!(batches.push(b"0123456789abc\n"), "closes abc");
        assert_eq!(batches.pop_full().as_deref(), Some(&b"abc\n"[..]));
        assert!(batches.push(b"x\n"), "the long line closed, alone");
        assert_eq!(batches.len(), 16);
        assert_eq!(batches.next(), Some(&b"0123456789abc\n"[..]));
        batches.consume();
        assert_eq!(batches.next(), Some(&b"x\n"[..]));
        batches.consume();
        assert_eq!(batches.next(), None);
    }
}
