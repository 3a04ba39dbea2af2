//! From OpenAI-shaped request messages to the variables a chat template renders with.
//!
//! Hugging Face passes messages to the template as given. Two shapes OpenAI clients send differ
//! from what templates are written for, and are normalized here (the golden script
//! `scripts/golden_templates.py` feeds Python the same normalized messages):
//!
//! * `content` as an array of parts: the `{"type": "text", "text": ...}` parts are joined with
//!   `"\n"` into one string (as vLLM and llama.cpp do for text-only templates). Any other part
//!   type (images, audio) is an error: these models read text only. `content: null` stays
//!   `None` (templates test for it, e.g. an assistant turn that only calls tools).
//! * `tool_calls[].function.arguments` as a JSON string (OpenAI's wire form): parsed into the
//!   object it encodes, since templates write it with `tojson` and expect a mapping (Qwen2.5:
//!   `{"name": ..., "arguments": {...}}`; a string would come out JSON-quoted a second time).
//!   A string that is not a JSON object is left as it is.

use serde_json::{Map, Value};

use crate::{Error, Result};

/// The separator between the text parts of one message's content.
pub const PART_SEPARATOR: &str = "\n";

/// One message made ready for a template; see the module documentation.
pub fn normalize_message(index: usize, message: &Value) -> Result<Value> {
    let Value::Object(fields) = message else {
        return Err(Error::Template(format!("message {index} is not a JSON object")));
    };
    let mut out = Map::with_capacity(fields.len());
    for (key, value) in fields {
        let value = match key.as_str() {
            "content" => normalize_content(index, value)?,
            "tool_calls" => normalize_tool_calls(value),
            _ => value.clone(),
        };
        out.insert(key.clone(), value);
    }
    Ok(Value::Object(out))
}

fn normalize_content(index: usize, content: &Value) -> Result<Value> {
    let Value::Array(parts) = content else { return Ok(content.clone()) };
    let mut texts = Vec::with_capacity(parts.len());
    for part in parts {
        let kind = part.get("type").and_then(Value::as_str);
        match (kind, part.get("text").and_then(Value::as_str)) {
            (Some("text"), Some(text)) => texts.push(text),
            (Some("text"), None) => {
                return Err(Error::Template(format!("message {index}: a text content part has no `text` string")))
            }
            (Some(other), _) => {
                return Err(Error::Template(format!(
                    "message {index}: content parts of type `{other}` are not supported (text only)"
                )))
            }
            (None, _) => return Err(Error::Template(format!("message {index}: a content part has no `type`"))),
        }
    }
    Ok(Value::String(texts.join(PART_SEPARATOR)))
}

fn normalize_tool_calls(calls: &Value) -> Value {
    let Value::Array(calls) = calls else { return calls.clone() };
    let calls = calls
        .iter()
        .map(|call| {
            let mut call = call.clone();
            if let Some(args) = call.get_mut("function").and_then(|f| f.get_mut("arguments")) {
                if let Some(Value::Object(parsed)) = args.as_str().and_then(|s| serde_json::from_str(s).ok()) {
                    *args = Value::Object(parsed);
                }
            }
            call
        })
        .collect();
    Value::Array(calls)
}

/// The template's variables, as transformers' `apply_chat_template` passes them: `messages`,
/// `tools` (`None` when the request declares none), `documents` (always `None`),
/// `add_generation_prompt`, `bos_token`, `eos_token`, then `extra` (which may override them).
pub fn context(
    messages: &[Value],
    tools: Option<&[Value]>,
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
    extra: Option<&Map<String, Value>>,
) -> Result<Map<String, Value>> {
    let messages = messages.iter().enumerate().map(|(i, m)| normalize_message(i, m)).collect::<Result<Vec<_>>>()?;
    let mut ctx = Map::new();
    ctx.insert("messages".into(), Value::Array(messages));
    ctx.insert("tools".into(), tools.map_or(Value::Null, |t| Value::Array(t.to_vec())));
    ctx.insert("documents".into(), Value::Null);
    ctx.insert("add_generation_prompt".into(), Value::Bool(add_generation_prompt));
    ctx.insert("bos_token".into(), Value::String(bos_token.to_owned()));
    ctx.insert("eos_token".into(), Value::String(eos_token.to_owned()));
    if let Some(extra) = extra {
        for (k, v) in extra {
            ctx.insert(k.clone(), v.clone());
        }
    }
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn content_parts_are_joined() {
        let m = json!({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]});
        assert_eq!(normalize_message(0, &m).unwrap(), json!({"role": "user", "content": "a\nb"}));
        let m = json!({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]});
        let err = normalize_message(3, &m).unwrap_err().to_string();
        assert!(err.contains("message 3") && err.contains("image_url"), "{err}");
        assert!(normalize_message(0, &json!("hi")).is_err());
    }

    #[test]
    fn string_arguments_are_parsed_in_order() {
        let m = json!({"role": "assistant", "content": null, "tool_calls": [
            {"type": "function", "function": {"name": "f", "arguments": "{\"z\": 1, \"a\": [true]}"}},
            {"type": "function", "function": {"name": "g", "arguments": "not json"}}]});
        let n = normalize_message(0, &m).unwrap();
        let args = &n["tool_calls"][0]["function"]["arguments"];
        assert_eq!(args, &json!({"z": 1, "a": [true]}));
        assert_eq!(args.as_object().unwrap().keys().collect::<Vec<_>>(), ["z", "a"]);
        assert_eq!(n["tool_calls"][1]["function"]["arguments"], json!("not json"));
        assert_eq!(n["content"], Value::Null);
    }
}
