//! Token pieces: the exact bytes each token stands for, for streaming detokenisation
//! (llama.cpp's `token_to_piece`). A piece may be part of a UTF-8 character (byte-level BPE
//! pieces and `<0xNN>` byte tokens), so pieces are bytes, not strings.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::gguf_spm::SPACE_MARKER;

/// How a vocabulary spells bytes in its token texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PieceStyle {
    /// GPT-2 byte-level: each byte is one printable character (`Ġ` for a space).
    ByteLevel,
    /// SentencePiece: `▁` for a space, `<0xNN>` tokens for raw bytes.
    SentencePiece,
    /// WordPiece: `##` (the prefix) continues a word, other tokens start a new one.
    WordPiece {
        /// The continuation prefix, usually `##`.
        prefix: String,
    },
    /// Token texts are the text itself.
    Plain,
}

/// GPT-2's byte to printable-character table (`bytes_to_unicode`).
fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        table[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(next).unwrap_or(char::REPLACEMENT_CHARACTER);
            next += 1;
            c
        };
    }
    table
}

/// The inverse of GPT-2's byte table.
fn char_to_byte() -> &'static HashMap<char, u8> {
    static MAP: OnceLock<HashMap<char, u8>> = OnceLock::new();
    MAP.get_or_init(|| byte_to_char().iter().enumerate().map(|(b, c)| (*c, b as u8)).collect())
}

/// Parses a `<0xNN>` byte token.
pub fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// The bytes of an ordinary (non-added) token whose text is `text`, in `style`.
pub fn piece_bytes(style: &PieceStyle, text: &str) -> Vec<u8> {
    match style {
        PieceStyle::ByteLevel => {
            let map = char_to_byte();
            let mut out = Vec::with_capacity(text.len());
            for c in text.chars() {
                match map.get(&c) {
                    Some(b) => out.push(*b),
                    // Not a byte-level character: keep it as UTF-8 rather than fail.
                    None => out.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes()),
                }
            }
            out
        }
        PieceStyle::SentencePiece => match parse_byte_token(text) {
            Some(b) => vec![b],
            None => text.replace(SPACE_MARKER, " ").into_bytes(),
        },
        PieceStyle::WordPiece { prefix } => match text.strip_prefix(prefix.as_str()) {
            Some(rest) => rest.as_bytes().to_vec(),
            None => format!(" {text}").into_bytes(),
        },
        PieceStyle::Plain => text.as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_table_round_trips_every_byte() {
        let table = byte_to_char();
        for b in 0..=255u8 {
            let s = table[b as usize].to_string();
            assert_eq!(piece_bytes(&PieceStyle::ByteLevel, &s), vec![b]);
        }
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'\n' as usize], 'Ċ');
    }

    #[test]
    fn sentencepiece_pieces() {
        assert_eq!(piece_bytes(&PieceStyle::SentencePiece, "<0x0A>"), b"\n");
        assert_eq!(piece_bytes(&PieceStyle::SentencePiece, "▁the"), b" the");
        assert_eq!(parse_byte_token("<0xZZ>"), None);
    }
}
