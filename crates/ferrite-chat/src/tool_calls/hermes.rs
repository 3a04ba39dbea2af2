//! Qwen2.5 / Hermes tool calls: `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`.
//!
//! Each call is its own block; text outside blocks is content. A block whose body is not a call
//! object stays content. A block left open at the end of the output (the model stopped before
//! `</tool_call>`) is still a call when its body is a complete call object.
//!
//! Small models often leave the markers out and answer with the bare call object (greedy
//! Qwen2.5-Coder-0.5B-Instruct writes `{"name": "get_current_weather", "arguments": {...}}` for
//! the weather question). As llama.cpp's Hermes parser does, a call object where a call may
//! start (at the start of the output or right after another call, after whitespace) is a call
//! too; any other JSON or text there is content.

use super::{call_from_value, content_before, json_prefix, JsonPrefix, Piece, Scanner};

/// Opens a call.
pub const START: &str = "<tool_call>";
/// Closes a call.
pub const END: &str = "</tool_call>";

/// The keys the arguments may come under (`parameters`: some fine-tunes write Llama's name).
const ARGS_KEYS: &[&str] = &["arguments", "parameters"];

/// The [`Scanner`] of the Hermes format; it remembers whether a bare call object may start.
#[derive(Debug)]
pub struct HermesScanner {
    bare_call_may_start: bool,
}

impl Default for HermesScanner {
    fn default() -> Self {
        HermesScanner { bare_call_may_start: true }
    }
}

impl Scanner for HermesScanner {
    fn next(&mut self, text: &str, at_end: bool) -> Option<Piece> {
        let piece = self.next_piece(text, at_end);
        if let Some(p) = &piece {
            self.bare_call_may_start = matches!(p, Piece::Calls(..));
        }
        piece
    }
}

impl HermesScanner {
    fn next_piece(&mut self, text: &str, at_end: bool) -> Option<Piece> {
        if self.bare_call_may_start {
            let rest = text.trim_start();
            if rest.is_empty() {
                return at_end.then_some(Piece::Content(text.len()));
            }
            if rest.starts_with('{') {
                let lead = text.len() - rest.len();
                return match json_prefix(rest) {
                    JsonPrefix::Value(v, n) => Some(match call_from_value(&v, ARGS_KEYS) {
                        Some(call) => Piece::Calls(lead + n, vec![call]),
                        None => Piece::Content(lead + n),
                    }),
                    JsonPrefix::Incomplete if !at_end => None,
                    _ => Some(Piece::Content(lead + 1)),
                };
            }
        }
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
