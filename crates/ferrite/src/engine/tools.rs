//! Tool calling for chat requests: the tools handed to the template, the format the model's
//! calls are parsed in, and call ids.
//!
//! The declared tools reach the chat template as OpenAI sends them (`{"type": "function",
//! "function": {...}}`, as transformers passes them). Assistant messages with `tool_calls` and
//! `tool` messages reach it as the client sent them, except that each call's `arguments` string
//! is parsed into the object it encodes (`ferrite_chat::template::normalize_message`, as vLLM
//! does), since templates write it out with `tojson`.
//!
//! The model's output is parsed in the format its template teaches
//! ([`ToolCallFormat::detect`]); a template that shows none (say, SmolLM2's) gets the Hermes
//! format, the most common one. `tool_choice: "none"` renders the tools all the same (as vLLM
//! does by default, so the prompt and its cached prefix do not change with the choice) but
//! parses nothing: the output is plain content. `parallel_tool_calls: false` keeps the first
//! call only. For Mistral templates, call ids are cut to the 9 characters they accept
//! ([`shorten_call_ids`]).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use ferrite_chat::{ToolCallFormat, ToolCallParser};
use serde_json::Value;

use super::Inner;
use crate::types::{ChatCompletionRequest, ToolChoice, ToolChoiceMode};

/// How a request's output is searched for tool calls.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ToolSetup {
    format: ToolCallFormat,
    max_calls: usize,
}

impl ToolSetup {
    /// The setup for `req`: `None` when it declares no tools or sets `tool_choice: "none"`.
    pub fn for_request(inner: &Inner, req: &ChatCompletionRequest) -> Option<ToolSetup> {
        let declared = req.tools.as_ref().is_some_and(|t| !t.is_empty());
        let off = matches!(req.tool_choice, Some(ToolChoice::Mode(ToolChoiceMode::None)));
        if !declared || off {
            return None;
        }
        let format = ToolCallFormat::detect(inner.template.tools_source()).unwrap_or(ToolCallFormat::Hermes);
        let max_calls = if req.parallel_tool_calls == Some(false) { 1 } else { usize::MAX };
        Some(ToolSetup { format, max_calls })
    }

    /// The format calls are parsed (and, when forced, constrained) in.
    pub fn format(&self) -> ToolCallFormat {
        self.format
    }

    /// A fresh parser for one choice.
    pub fn parser(&self) -> ToolCallParser {
        ToolCallParser::new(self.format).with_max_calls(self.max_calls)
    }
}

/// The declared tools as the template sees them; `None` when there are none.
pub(crate) fn template_tools(req: &ChatCompletionRequest) -> Option<Vec<Value>> {
    let tools = req.tools.as_ref().filter(|t| !t.is_empty())?;
    Some(tools.iter().map(|t| serde_json::to_value(t).unwrap_or(Value::Null)).collect())
}

/// The messages' call ids as the model's template accepts them: Mistral's templates reject ids
/// that are not 9 alphanumerics, and ours are `call_` and 24, so for them (as vLLM does for
/// Mistral models) [`shorten_call_ids`]; other templates take ids as they are.
pub(crate) fn fit_call_ids(inner: &Inner, messages: &mut [Value]) {
    if ToolCallFormat::detect(inner.template.tools_source()).is_some_and(ToolCallFormat::is_mistral) {
        shorten_call_ids(messages);
    }
}

/// Cuts the ids of assistant `tool_calls` and of `tool` messages to their last 9 characters
/// (the pairs still match).
fn shorten_call_ids(messages: &mut [Value]) {
    fn shorten(id: &mut Value) {
        if let Some(s) = id.as_str() {
            if s.chars().count() > 9 {
                let tail: String = s.chars().skip(s.chars().count() - 9).collect();
                *id = Value::String(tail);
            }
        }
    }
    for m in messages {
        if let Some(id) = m.get_mut("tool_call_id") {
            shorten(id);
        }
        if let Some(Value::Array(calls)) = m.get_mut("tool_calls") {
            for call in calls {
                if let Some(id) = call.get_mut("id") {
                    shorten(id);
                }
            }
        }
    }
}

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A new call id: `call_` and 24 random alphanumerics.
pub(crate) fn call_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // A randomly keyed hasher (the standard library seeds each `RandomState` from the OS),
    // over a counter and the time, then a splitmix64 stream.
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    let mut state = h.finish();
    let mut id = String::with_capacity(29);
    id.push_str("call_");
    for _ in 0..24 {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        id.push(ALPHANUMERIC[(z % ALPHANUMERIC.len() as u64) as usize] as char);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistral_ids_are_the_last_nine_characters() {
        let mut messages = vec![
            serde_json::json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_abcdefghijklmnop0123456789", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "a1B2c3D4e", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}),
            serde_json::json!({"role": "tool", "tool_call_id": "call_abcdefghijklmnop0123456789", "content": "x"}),
            serde_json::json!({"role": "user", "content": "hi"}),
        ];
        shorten_call_ids(&mut messages);
        assert_eq!(messages[0]["tool_calls"][0]["id"], "123456789");
        assert_eq!(messages[0]["tool_calls"][1]["id"], "a1B2c3D4e");
        assert_eq!(messages[1]["tool_call_id"], "123456789");
        assert_eq!(messages[2], serde_json::json!({"role": "user", "content": "hi"}));
    }

    #[test]
    fn call_ids_are_call_and_24_alphanumerics_and_differ() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| call_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            let rest = id.strip_prefix("call_").expect("call_ prefix");
            assert_eq!(rest.len(), 24, "{id}");
            assert!(rest.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        }
    }
}
