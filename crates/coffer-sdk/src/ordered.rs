//! A JSON value that keeps object keys in document order.
//!
//! The official SDKs print object values in notation results with their keys in the order
//! the record JSON has them (`{"first":"Jane","middle":"Q","last":"Doe"}`); `serde_json::Value`
//! sorts keys. Notation therefore evaluates over this small value type.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// An order-preserving JSON value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OValue {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<OValue>),
    Object(Vec<(String, OValue)>),
}

impl OValue {
    pub fn get(&self, key: &str) -> Option<&OValue> {
        match self {
            OValue::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            OValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[OValue]> {
        match self {
            OValue::Array(items) => Some(items),
            _ => None,
        }
    }

    /// Strings as they are, everything else as compact JSON.
    pub fn to_text(&self) -> String {
        match self {
            OValue::String(s) => s.clone(),
            other => serde_json::to_string(other).unwrap_or_default(),
        }
    }
}

impl Serialize for OValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            OValue::Null => serializer.serialize_unit(),
            OValue::Bool(b) => serializer.serialize_bool(*b),
            OValue::Number(n) => n.serialize(serializer),
            OValue::String(s) => serializer.serialize_str(s),
            OValue::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            OValue::Object(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

struct OVisitor;

impl<'de> Visitor<'de> for OVisitor {
    type Value = OValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<OValue, E> {
        Ok(OValue::Null)
    }
    fn visit_none<E>(self) -> Result<OValue, E> {
        Ok(OValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<OValue, D::Error> {
        OValue::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<OValue, E> {
        Ok(OValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<OValue, E> {
        Ok(OValue::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<OValue, E> {
        Ok(OValue::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<OValue, E> {
        Ok(serde_json::Number::from_f64(v).map_or(OValue::Null, OValue::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<OValue, E> {
        Ok(OValue::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<OValue, E> {
        Ok(OValue::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<OValue>()? {
            items.push(item);
        }
        Ok(OValue::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OValue, A::Error> {
        let mut entries: Vec<(String, OValue)> = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, OValue>()? {
            // JSON objects with a repeated key: the last one wins, as in serde_json.
            if let Some(slot) = entries.iter_mut().find(|(key, _)| *key == k) {
                slot.1 = v;
            } else {
                entries.push((k, v));
            }
        }
        Ok(OValue::Object(entries))
    }
}

impl<'de> Deserialize<'de> for OValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_is_kept() {
        let text = r#"{"first":"Jane","middle":"Q","last":"Doe","n":[1,2.5,true,null]}"#;
        let v: OValue = serde_json::from_str(text).unwrap();
        assert_eq!(v.to_text(), text);
        assert_eq!(v.get("last").and_then(OValue::as_str), Some("Doe"));
        assert_eq!(OValue::String("x".into()).to_text(), "x");
    }
}
