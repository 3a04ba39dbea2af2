//! Tool calls in a model's output: which format a model writes them in, and parsing them out of
//! the generated text, whole or as it streams.
//!
//! Each format has its own file, a [`Scanner`] that looks at the text not yet consumed and says
//! what its next piece is (content, one or more calls, or "wait for more text"):
//!
//! * [`hermes`]: Qwen2.5 / Hermes, `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`,
//!   one block per call (or, as small models write it, the bare call object);
//! * [`llama3`]: Llama 3.x JSON, `{"name": ..., "parameters": {...}}` as the whole answer,
//!   possibly after `<|python_tag|>`, several calls separated by `;`;
//! * [`mistral`]: `[TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]` (v3 tokenizers) and
//!   the newer `[TOOL_CALLS]name[ARGS]{...}`.
//!
//! [`ToolCallParser`] drives a scanner over streamed text deltas: it yields content as soon as it
//! cannot be the start of a tool-call marker (holding back only a possible marker prefix, as stop
//! strings are held back) and each call once its JSON is complete. [`parse`] is the same parser
//! fed the whole text at once, so streamed and whole results agree by construction.
//!
//! Rules shared by all formats: a call's `arguments` is the compact JSON text of an object (`{}`
//! when the model gave none; a JSON string holding an object is unwrapped); a marker whose JSON
//! is malformed, or whose value is not a call, stays content (the parser then goes on scanning
//! after the marker); whitespace that only separates content from calls is dropped. Nothing here
//! panics on any input.
//!
//! [`grammar`] builds the Lark grammar (llguidance syntax) that forces a call in a format, for
//! `tool_choice: "required"` or a named function.

pub mod grammar;
pub mod hermes;
pub mod llama3;
pub mod mistral;
mod parser;

use serde_json::Value;

pub use grammar::{lark_grammar, ForcedChoice};
pub use parser::{parse, ParsedOutput, ToolCallParser, ToolOutput};

/// How a model writes tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolCallFormat {
    /// `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>` (Qwen2.5, Hermes).
    Hermes,
    /// `{"name": ..., "parameters": {...}}`, optionally after `<|python_tag|>` (Llama 3.x).
    Llama3Json,
    /// `[TOOL_CALLS] [{"name": ..., "arguments": {...}}]` (Mistral v3 tokenizers).
    MistralJson,
    /// `[TOOL_CALLS]name[ARGS]{...}` (newer Mistral tokenizers).
    MistralArgs,
}

impl ToolCallFormat {
    /// The format a chat template teaches its model, from the markers its source writes;
    /// `None` for a template that shows no tool-call format (such a model may still be asked
    /// to call tools: [`ToolCallFormat::Hermes`] is the usual fallback).
    pub fn detect(template_source: &str) -> Option<ToolCallFormat> {
        if template_source.contains("<tool_call>") {
            Some(ToolCallFormat::Hermes)
        } else if template_source.contains("[TOOL_CALLS]") {
            if template_source.contains("[ARGS]") {
                Some(ToolCallFormat::MistralArgs)
            } else {
                Some(ToolCallFormat::MistralJson)
            }
        } else if template_source.contains("<|python_tag|>")
            || (template_source.contains("<|start_header_id|>") && template_source.contains("\"parameters\""))
        {
            Some(ToolCallFormat::Llama3Json)
        } else {
            None
        }
    }

    /// Whether this is one of Mistral's formats (whose templates want 9-character call ids).
    pub fn is_mistral(self) -> bool {
        matches!(self, ToolCallFormat::MistralJson | ToolCallFormat::MistralArgs)
    }

    fn scanner(self) -> Box<dyn Scanner + Send> {
        match self {
            ToolCallFormat::Hermes => Box::new(hermes::HermesScanner::default()),
            ToolCallFormat::Llama3Json => Box::new(llama3::Llama3Scanner::default()),
            ToolCallFormat::MistralJson | ToolCallFormat::MistralArgs => Box::new(mistral::MistralScanner),
        }
    }
}

/// One tool call parsed out of a model's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedToolCall {
    /// The function's name.
    pub name: String,
    /// The arguments: the compact JSON text of an object.
    pub arguments: String,
}

/// What the next part of the unconsumed text is, according to a format's [`Scanner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// The next `n` bytes are content.
    Content(usize),
    /// The next `n` bytes are dropped (separators between calls).
    Skip(usize),
    /// The next `n` bytes are these calls.
    Calls(usize, Vec<ParsedToolCall>),
}

/// A format's view of the text: what its next piece is.
pub trait Scanner {
    /// The next piece of `text` (non-empty, not yet consumed), or `None` when it cannot tell
    /// before more text arrives. With `at_end` (no more text will come) it must return a piece.
    /// A returned length is at least 1, at most `text.len()`, on a char boundary.
    fn next(&mut self, text: &str, at_end: bool) -> Option<Piece>;
}

/// A call from a JSON value `{"name": ..., <one of args_keys>: {...}}`, or `None` if the value
/// does not have that shape. Arguments may be missing (`{}`), an object, or a string holding an
/// object.
pub(crate) fn call_from_value(value: &Value, args_keys: &[&str]) -> Option<ParsedToolCall> {
    let obj = value.as_object()?;
    let name = obj.get("name")?.as_str()?;
    if name.is_empty() {
        return None;
    }
    let args = args_keys.iter().find_map(|k| obj.get(*k));
    let arguments = match args {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(v @ Value::Object(_)) => v.to_string(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v.to_string(),
            _ => return None,
        },
        Some(_) => return None,
    };
    Some(ParsedToolCall { name: name.to_owned(), arguments })
}

/// The outcome of reading one JSON value at the start of `text`.
pub(crate) enum JsonPrefix {
    /// A complete value and the bytes it took.
    Value(Value, usize),
    /// The text so far is a valid beginning of a value.
    Incomplete,
    /// Not JSON.
    Invalid,
}

/// Reads one JSON value at the start of `text` (no leading whitespace skipped).
pub(crate) fn json_prefix(text: &str) -> JsonPrefix {
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    match values.next() {
        Some(Ok(v)) => JsonPrefix::Value(v, values.byte_offset()),
        Some(Err(e)) if e.is_eof() => JsonPrefix::Incomplete,
        None => JsonPrefix::Incomplete,
        Some(Err(_)) => JsonPrefix::Invalid,
    }
}

/// The length of the longest proper prefix of `marker` that `text` ends with (0 if none).
pub(crate) fn partial_marker_len(text: &str, marker: &str) -> usize {
    (1..marker.len().min(text.len() + 1))
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && text.ends_with(&marker[..n]))
        .unwrap_or(0)
}

/// Content up to `marker` (or up to a possible start of it at the end): the piece for text that
/// does not start with `marker`, or `None` when `text` starts with it.
pub(crate) fn content_before(text: &str, marker: &str, at_end: bool) -> Option<Option<Piece>> {
    match text.find(marker) {
        Some(0) => None,
        Some(i) => Some(Some(Piece::Content(i))),
        None => {
            let hold = if at_end { 0 } else { partial_marker_len(text, marker) };
            let n = text.len() - hold;
            Some((n > 0).then_some(Piece::Content(n)))
        }
    }
}

#[cfg(test)]
mod tests;
