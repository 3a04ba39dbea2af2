//! Llama 3.x JSON tool calls: the answer is `{"name": ..., "parameters": {...}}` (the Llama 3.1
//! and 3.2 templates ask for this), possibly after `<|python_tag|>`, with several calls separated
//! by `;`.
//!
//! A call is recognised only where the model starts one: at the very start of the output
//! (after whitespace) when it begins with `{`, or right after `<|python_tag|>`. A JSON value
//! there that is not a call object, or text that is not JSON, is content, and so is everything
//! after the calls that is not another call.

use super::{call_from_value, content_before, json_prefix, JsonPrefix, Piece, Scanner};

/// The token Llama 3.1 writes before a tool call.
pub const PYTHON_TAG: &str = "<|python_tag|>";

const ARGS_KEYS: &[&str] = &["parameters", "arguments"];

/// The [`Scanner`] of the Llama 3 JSON format; it remembers whether the output has begun and
/// whether it is inside a run of calls.
#[derive(Debug, Default)]
pub struct Llama3Scanner {
    started: bool,
    in_calls: bool,
}

impl Scanner for Llama3Scanner {
    fn next(&mut self, text: &str, at_end: bool) -> Option<Piece> {
        if self.in_calls {
            return self.next_call(text, at_end);
        }
        if !self.started {
            let rest = text.trim_start();
            if rest.is_empty() {
                return at_end.then_some(Piece::Content(text.len()));
            }
            if rest.starts_with('{') {
                self.started = true;
                self.in_calls = true;
                return self.next_call(text, at_end);
            }
            if !at_end && PYTHON_TAG.starts_with(rest) {
                return None;
            }
            self.started = true;
        }
        match content_before(text, PYTHON_TAG, at_end) {
            Some(piece) => piece,
            None => {
                self.in_calls = true;
                Some(Piece::Skip(PYTHON_TAG.len()))
            }
        }
    }
}

impl Llama3Scanner {
    /// Inside a run of calls: separators are skipped, a call object is a call, anything else
    /// ends the run (and is then scanned as content).
    fn next_call(&mut self, text: &str, at_end: bool) -> Option<Piece> {
        let rest = text.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if rest.len() < text.len() {
            return Some(Piece::Skip(text.len() - rest.len()));
        }
        if !rest.starts_with('{') {
            self.in_calls = false;
            return self.next(text, at_end);
        }
        match json_prefix(rest) {
            JsonPrefix::Value(v, n) => match call_from_value(&v, ARGS_KEYS) {
                Some(call) => Some(Piece::Calls(n, vec![call])),
                None => {
                    self.in_calls = false;
                    Some(Piece::Content(n))
                }
            },
            JsonPrefix::Incomplete if !at_end => None,
            _ => {
                self.in_calls = false;
                Some(Piece::Content(1))
            }
        }
    }
}
