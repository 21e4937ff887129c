//! Request bodies as JSON objects, strictly: a key given twice in one object is an
//! error, at any depth. serde_json keeps the last of duplicates, and a proxy or a
//! client library in front may keep the first, so `{"password":"wrong",
//! "password":"right"}` would mean two things to two readers. Pure: bytes in, a map or
//! the reason out.

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use serde_json::{Map, Number, Value};

/// Why a body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyError {
    NotJson,
    NotAnObject,
    DuplicateKey,
}

const DUPLICATE: &str = "duplicate key";

/// Parses `bytes` as one JSON object with no key repeated in any object.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, BodyError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict.deserialize(&mut de).map_err(|e| {
        if e.to_string().starts_with(DUPLICATE) {
            BodyError::DuplicateKey
        } else {
            BodyError::NotJson
        }
    })?;
    de.end().map_err(|_| BodyError::NotJson)?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(BodyError::NotAnObject),
    }
}

/// A `serde_json::Value`, built by a visitor that refuses repeated keys.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(A::Error::custom(DUPLICATE));
            }
            let v = map.next_value_seed(Strict)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth() {
        for body in [
            r#"{"password":"wrong","password":"right"}"#,
            r#"{"a":{"b":1,"b":2}}"#,
            r#"{"a":[{"c":1,"c":1}]}"#,
            // The same key after an escape is still the same key.
            r#"{"code":"1","c\u006fde":"2"}"#,
        ] {
            assert_eq!(
                parse_object(body.as_bytes()),
                Err(BodyError::DuplicateKey),
                "{body}"
            );
        }
    }

    #[test]
    fn ordinary_objects_parse_as_serde_json_would() {
        for body in [
            r#"{"email":"a@b.c","password":"x","n":1.5,"big":18446744073709551615,"neg":-3}"#,
            r#"{"a":{"b":[1,2,{"c":null}]},"b":{"b":true}}"#,
            "{}",
            " { } ",
        ] {
            let ours = parse_object(body.as_bytes()).unwrap();
            let theirs: Map<String, Value> = serde_json::from_str(body).unwrap();
            assert_eq!(ours, theirs, "{body}");
        }
    }

    #[test]
    fn non_objects_and_garbage_are_told_apart() {
        assert_eq!(parse_object(b"[1]"), Err(BodyError::NotAnObject));
        assert_eq!(parse_object(b"\"x\""), Err(BodyError::NotAnObject));
        assert_eq!(parse_object(b"{\"a\":1} x"), Err(BodyError::NotJson));
        assert_eq!(parse_object(b"{\"a\":"), Err(BodyError::NotJson));
        assert_eq!(parse_object(b"{'a':1}"), Err(BodyError::NotJson));
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert_eq!(
            parse_object(format!("{{\"a\":{deep}}}").as_bytes()),
            Err(BodyError::NotJson),
            "serde_json's recursion limit still holds"
        );
    }
}
