//! Between JSON, which people type and tools read, and msgpack, which actors
//! speak: arguments go out as the msgpack array of a function's parameters,
//! results come back as any msgpack value and are shown as JSON.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A call's arguments, sent as the msgpack array of its parameters.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CallArgs(pub(crate) Vec<Value>);

/// A call's arguments from the `--args` text: a JSON array is the argument
/// list; any other JSON value is the one argument of a one-parameter function.
/// Parsed with the command line, so a typo is reported before the tree is
/// contacted.
pub(crate) fn args(text: &str) -> Result<CallArgs, String> {
    match serde_json::from_str(text) {
        Ok(Value::Array(items)) => Ok(CallArgs(items)),
        Ok(one) => Ok(CallArgs(vec![one])),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// Any msgpack value, decoded straight into JSON. serde_json's own `Value`
/// refuses msgpack's binary and non-string map keys; these become an array of
/// byte values and the key's JSON text, so every result can be shown.
pub(crate) struct Json(pub(crate) Value);

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor).map(Json)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any msgpack value")
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

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Array(v.iter().map(|b| Value::Number((*b).into())).collect()))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // No `size_hint` preallocation: the length comes from the peer.
        let mut items = Vec::new();
        while let Some(Json(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some((Json(key), Json(value))) = map.next_entry()? {
            let key = match key {
                Value::String(s) => s,
                other => other.to_string(),
            };
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        // Only reachable through a decoder that reports enums itself; msgpack
        // has none, but say what happened rather than panic.
        let _ = data;
        Err(de::Error::custom("an enum value cannot be shown as JSON"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_array_is_the_argument_list_and_anything_else_one_argument() {
        assert_eq!(args("[1, \"a\"]"), Ok(CallArgs(vec![Value::from(1), Value::from("a")])));
        assert_eq!(args("\"poe\""), Ok(CallArgs(vec![Value::from("poe")])));
        assert!(args("[1,").is_err());
    }

    /// A msgpack value serde_json's own `Value` would refuse: binary, a map
    /// with an integer key, NaN.
    #[test]
    fn every_msgpack_value_becomes_json() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(7u8, serde_bytes::ByteBuf::from(vec![1, 2]));
        let bytes = rmp_serde::to_vec(&(map, f64::NAN, "s", -3i8, ())).expect("encode");
        let Json(value) = rmp_serde::from_slice(&bytes).expect("decode");
        assert_eq!(value, serde_json::json!([{ "7": [1, 2] }, null, "s", -3, null]));
    }
}
