//! Detokenised streaming of one choice: whole UTF-8 characters only, and stop strings found
//! across token boundaries without ever emitting them.

/// The text of one choice as it grows.
#[derive(Debug, Default)]
pub(crate) struct TextState {
    /// Bytes of an incomplete UTF-8 character at the end.
    pending: Vec<u8>,
    /// All complete text so far.
    text: String,
    /// Bytes of `text` already emitted.
    sent: usize,
}

/// What adding a token produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Step {
    /// Text that is final now.
    pub emit: String,
    /// A stop string was found (the text was cut before it).
    pub stopped: bool,
}

impl TextState {
    /// Adds a token's bytes; returns the text that can be emitted. Text that could still turn
    /// out to be the start of a stop string is held back.
    pub fn push(&mut self, piece: &[u8], stops: &[String]) -> Step {
        let search_from = floor_char(&self.text, self.text.len().saturating_sub(max_len(stops)));
        self.pending.extend_from_slice(piece);
        self.move_complete();
        // The earliest stop string that ends in the new text.
        let found = stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.text[search_from..].find(s.as_str()).map(|p| p + search_from))
            .min();
        if let Some(at) = found {
            self.text.truncate(at.max(self.sent));
            self.pending.clear();
            let emit = self.text[self.sent..].to_string();
            self.sent = self.text.len();
            return Step { emit, stopped: true };
        }
        let hold = held_back(&self.text[self.sent..], stops);
        let end = self.text.len() - hold;
        let emit = self.text[self.sent..end].to_string();
        self.sent = end;
        Step { emit, stopped: false }
    }

    /// Everything not yet emitted (the choice ended for another reason than a stop string);
    /// an incomplete character becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let mut rest = self.text[self.sent..].to_string();
        rest.push_str(&String::from_utf8_lossy(&self.pending));
        self.pending.clear();
        self.text.push_str(&rest[self.text.len() - self.sent..]);
        self.sent = self.text.len();
        rest
    }

    fn move_complete(&mut self) {
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    self.text.push_str(s);
                    self.pending.clear();
                    return;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    self.text.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        None => {
                            self.pending.drain(..valid);
                            return;
                        }
                        Some(bad) => {
                            self.text.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }
}

fn max_len(stops: &[String]) -> usize {
    stops.iter().map(String::len).max().unwrap_or(0)
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Bytes at the end of `unsent` that are a proper prefix of some stop string.
fn held_back(unsent: &str, stops: &[String]) -> usize {
    let longest = max_len(stops).saturating_sub(1).min(unsent.len());
    (1..=longest)
        .rev()
        .find(|&k| {
            let start = unsent.len() - k;
            unsent.is_char_boundary(start) && stops.iter().any(|s| s.len() > k && s.starts_with(&unsent[start..]))
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pieces: &[&[u8]], stops: &[&str]) -> (Vec<String>, bool, String) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut t = TextState::default();
        let mut out = Vec::new();
        for p in pieces {
            let s = t.push(p, &stops);
            out.push(s.emit);
            if s.stopped {
                return (out, true, t.text.clone());
            }
        }
        out.push(t.finish());
        (out, false, t.text.clone())
    }

    #[test]
    fn stop_string_split_across_tokens_is_never_emitted() {
        let (out, stopped, text) = run(&[b"Hello", b" wor", b"ld", b"!"], &["world"]);
        assert!(stopped);
        assert_eq!(text, "Hello ");
        assert_eq!(out.concat(), "Hello ");
        assert!(out.iter().all(|o| !o.contains("wor")), "{out:?}");
    }

    #[test]
    fn prefix_is_held_only_while_it_can_still_match() {
        let (out, stopped, _) = run(&[b"ab", b"<", b"x"], &["<end>"]);
        assert!(!stopped);
        assert_eq!(out, vec!["ab", "", "<x", ""]);
    }

    #[test]
    fn earliest_stop_wins_and_stop_inside_one_token() {
        let (out, stopped, _) = run(&[b"one. two\n\nthree"], &["\n\n", "."]);
        assert!(stopped);
        assert_eq!(out.concat(), "one");
    }

    #[test]
    fn utf8_split_over_tokens_comes_out_whole() {
        let e = "é".as_bytes();
        let crab = "🦀".as_bytes();
        let (out, _, text) = run(&[&e[..1], &e[1..], &crab[..2], &crab[2..3], &crab[3..]], &[]);
        assert_eq!(out, vec!["", "é", "", "", "🦀", ""]);
        assert_eq!(text, "é🦀");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let (out, _, _) = run(&[b"a\xff", b"b", b"\xe2\x82"], &[]);
        assert_eq!(out.concat(), "a\u{FFFD}b\u{FFFD}");
    }

    #[test]
    fn multibyte_stop_strings() {
        let (out, stopped, _) = run(&["日本".as_bytes(), "語です".as_bytes()], &["語で"]);
        assert!(stopped);
        assert_eq!(out.concat(), "日本");
    }
}
