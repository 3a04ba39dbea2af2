//! Mistral tool calls: `[TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]` (v3 tokenizers,
//! e.g. Mistral-7B-Instruct-v0.3, Mistral-Nemo) and `[TOOL_CALLS]name[ARGS]{...}` (newer
//! tokenizers, one marker per call).
//!
//! Text before the marker is content. A marker followed by neither a JSON array of call objects
//! nor `name[ARGS]` and a JSON object stays content.

use super::{call_from_value, content_before, json_prefix, JsonPrefix, ParsedToolCall, Piece, Scanner};

/// Opens one or more calls.
pub const START: &str = "[TOOL_CALLS]";
/// Separates a call's name from its arguments in the newer format.
pub const ARGS: &str = "[ARGS]";

const ARGS_KEYS: &[&str] = &["arguments", "parameters"];

/// The [`Scanner`] of both Mistral formats.
#[derive(Debug, Default)]
pub struct MistralScanner;

/// Whether `c` may appear in a function name of the `name[ARGS]` form.
fn name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.')
}

impl Scanner for MistralScanner {
    fn next(&mut self, text: &str, at_end: bool) -> Option<Piece> {
        if let Some(piece) = content_before(text, START, at_end) {
            return piece;
        }
        let after = &text[START.len()..];
        let rest = after.trim_start();
        let lead = START.len() + (after.len() - rest.len());
        let failed = Some(Piece::Content(START.len()));
        if rest.is_empty() {
            return if at_end { failed } else { None };
        }
        if rest.starts_with('[') {
            return match json_prefix(rest) {
                JsonPrefix::Value(v, n) => match calls_of_array(&v) {
                    Some(calls) => Some(Piece::Calls(lead + n, calls)),
                    None => failed,
                },
                JsonPrefix::Incomplete if !at_end => None,
                _ => failed,
            };
        }
        let Some(k) = rest.find(ARGS) else {
            let name_so_far = rest.trim_end_matches(|c| "[ARGS".contains(c));
            return if at_end || !name_so_far.chars().all(name_char) { failed } else { None };
        };
        let name = &rest[..k];
        if name.is_empty() || !name.chars().all(name_char) {
            return failed;
        }
        let args_text = &rest[k + ARGS.len()..];
        let args = args_text.trim_start();
        if args.is_empty() {
            return if at_end { failed } else { None };
        }
        match json_prefix(args) {
            JsonPrefix::Value(v @ serde_json::Value::Object(_), n) => {
                let len = lead + k + ARGS.len() + (args_text.len() - args.len()) + n;
                Some(Piece::Calls(len, vec![ParsedToolCall { name: name.to_owned(), arguments: v.to_string() }]))
            }
            JsonPrefix::Incomplete if !at_end => None,
            _ => failed,
        }
    }
}

/// The calls of `[{"name": ..., "arguments": {...}}, ...]`; `None` if any element is not one.
fn calls_of_array(v: &serde_json::Value) -> Option<Vec<ParsedToolCall>> {
    let items = v.as_array()?;
    if items.is_empty() {
        return None;
    }
    items.iter().map(|item| call_from_value(item, ARGS_KEYS)).collect()
}
