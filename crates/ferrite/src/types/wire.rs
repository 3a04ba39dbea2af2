//! Hand-written `Deserialize` for the fields that take one of several JSON shapes.
//!
//! serde's `untagged` would accept the same inputs, but its only error is "data did not match any
//! variant"; these visitors say which shapes are allowed and where an element went wrong.

use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::types::{ContentPart, MessageContent, NamedToolChoice, Prompt, StopSequence, ToolChoice, ToolChoiceMode};

/// Builds a field from a JSON array's elements, or says why it cannot.
type FromSeq<T> = fn(Vec<Value>) -> Result<T, String>;
/// Builds a field from a JSON object, or says why it cannot.
type FromMap<T> = fn(serde_json::Map<String, Value>) -> Result<T, String>;

/// A visitor for "a string, or a JSON array/object of some type" fields.
struct OneOf<T> {
    expecting: &'static str,
    from_str: fn(&str) -> Result<T, String>,
    from_seq: Option<FromSeq<T>>,
    from_map: Option<FromMap<T>>,
}

impl<'de, T> Visitor<'de> for OneOf<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        (self.from_str)(s).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        let Some(from_seq) = self.from_seq else {
            return Err(de::Error::invalid_type(de::Unexpected::Seq, &self));
        };
        let items = Vec::<Value>::deserialize(SeqAccessDeserializer::new(seq))?;
        from_seq(items).map_err(de::Error::custom)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        let Some(from_map) = self.from_map else {
            return Err(de::Error::invalid_type(de::Unexpected::Map, &self));
        };
        let fields = serde_json::Map::deserialize(MapAccessDeserializer::new(map))?;
        from_map(fields).map_err(de::Error::custom)
    }
}

/// Deserialises a JSON value into `T`, naming `what` in the error.
fn typed<T: de::DeserializeOwned>(what: &str, v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| format!("{what}: {e}"))
}

impl<'de> Deserialize<'de> for StopSequence {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OneOf {
            expecting: "a string or an array of strings",
            from_str: |s| Ok(StopSequence::Single(s.to_string())),
            from_seq: Some(|v| {
                typed("stop must be a string or an array of strings", Value::Array(v)).map(StopSequence::Multiple)
            }),
            from_map: None,
        })
    }
}

impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OneOf {
            expecting: "a string or an array of content parts",
            from_str: |s| Ok(MessageContent::Text(s.to_string())),
            from_seq: Some(|v| typed::<Vec<ContentPart>>("content part", Value::Array(v)).map(MessageContent::Parts)),
            from_map: None,
        })
    }
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OneOf {
            expecting: r#""none", "auto", "required" or {"type":"function","function":{"name":...}}"#,
            from_str: |s| match s {
                "none" => Ok(ToolChoice::Mode(ToolChoiceMode::None)),
                "auto" => Ok(ToolChoice::Mode(ToolChoiceMode::Auto)),
                "required" => Ok(ToolChoice::Mode(ToolChoiceMode::Required)),
                other => Err(format!("unknown tool_choice {other:?}, expected \"none\", \"auto\" or \"required\"")),
            },
            from_seq: None,
            from_map: Some(|m| typed::<NamedToolChoice>("tool_choice", Value::Object(m)).map(ToolChoice::Named)),
        })
    }
}

impl<'de> Deserialize<'de> for Prompt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OneOf {
            expecting: PROMPT_FORMS,
            from_str: |s| Ok(Prompt::Text(s.to_string())),
            from_seq: Some(|items| prompt_from_array(items, "prompt")),
            from_map: None,
        })
    }
}

/// A [`Prompt`] in a field called `input` (embeddings): the same forms, errors naming `input`.
pub(crate) fn input_prompt<'de, D: Deserializer<'de>>(d: D) -> Result<Prompt, D::Error> {
    d.deserialize_any(OneOf {
        expecting: PROMPT_FORMS,
        from_str: |s| Ok(Prompt::Text(s.to_string())),
        from_seq: Some(|items| prompt_from_array(items, "input")),
        from_map: None,
    })
}

const PROMPT_FORMS: &str = "a string, an array of strings, an array of token ids or an array of arrays of token ids";

/// The array forms of a prompt in the field `field`, told apart by the first element.
fn prompt_from_array(items: Vec<Value>, field: &str) -> Result<Prompt, String> {
    let array = Value::Array(items);
    match array.get(0) {
        None | Some(Value::String(_)) => {
            typed(&format!("{field} must be an array of strings"), array).map(Prompt::Texts)
        }
        Some(Value::Number(_)) => {
            typed(&format!("{field} must be an array of token ids (u32)"), array).map(Prompt::Tokens)
        }
        Some(Value::Array(_)) => {
            typed(&format!("{field} must be an array of arrays of token ids (u32)"), array).map(Prompt::TokenBatches)
        }
        Some(_) => Err(format!("{field} must be {PROMPT_FORMS}")),
    }
}
