//! Qwen2.5 / Hermes tool calls: `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`.
//!
//! Each call is its own block; text outside blocks is content. A block whose body is not a call
//! object stays content. A block left open at the end of the output (the model stopped before
//! `</tool_call>`) is still a call when its body is a complete call object.

use super::{call_from_value, content_before, json_prefix, JsonPrefix, Piece, Scanner};

/// Opens a call.
pub const START: &str = "<tool_call>";
/// Closes a call.
pub const END: &str = "</tool_call>";

/// The keys the arguments may come under (`parameters`: some fine-tunes write Llama's name).
const ARGS_KEYS: &[&str] = &["arguments", "parameters"];

/// The [`Scanner`] of the Hermes format.
#[derive(Debug, Default)]
pub struct HermesScanner;

impl Scanner for HermesScanner {
    fn next(&mut self, text: &str, at_end: bool) -> Option<Piece> {
        if let Some(piece) = content_before(text, START, at_end) {
            return piece;
        }
        let body = &text[START.len()..];
        match body.find(END) {
            Some(j) => {
                let len = START.len() + j + END.len();
                Some(match whole_call(&body[..j]) {
                    Some(call) => Piece::Calls(len, vec![call]),
                    None => Piece::Content(START.len()),
                })
            }
            None if at_end => Some(match whole_call(body) {
                Some(call) => Piece::Calls(text.len(), vec![call]),
                None => Piece::Content(START.len()),
            }),
            None => {
                // Give up early when the body can no longer become a call.
                let trimmed = body.trim_start();
                let hopeless = !trimmed.is_empty()
                    && (!trimmed.starts_with('{') || matches!(json_prefix(trimmed), JsonPrefix::Invalid));
                hopeless.then_some(Piece::Content(START.len()))
            }
        }
    }
}

/// The call a block body holds: one JSON object, surrounded by whitespace only.
fn whole_call(body: &str) -> Option<super::ParsedToolCall> {
    let trimmed = body.trim();
    match json_prefix(trimmed) {
        JsonPrefix::Value(v, n) if n == trimmed.len() => call_from_value(&v, ARGS_KEYS),
        _ => None,
    }
}
