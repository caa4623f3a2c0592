//! Cheap top-level JSON editing: split an object into its members without building a value tree,
//! then write it back with some members changed, every other byte kept as it came.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::CoreError;

/// One top-level member of a JSON object: its (unescaped) key and its raw value text.
#[derive(Debug)]
pub(crate) struct Member<'a> {
    pub key: Cow<'a, str>,
    pub value: &'a RawValue,
}

/// The members of a JSON object, in their original order (duplicates kept).
#[derive(Debug)]
pub(crate) struct Object<'a>(pub Vec<Member<'a>>);

impl<'a> Object<'a> {
    /// Parse `bytes` as a JSON object; `what` names the payload in the error.
    pub fn parse(bytes: &'a [u8], what: &'static str) -> Result<Self, CoreError> {
        parse(bytes, what)
    }

    /// The value of the last member named `key` (the one JavaScript's `JSON.parse` would keep).
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().rev().find(|m| m.key == key).map(|m| m.value)
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
pub(crate) fn is_null(value: &RawValue) -> bool {
    value.get() == "null"
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

/// Append `{"k":v,...}` for the given members, values written verbatim.
pub(crate) fn write_object<'m>(
    out: &mut Vec<u8>,
    members: impl IntoIterator<Item = (&'m Cow<'m, str>, &'m [u8])>,
) {
    out.push(b'{');
    let mut first = true;
    for (key, value) in members {
        if !first {
            out.push(b',');
        }
        first = false;
        match key {
            // Borrowed from the input: it had no escape sequence, and JSON strings hold no raw
            // `"` or control characters, so it needs none.
            Cow::Borrowed(key) => {
                out.push(b'"');
                out.extend_from_slice(key.as_bytes());
                out.push(b'"');
            }
            Cow::Owned(key) => write_str(out, key),
        }
        out.push(b':');
        out.extend_from_slice(value);
    }
    out.push(b'}');
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

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Object<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Key(key)) = map.next_key()? {
                    let value: &'de RawValue = map.next_value()?;
                    members.push(Member { key, value });
                }
                Ok(Object(members))
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
        let members: Vec<(&str, &str)> = obj.0.iter().map(|m| (&*m.key, m.value.get())).collect();
        assert_eq!(
            members,
            vec![("b", "[1, 2]"), ("aA", "null"), ("b", r#"{"x" : 1}"#)]
        );
        assert_eq!(obj.get("b").map(RawValue::get), Some(r#"{"x" : 1}"#));
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
}
