//! Cheap top-level JSON editing: split an object into its members without building a value tree,
//! then write it back with some members changed, every other byte kept as it came.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::CoreError;

/// One top-level member of a JSON object: its (unescaped) key and its raw value text, a slice of
/// the parsed bytes (so [`write_edited`] can splice around it).
#[derive(Debug)]
pub(crate) struct Member<'a> {
    pub key: Cow<'a, str>,
    pub value: &'a str,
}

/// The members of a JSON object, in their original order (duplicates kept).
#[derive(Debug)]
pub(crate) struct Object<'a>(pub Vec<Member<'a>>);

impl<'a> Object<'a> {
    /// Parse `bytes` as a JSON object; `what` names the payload in the error.
    pub fn parse(bytes: &'a [u8], what: &'static str) -> Result<Self, CoreError> {
        parse_object(bytes, what)
    }

    /// The value of the last member named `key` (the one JavaScript's `JSON.parse` would keep).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.0.iter().rev().find(|m| m.key == key).map(|m| m.value)
    }
}

/// Split a JSON object into its members with [`Scan`], falling back to serde_json for what the
/// scanner leaves to it: invalid JSON (serde_json's error names what is wrong and where) and
/// nesting deeper than [`SCAN_DEPTH`].
fn parse_object<'a>(bytes: &'a [u8], what: &'static str) -> Result<Object<'a>, CoreError> {
    let text = std::str::from_utf8(bytes).map_err(|err| CoreError::invalid_utf8(what, &err))?;
    match scan_object(text) {
        Some(object) => Ok(object),
        None => serde_json::from_str::<SerdeObject<'a>>(text)
            .map(|object| object.0)
            .map_err(|err| CoreError::from_json(what, &err)),
    }
}

/// Deserialize an upstream payload (borrowing its strings where it can); `what` names it in the error.
/// One UTF-8 check of the whole payload, then `from_str`: `from_slice` would check every raw value
/// again on its own.
pub(crate) fn parse<'a, T: serde::Deserialize<'a>>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<T, CoreError> {
    let text = std::str::from_utf8(bytes).map_err(|err| CoreError::invalid_utf8(what, &err))?;
    serde_json::from_str(text).map_err(|err| CoreError::from_json(what, &err))
}

/// Whether a raw value is the JSON literal `null`.
pub(crate) fn is_null(value: &str) -> bool {
    value == "null"
}

/// How far [`Scan`] follows nested arrays and objects: it recurses, and an upstream must not be
/// able to overflow the stack; deeper payloads are split by serde_json, which does not recurse
/// over skipped values.
const SCAN_DEPTH: u32 = 64;

/// The members of the JSON object `text`, or `None` when it is not one or is nested deeper than
/// [`SCAN_DEPTH`] (the caller asks serde_json then).
///
/// Why not serde_json: splitting a stream chunk into `&RawValue` members cost ~5k instructions
/// per OpenAI chunk, most of a pass-through stream's cost in the core (issue 22). This accepts
/// exactly what serde_json accepts (the property tests below compare the two on valid and broken
/// JSON), with `text` already checked to be UTF-8 so strings need no per-character decoding.
fn scan_object(text: &str) -> Option<Object<'_>> {
    let mut scan = Scan {
        bytes: text.as_bytes(),
        at: 0,
    };
    scan.skip_whitespace();
    scan.eat(b'{')?;
    scan.skip_whitespace();
    let mut members = Vec::with_capacity(8);
    if scan.eat(b'}').is_none() {
        loop {
            let key_start = scan.at;
            if scan.peek()? != b'"' {
                return None;
            }
            let escaped = scan.string()?;
            let literal = text.get(key_start..scan.at)?;
            let key = if escaped {
                // Rare: let serde_json decode the escapes (and refuse a lone surrogate as it would).
                Cow::Owned(serde_json::from_str::<String>(literal).ok()?)
            } else {
                Cow::Borrowed(literal.get(1..literal.len() - 1)?)
            };
            scan.skip_whitespace();
            scan.eat(b':')?;
            scan.skip_whitespace();
            let value_start = scan.at;
            scan.value(SCAN_DEPTH)?;
            members.push(Member {
                key,
                value: text.get(value_start..scan.at)?,
            });
            scan.skip_whitespace();
            match scan.peek()? {
                b',' => {
                    scan.at += 1;
                    scan.skip_whitespace();
                }
                b'}' => {
                    scan.at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    scan.skip_whitespace();
    (scan.at == scan.bytes.len()).then_some(Object(members))
}

/// Whether `byte` ends a run of plain string characters: `"`, `\\`, or a control character,
/// which JSON strings may not hold raw.
fn ends_string_run(byte: u8) -> bool {
    byte == b'"' || byte == b'\\' || byte < 0x20
}

/// The bytes of `word` (little-endian) that [`ends_string_run`], as their high bits: a zero-byte
/// test on the word XORed with `"` and with `\\`, and a borrow test for bytes below 0x20. The
/// lowest bit set is exact; bits above it may be false (a borrow carried on), so only the lowest
/// one is used.
fn string_run_ends(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    has_zero(quote) | has_zero(backslash) | control
}

/// A validating JSON scanner over UTF-8 text: each method moves past one grammar element, or
/// returns `None` where the text is not JSON.
struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            self.at += 1;
        }
    }

    /// At a `"`: past the closing one; whether the string had escapes.
    fn string(&mut self) -> Option<bool> {
        self.at += 1;
        let mut escaped = false;
        loop {
            // Eight bytes at a time: the lowest flagged byte of a word is the run's end (as in
            // serde_json's scan); the last few bytes of the text one at a time.
            if let Some(word) = self.bytes.get(self.at..self.at + 8) {
                let mask = string_run_ends(u64::from_le_bytes(word.try_into().unwrap_or([0; 8])));
                if mask == 0 {
                    self.at += 8;
                    continue;
                }
                self.at += (mask.trailing_zeros() / 8) as usize;
            } else {
                while !ends_string_run(self.peek()?) {
                    self.at += 1;
                }
            }
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    match self.bytes.get(self.at + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 2,
                        b'u' => {
                            let hex = self.bytes.get(self.at + 2..self.at + 6)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.at += 6;
                        }
                        _ => return None,
                    }
                }
                _ => return None, // a raw control character
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => {
                self.at += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return None; // a leading zero (what follows would refuse it too)
                }
            }
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// One value, nested at most `depth` deep.
    fn value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            open @ (b'{' | b'[') => {
                let depth = depth.checked_sub(1)?;
                let (object, close) = (open == b'{', if open == b'{' { b'}' } else { b']' });
                self.at += 1;
                self.skip_whitespace();
                if self.eat(close).is_some() {
                    return Some(());
                }
                loop {
                    if object {
                        if self.peek()? != b'"' {
                            return None;
                        }
                        self.string()?;
                        self.skip_whitespace();
                        self.eat(b':')?;
                        self.skip_whitespace();
                    }
                    self.value(depth)?;
                    self.skip_whitespace();
                    match self.peek()? {
                        b',' => {
                            self.at += 1;
                            self.skip_whitespace();
                        }
                        byte if byte == close => {
                            self.at += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }
}

/// What [`write_edited`] does with one member.
pub(crate) enum Edit<'e> {
    Keep,
    Drop,
    /// Keep the key, write this raw value instead.
    Replace(&'e [u8]),
}

/// Append the object `text`, whose members are `members` (parsed from `text` itself), with each
/// member kept, dropped or given a new value as `edit` says; every other byte is kept as it came:
/// whitespace, key spellings, the separators around the members kept. Runs of kept members are
/// copied whole.
pub(crate) fn write_edited<'e>(
    out: &mut Vec<u8>,
    text: &[u8],
    members: &[Member<'_>],
    mut edit: impl FnMut(&Member<'_>) -> Edit<'e>,
) {
    let base = text.as_ptr() as usize;
    let span = |m: &Member<'_>| {
        let start = (m.value.as_ptr() as usize).wrapping_sub(base);
        (start, start + m.value.len())
    };
    // Only whitespace and `,` come between a value and the next key: its first `"`.
    let key_after = |at: usize| {
        let rest = text.get(at..).unwrap_or_default();
        at + memchr::memchr(b'"', rest).unwrap_or(rest.len())
    };
    let mut copied = 0; // text[..copied] is written, or cut
    let mut previous_end = None; // the value end of the member before, once one is kept
    let mut key_start = None; // this member's key start, when every member before it was cut
    for (at, member) in members.iter().enumerate() {
        let (value_start, value_end) = span(member);
        debug_assert!(value_end <= text.len(), "a member not from this text");
        match edit(member) {
            Edit::Keep => previous_end = Some(value_end),
            Edit::Replace(value) => {
                out.extend_from_slice(text.get(copied..value_start).unwrap_or_default());
                out.extend_from_slice(value);
                copied = value_end;
                previous_end = Some(value_end);
            }
            // After a member kept: cut from its value's end (the `,` before this one) to this
            // value's end. Before any: cut this member and the separator after it.
            Edit::Drop => {
                let (cut_start, cut_end) = match previous_end {
                    Some(end) => (end, value_end),
                    None => {
                        // The first member's key follows the object's `{`, the first one in
                        // `text`; a later one's was found when the member before it was cut.
                        let start = key_start.unwrap_or_else(|| {
                            key_after(memchr::memchr(b'{', text).map_or(0, |at| at + 1))
                        });
                        let end = if at + 1 < members.len() {
                            key_after(value_end)
                        } else {
                            value_end
                        };
                        key_start = Some(end);
                        (start, end)
                    }
                };
                out.extend_from_slice(text.get(copied..cut_start).unwrap_or_default());
                copied = cut_end;
                if previous_end.is_some() {
                    previous_end = Some(value_end);
                }
            }
        }
    }
    out.extend_from_slice(text.get(copied..).unwrap_or_default());
}

/// `object` (parsed from `text`) with its top-level `model` replaced by `model` (a JSON literal),
/// every other byte as it came; `None` when no `model` member differs from it.
pub(crate) fn with_model(text: &[u8], object: &Object<'_>, model: &[u8]) -> Option<Vec<u8>> {
    let edit = |m: &Member<'_>| {
        if m.key == "model" && m.value.as_bytes() != model {
            Edit::Replace(model)
        } else {
            Edit::Keep
        }
    };
    if object.0.iter().all(|m| matches!(edit(m), Edit::Keep)) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() + model.len());
    write_edited(&mut out, text, &object.0, edit);
    Some(out)
}

/// Append `text` with its slice `part` replaced by `replacement`.
pub(crate) fn write_spliced(out: &mut Vec<u8>, text: &[u8], part: &str, replacement: &[u8]) {
    let start = (part.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
    let end = start + part.len();
    debug_assert!(end <= text.len(), "a part not from this text");
    out.extend_from_slice(text.get(..start).unwrap_or_default());
    out.extend_from_slice(replacement);
    out.extend_from_slice(text.get(end..).unwrap_or_default());
}

/// Append `s` as a JSON string literal.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    // serde_json's escaping (a 256-entry table, runs copied whole): 9 % fewer instructions per
    // Gemini transcript than the loop written here before (issue 22), the same bytes
    // (`write_str_matches_the_escaping_written_by_hand`). Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Append `n` in decimal: the encoders write a count or an index into every frame, and
/// `to_string()` allocates a `String` for each (issue 22).
pub(crate) fn write_u64(out: &mut Vec<u8>, n: impl Into<u64>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest: u64 = n.into();
    loop {
        at -= 1;
        if let Some(slot) = digits.get_mut(at) {
            // `rest % 10` < 10: the cast cannot truncate.
            *slot = b'0' + (rest % 10) as u8;
        }
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(at..).unwrap_or_default());
}

/// A JSON string literal, ready to be written as a raw value.
pub(crate) fn string_literal(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    write_str(&mut out, s);
    out
}

/// A key that borrows from the input unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// serde_json's reading of an [`Object`], for what [`scan_object`] leaves to it.
struct SerdeObject<'a>(Object<'a>);

impl<'de> Deserialize<'de> for SerdeObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = SerdeObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Key(key)) = map.next_key()? {
                    let value: &'de RawValue = map.next_value()?;
                    members.push(Member {
                        key,
                        value: value.get(),
                    });
                }
                Ok(SerdeObject(Object(members)))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The escaping the core wrote by hand before it used serde_json's.
    fn write_str_by_hand(out: &mut Vec<u8>, s: &str) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.push(b'"');
        let bytes = s.as_bytes();
        let mut start = 0;
        for (i, &byte) in bytes.iter().enumerate() {
            let escape: &[u8] = match byte {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0C => b"\\f",
                0x00..=0x1F => b"",
                _ => continue,
            };
            out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
            if escape.is_empty() {
                let hi = HEX.get(usize::from(byte >> 4)).copied().unwrap_or(b'0');
                let lo = HEX.get(usize::from(byte & 0xF)).copied().unwrap_or(b'0');
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hi, lo]);
            } else {
                out.extend_from_slice(escape);
            }
            start = i + 1;
        }
        out.extend_from_slice(bytes.get(start..).unwrap_or_default());
        out.push(b'"');
    }

    #[test]
    fn write_str_matches_the_escaping_written_by_hand() {
        let mut every: String = (0u8..0x80).map(char::from).collect();
        every.push_str("é ü 漢 \u{2028} \u{1F600} \"quoted\" back\\slash");
        for s in ["", "plain", every.as_str()] {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            write_str(&mut ours, s);
            write_str_by_hand(&mut theirs, s);
            assert_eq!(ours, theirs, "{s:?}");
        }
    }

    #[test]
    fn write_u64_writes_what_to_string_writes() {
        for n in [
            0,
            7,
            9,
            10,
            99,
            100,
            1_234_567,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = b"x".to_vec();
            write_u64(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    fn roundtrip(s: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, s);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn write_str_matches_serde_json() {
        for s in [
            "",
            "plain",
            "quo\"te",
            "back\\slash",
            "nl\n\r\t\u{8}\u{c}",
            "\u{1}\u{1f}",
            "é ☃ 😀",
            "\u{7f}",
        ] {
            assert_eq!(
                roundtrip(s),
                serde_json::to_string(s).unwrap_or_default(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn object_keeps_order_duplicates_and_raw_values() {
        let obj = Object::parse(br#" {"b": [1, 2], "a\u0041":null,"b":{"x" : 1}} "#, "test");
        let obj = match obj {
            Ok(obj) => obj,
            Err(err) => panic!("{err}"),
        };
        let members: Vec<(&str, &str)> = obj.0.iter().map(|m| (&*m.key, m.value)).collect();
        assert_eq!(
            members,
            vec![("b", "[1, 2]"), ("aA", "null"), ("b", r#"{"x" : 1}"#)]
        );
        assert_eq!(obj.get("b"), Some(r#"{"x" : 1}"#));
        assert!(obj.get("aA").is_some_and(is_null));
    }

    #[test]
    fn non_objects_and_bad_json_are_errors() {
        assert_eq!(
            Object::parse(b"[1]", "chunk").err(),
            Some(CoreError::NotAnObject { what: "chunk" })
        );
        assert!(matches!(
            Object::parse(b"{\"a\":", "chunk"),
            Err(CoreError::InvalidJson { what: "chunk", .. })
        ));
        assert!(matches!(
            Object::parse(b"{} x", "chunk"),
            Err(CoreError::InvalidJson { .. })
        ));
        assert!(matches!(
            Object::parse(b"{\"a\":\"\xFF\"}", "chunk"),
            Err(CoreError::InvalidJson { .. })
        ));
    }

    /// serde_json's split of `text` (the path the scanner replaces), as comparable values.
    fn serde_split(text: &str) -> Option<Vec<(String, String)>> {
        let object = serde_json::from_str::<SerdeObject<'_>>(text).ok()?;
        Some(members_of(&object.0))
    }

    fn members_of(object: &Object<'_>) -> Vec<(String, String)> {
        object
            .0
            .iter()
            .map(|m| (m.key.to_string(), m.value.to_owned()))
            .collect()
    }

    /// JSON text with random whitespace between tokens, built from `value`.
    fn spaced(value: &serde_json::Value, spaces: &mut impl Iterator<Item = u8>) -> String {
        fn space(spaces: &mut impl Iterator<Item = u8>) -> &'static str {
            match spaces.next().unwrap_or(0) % 8 {
                0 => " ",
                1 => "\n",
                2 => "\t ",
                3 => "\r\n",
                _ => "",
            }
        }
        match value {
            serde_json::Value::Array(items) => {
                let items: Vec<String> = items
                    .iter()
                    .map(|v| format!("{}{}{}", space(spaces), spaced(v, spaces), space(spaces)))
                    .collect();
                format!("[{}]", items.join(","))
            }
            serde_json::Value::Object(map) => {
                let members: Vec<String> = map
                    .iter()
                    .map(|(k, v)| {
                        let key = serde_json::to_string(k).unwrap_or_default();
                        format!(
                            "{}{key}{}:{}{}",
                            space(spaces),
                            space(spaces),
                            space(spaces),
                            spaced(v, spaces)
                        )
                    })
                    .collect();
                format!("{{{}}}", members.join(","))
            }
            scalar => serde_json::to_string(scalar).unwrap_or_default(),
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            "(\\PC|[\"\\\\\u{0}-\u{1f}]){0,12}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map("[a-z\"\\\\é]{0,6}", inner, 0..5)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Bytes that matter to a JSON parser, for breaking valid text.
    const BREAKERS: &[u8] = b"{}[]:,\"\\ \n0123456789-+.eEtrufalsn\x01\x1f/bu";

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn scanner_splits_valid_objects_as_serde_json_does(
            map in proptest::collection::btree_map("[a-z_\"\\\\]{0,8}", json_value(), 0..6),
            spaces in proptest::collection::vec(any::<u8>(), 64),
        ) {
            let value = serde_json::Value::Object(map.into_iter().collect());
            let text = spaced(&value, &mut spaces.into_iter().cycle());
            let scanned = scan_object(&text).map(|o| members_of(&o));
            prop_assert!(scanned.is_some(), "valid JSON refused: {}", text);
            prop_assert_eq!(scanned, serde_split(&text));
        }

        #[test]
        fn scanner_refuses_what_serde_json_refuses(
            map in proptest::collection::btree_map("[a-z]{0,4}", json_value(), 0..4),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, 0..BREAKERS.len()), 1..4),
        ) {
            let value = serde_json::Value::Object(map.into_iter().collect());
            let mut bytes = spaced(&value, &mut [0u8, 5, 1, 7, 2].into_iter().cycle()).into_bytes();
            for (at, op, byte) in edits {
                let byte = BREAKERS.get(byte).copied().unwrap_or(b' ');
                let at = at.index(bytes.len() + 1);
                match op {
                    0 if at < bytes.len() => { bytes.remove(at); }
                    1 => bytes.insert(at, byte),
                    _ if at < bytes.len() => { if let Some(b) = bytes.get_mut(at) { *b = byte; } }
                    _ => {}
                }
            }
            // Only text that is still UTF-8 reaches the scanner (`parse_object` checks first).
            if let Ok(text) = std::str::from_utf8(&bytes) {
                prop_assert_eq!(scan_object(text).map(|o| members_of(&o)), serde_split(text), "{}", text);
            }
        }
    }

    #[test]
    fn scanner_agrees_with_serde_json_on_the_edges_of_the_grammar() {
        let values = [
            "0",
            "-0",
            "01",
            "-01",
            "00",
            "1.",
            "1.5",
            ".5",
            "-",
            "-a",
            "1e",
            "1e+",
            "1e5",
            "1E-5",
            "1.5e3",
            "0.0",
            "2.e1",
            "1e1.5",
            "+1",
            "true",
            "tru",
            "truex",
            "false",
            "fals",
            "null",
            "nul",
            "NaN",
            "\"\"",
            "\"a\\\"\"",
            "\"\\u12\"",
            "\"\\u12g4\"",
            "\"\\u00e9\"",
            "\"\\ud800\"",
            "\"\\x\"",
            "\"\u{1}\"",
            "\"\u{7f}\"",
            "\"\t\"",
            "\"\\/\"",
            "[]",
            "[,]",
            "[1,]",
            "[1 2]",
            "{}",
            "{,}",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1:2}",
            "[[[]]]",
            "[\"a\",{\"b\":[null]}]",
            "\"unterminated",
            "[1",
        ];
        for value in values {
            for text in [
                format!("{{\"k\":{value}}}"),
                format!(" {{ \"k\" : {value} , \"z\" : 1 }} "),
                format!("{{\"k\":[{value}]}}"),
            ] {
                let scanned = scan_object(&text).map(|o| members_of(&o));
                assert_eq!(scanned, serde_split(&text), "{text}");
            }
        }
        for text in [
            "",
            " ",
            "[]",
            "1",
            "{",
            "}",
            "{}x",
            "{} {}",
            "{\"\\ud800\":1}",
            "{\"a\":1}\u{0}",
        ] {
            assert_eq!(
                scan_object(text).map(|o| members_of(&o)),
                serde_split(text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn scanner_leaves_deep_nesting_to_serde_json() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert!(scan_object(&deep).is_none());
        let object = Object::parse(deep.as_bytes(), "test").unwrap_or(Object(Vec::new()));
        assert_eq!(object.0.len(), 1);
    }

    #[test]
    fn write_edited_keeps_every_byte_it_does_not_change() {
        let text = " {\"a\" : 1 ,\n \"usage\":null, \"model\" :\"m\",\"z\":[ ]} ";
        let object = Object::parse(text.as_bytes(), "test").unwrap_or(Object(Vec::new()));
        let edited = |edit: &dyn Fn(&Member<'_>) -> Edit<'static>| {
            let mut out = Vec::new();
            write_edited(&mut out, text.as_bytes(), &object.0, edit);
            String::from_utf8(out).unwrap_or_default()
        };
        assert_eq!(edited(&|_| Edit::Keep), text);
        assert_eq!(
            edited(&|m| match &*m.key {
                "usage" => Edit::Drop,
                "model" => Edit::Replace(b"\"x\""),
                _ => Edit::Keep,
            }),
            " {\"a\" : 1, \"model\" :\"x\",\"z\":[ ]} "
        );
        // First, last, every member dropped.
        assert_eq!(
            edited(&|m| if m.key == "a" { Edit::Drop } else { Edit::Keep }),
            " {\"usage\":null, \"model\" :\"m\",\"z\":[ ]} "
        );
        assert_eq!(
            edited(&|m| if m.key == "z" || m.key == "model" {
                Edit::Drop
            } else {
                Edit::Keep
            }),
            " {\"a\" : 1 ,\n \"usage\":null} "
        );
        assert_eq!(edited(&|_| Edit::Drop), " {} ");
        for keep in ["a", "usage", "model", "z"] {
            let out = edited(&|m| {
                if m.key == keep {
                    Edit::Keep
                } else {
                    Edit::Drop
                }
            });
            let parsed: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
            assert_eq!(parsed.as_object().map(|o| o.len()), Some(1), "{out}");
        }
    }
}
