//! [`StreamDecoder`]: token ids in, text out as soon as it is whole UTF-8.

use super::Tokenizer;
use crate::Result;

/// Turns a stream of generated token ids into text chunks. Bytes that end in the middle of a
/// UTF-8 character are held back until the character is complete, so every chunk is valid
/// text and the chunks concatenate to the decoded sequence.
#[derive(Debug)]
pub struct StreamDecoder<'t> {
    tokenizer: &'t Tokenizer,
    skip_special: bool,
    pending: Vec<u8>,
}

impl<'t> StreamDecoder<'t> {
    /// A decoder that hides control tokens when `skip_special`.
    pub fn new(tokenizer: &'t Tokenizer, skip_special: bool) -> Self {
        StreamDecoder { tokenizer, skip_special, pending: Vec::new() }
    }

    /// Adds one token; returns the text that became complete (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        let piece = self.tokenizer.token_to_piece(id, !self.skip_special)?;
        self.pending.extend_from_slice(piece);
        Ok(self.take_complete())
    }

    /// Ends the stream: whatever is held back, invalid bytes as U+FFFD.
    pub fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }

    fn take_complete(&mut self) -> String {
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // Safe split: the prefix is valid UTF-8 by construction.
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        // Invalid bytes in the middle can never become valid.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }
}
