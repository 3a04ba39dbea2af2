//! [`ToolCallParser`]: a format's [`Scanner`] driven over streamed text, and [`parse`] for a
//! whole output.

use super::{ParsedToolCall, Piece, Scanner, ToolCallFormat};

/// What the parser yields: content text or a complete call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolOutput {
    /// Text for the message's `content`.
    Content(String),
    /// A complete tool call.
    Call(ParsedToolCall),
}

/// An incremental tool-call parser: feed it text deltas with [`push`](Self::push), then call
/// [`finish`](Self::finish) once; it returns content and calls as soon as they are certain.
///
/// Whitespace between content and a call (and between calls) is dropped: content that ends in
/// whitespace keeps that whitespace back until more content follows; at the end it is emitted
/// only if no call was made.
pub struct ToolCallParser {
    scanner: Box<dyn Scanner + Send>,
    buf: String,
    pending_ws: String,
    after_call: bool,
    calls: usize,
    max_calls: usize,
}

impl std::fmt::Debug for ToolCallParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolCallParser").field("buffered", &self.buf.len()).field("calls", &self.calls).finish()
    }
}

impl ToolCallParser {
    /// A parser for `format`, keeping every call.
    pub fn new(format: ToolCallFormat) -> Self {
        ToolCallParser {
            scanner: format.scanner(),
            buf: String::new(),
            pending_ws: String::new(),
            after_call: false,
            calls: 0,
            max_calls: usize::MAX,
        }
    }

    /// Keeps at most `max` calls (`parallel_tool_calls: false` is 1); later ones are dropped.
    pub fn with_max_calls(mut self, max: usize) -> Self {
        self.max_calls = max;
        self
    }

    /// How many calls have been yielded so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// Takes the next text delta; returns what became certain.
    pub fn push(&mut self, delta: &str) -> Vec<ToolOutput> {
        self.buf.push_str(delta);
        self.drain(false)
    }

    /// Ends the text; returns the rest.
    pub fn finish(&mut self) -> Vec<ToolOutput> {
        let mut out = self.drain(true);
        if self.calls == 0 && !self.pending_ws.is_empty() {
            let ws = std::mem::take(&mut self.pending_ws);
            push_content(&mut out, &ws);
        }
        self.pending_ws.clear();
        out
    }

    fn drain(&mut self, at_end: bool) -> Vec<ToolOutput> {
        let mut out = Vec::new();
        let mut start = 0;
        while start < self.buf.len() {
            let text = &self.buf[start..];
            let Some(piece) = self.scanner.next(text, at_end) else { break };
            let n = match &piece {
                Piece::Content(n) | Piece::Skip(n) | Piece::Calls(n, _) => *n,
            };
            // A scanner breaking its contract must not make us loop or panic: take the rest.
            let n = if n == 0 || n > text.len() || !text.is_char_boundary(n) { text.len() } else { n };
            match piece {
                Piece::Content(_) => {
                    let content = text[..n].to_owned();
                    self.content(&mut out, &content);
                }
                Piece::Skip(_) => {}
                Piece::Calls(_, calls) => {
                    for call in calls {
                        self.pending_ws.clear();
                        self.after_call = true;
                        if self.calls < self.max_calls {
                            out.push(ToolOutput::Call(call));
                        }
                        self.calls += 1;
                    }
                }
            }
            start += n;
        }
        self.buf.drain(..start);
        out
    }

    fn content(&mut self, out: &mut Vec<ToolOutput>, text: &str) {
        let mut text = text;
        if self.after_call {
            text = text.trim_start();
            if text.is_empty() {
                return;
            }
            self.after_call = false;
        }
        let body = text.trim_end();
        if body.is_empty() {
            self.pending_ws.push_str(text);
            return;
        }
        let ws = std::mem::take(&mut self.pending_ws);
        push_content(out, &ws);
        push_content(out, body);
        self.pending_ws.push_str(&text[body.len()..]);
    }
}

fn push_content(out: &mut Vec<ToolOutput>, text: &str) {
    if text.is_empty() {
        return;
    }
    if let Some(ToolOutput::Content(last)) = out.last_mut() {
        last.push_str(text);
    } else {
        out.push(ToolOutput::Content(text.to_owned()));
    }
}

/// The content and calls of a whole output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedOutput {
    /// The text outside tool calls.
    pub content: String,
    /// The calls, in order.
    pub calls: Vec<ParsedToolCall>,
}

/// Parses a whole output written in `format` (the streaming parser fed everything at once).
pub fn parse(format: ToolCallFormat, text: &str) -> ParsedOutput {
    let mut parser = ToolCallParser::new(format);
    let mut items = parser.push(text);
    items.extend(parser.finish());
    let mut parsed = ParsedOutput::default();
    for item in items {
        match item {
            ToolOutput::Content(c) => parsed.content.push_str(&c),
            ToolOutput::Call(c) => parsed.calls.push(c),
        }
    }
    parsed
}
