//! [`Tokenizer`]: text to token ids and back, built from GGUF metadata (reproducing llama.cpp's
//! tokenization exactly) or from a Hugging Face `tokenizer.json`.
//!
//! Under the hood it is a [`tokenizers::Tokenizer`]; what this module adds is the construction
//! from GGUF (`gguf_bpe` for GPT-2 byte-level BPE, `gguf_spm` for SentencePiece-style
//! vocabularies), llama.cpp's view of special tokens (`special`), and byte-exact token pieces
//! for streaming (`piece`, `stream`).
//!
//! Text is always encoded the way llama.cpp does with `parse_special = true`: control and
//! user-defined token texts written in the input (`<|im_start|>`, `<start_of_turn>`, Gemma's
//! whitespace-run tokens) become those single tokens. llama.cpp finds them longest token first,
//! `tokenizers` leftmost-longest; the two can only disagree where the end of one such text is the
//! start of another, and in SmolLM2, Qwen2.5 and Gemma 3 the only such pairs are runs of one
//! character (spaces, tabs, newlines), where both pick the same split.
//!
//! The golden tests (`tests/tokenizer_golden.rs`) hold the result to llama.cpp's own ids.

mod from_file;
mod gguf_bpe;
mod gguf_meta;
mod gguf_spm;
mod piece;
pub mod special;
mod stream;
pub mod vocab;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use ferrite_tensor::gguf::GgufFile;
use tokenizers::AddedToken;

pub use gguf_bpe::{pre_tokenizer_spec, PreTokenizerSpec};
pub use piece::PieceStyle;
pub use special::SpecialTokens;
pub use stream::StreamDecoder;
pub use vocab::{GgufVocab, TokenType, VocabKind};

use crate::{Error, Result};

/// A tokenizer with llama.cpp's special-token semantics.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialTokens,
    /// Per id: the bytes the token stands for.
    pieces: Vec<Box<[u8]>>,
    /// Per id: hidden by `skip_special` / `token_to_piece(.., false)` (control, unknown).
    hidden: Vec<bool>,
    /// GGUF tokenizers add BOS/EOS themselves; `tokenizer.json` ones leave it to the file's
    /// post-processor.
    manual_bos_eos: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("special", &self.special)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes (`tokenizer.ggml.*`).
    pub fn from_gguf(gguf: &GgufFile) -> Result<Tokenizer> {
        Self::from_gguf_vocab(gguf_meta::vocab_from_gguf(gguf)?)
    }

    /// Builds a tokenizer from GGUF vocabulary metadata already read into a [`GgufVocab`].
    pub fn from_gguf_vocab(mut vocab: GgufVocab) -> Result<Tokenizer> {
        vocab.validate()?;
        let n = vocab.tokens.len();
        let in_range = |id: u32| ((id as usize) < n).then_some(id);
        // llama.cpp's defaults when the metadata names no ids.
        let (default_bos, default_eos, default_unk) = match vocab.kind {
            VocabKind::SentencePiece => (Some(1), Some(2), Some(0)),
            VocabKind::Gpt2Bpe => (Some(11), Some(11), None),
        };
        vocab.bos_id = vocab.bos_id.or(default_bos).and_then(in_range);
        vocab.eos_id = vocab.eos_id.or(default_eos).and_then(in_range);
        vocab.unk_id = vocab.unk_id.or(default_unk).and_then(in_range);

        let (mut inner, default_add_bos, style) = match vocab.kind {
            VocabKind::Gpt2Bpe => {
                let (tok, spec) = gguf_bpe::build(&vocab)?;
                (tok, spec.default_add_bos, PieceStyle::ByteLevel)
            }
            VocabKind::SentencePiece => {
                let tok = gguf_spm::build(&vocab, vocab.add_space_prefix.unwrap_or(true))?;
                (tok, true, PieceStyle::SentencePiece)
            }
        };

        let by_text: HashMap<&str, u32> =
            vocab.tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i as u32)).collect();
        let lookup = |text: &str| by_text.get(text).copied();
        let (eot, eog) = special::detect_eog(lookup, vocab.eos_id, vocab.eot_id, vocab.eom_id);
        // llama.cpp upgrades every end-of-generation token to a control token.
        for &id in &eog {
            if let Some(t) = vocab.token_types.get_mut(id as usize) {
                *t = TokenType::Control;
            }
        }

        let added: Vec<AddedToken> = vocab
            .tokens
            .iter()
            .zip(&vocab.token_types)
            .filter(|(text, ty)| ty.is_matched_in_text() && !text.is_empty())
            .map(|(text, ty)| AddedToken::from(text.clone(), ty.is_special()).normalized(false))
            .collect();
        inner.add_tokens(&added);

        let pieces = vocab
            .tokens
            .iter()
            .zip(&vocab.token_types)
            .map(|(text, ty)| match ty {
                TokenType::Control | TokenType::UserDefined | TokenType::Unknown => text.as_bytes().into(),
                _ => piece::piece_bytes(&style, text).into_boxed_slice(),
            })
            .collect();
        let hidden = vocab.token_types.iter().map(|t| t.is_special()).collect();
        let special = SpecialTokens {
            bos: vocab.bos_id,
            eos: vocab.eos_id,
            eot,
            pad: vocab.pad_id.and_then(in_range),
            unk: vocab.unk_id,
            eog,
            add_bos: vocab.add_bos.unwrap_or(default_add_bos) && vocab.bos_id.is_some(),
            add_eos: vocab.add_eos.unwrap_or(false) && vocab.eos_id.is_some(),
        };
        Ok(Tokenizer { inner, special, pieces, hidden, manual_bos_eos: true })
    }

    /// Loads a Hugging Face `tokenizer.json`, with an optional `tokenizer_config.json` naming
    /// the BOS/EOS/pad tokens. Padding and truncation set in the file are turned off: `encode`
    /// returns exactly the tokens of the text (callers enforce a model's maximum length).
    pub fn from_file(tokenizer_json: &Path, tokenizer_config: Option<&Path>) -> Result<Tokenizer> {
        from_file::load(tokenizer_json, tokenizer_config)
    }

    /// Text to token ids. With `add_special`, BOS and/or EOS are added as the model's metadata
    /// asks (for `tokenizer.json`, as its post-processor does). Special-token texts in `text`
    /// are always recognised as single tokens.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let hf_special = add_special && !self.manual_bos_eos;
        let enc = self.inner.encode_fast(text, hf_special)?;
        let ids = enc.get_ids();
        if !(add_special && self.manual_bos_eos) {
            return Ok(ids.to_vec());
        }
        let mut out = Vec::with_capacity(ids.len() + 2);
        if let (true, Some(bos)) = (self.special.add_bos, self.special.bos) {
            out.push(bos);
        }
        out.extend_from_slice(ids);
        if let (true, Some(eos)) = (self.special.add_eos, self.special.eos) {
            out.push(eos);
        }
        Ok(out)
    }

    /// Token ids to text. With `skip_special`, control tokens (`<|im_end|>`, `<bos>`) are left
    /// out; user-defined tokens are always kept. Invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        for &id in ids {
            self.check(id)?;
        }
        Ok(self.inner.decode(ids, skip_special)?)
    }

    /// The exact bytes token `id` stands for, for streaming: concatenating the pieces of a
    /// sequence gives its text's bytes (a piece may be part of a UTF-8 character; see
    /// [`StreamDecoder`]). Control tokens give their text when `special`, else nothing.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Result<&[u8]> {
        self.check(id)?;
        let i = id as usize;
        if !special && self.hidden.get(i).copied().unwrap_or(false) {
            return Ok(&[]);
        }
        Ok(self.pieces.get(i).map(|p| &p[..]).unwrap_or(&[]))
    }

    /// A streaming detokeniser over this tokenizer's pieces.
    pub fn stream_decoder(&self, skip_special: bool) -> StreamDecoder<'_> {
        StreamDecoder::new(self, skip_special)
    }

    /// The token's text as stored in the vocabulary (`Ġthe`, `▁the`, `<|im_end|>`).
    pub fn token_str(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of a token text as stored in the vocabulary.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.inner.token_to_id(text)
    }

    /// The number of token ids (the model's embedding rows for GGUF vocabularies).
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// Whether generating `id` ends generation (EOS, end of turn, and the other tokens llama.cpp
    /// treats so).
    pub fn is_eog(&self, id: u32) -> bool {
        self.special.eog.contains(&id)
    }

    /// Every end-of-generation id.
    pub fn eog_ids(&self) -> &BTreeSet<u32> {
        &self.special.eog
    }

    /// Whether `id` is a control (or unknown) token, hidden when decoding with `skip_special`.
    pub fn is_control(&self, id: u32) -> bool {
        self.hidden.get(id as usize).copied().unwrap_or(false)
    }

    /// The special ids and BOS/EOS policy.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// Beginning-of-sequence id.
    pub fn bos_id(&self) -> Option<u32> {
        self.special.bos
    }

    /// End-of-sequence id.
    pub fn eos_id(&self) -> Option<u32> {
        self.special.eos
    }

    /// End-of-turn id.
    pub fn eot_id(&self) -> Option<u32> {
        self.special.eot
    }

    /// Padding id.
    pub fn pad_id(&self) -> Option<u32> {
        self.special.pad
    }

    /// Whether `encode(.., true)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.special.add_bos
    }

    /// Whether `encode(.., true)` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.special.add_eos
    }

    /// The underlying `tokenizers` pipeline.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    fn check(&self, id: u32) -> Result<()> {
        if (id as usize) < self.pieces.len() {
            Ok(())
        } else {
            Err(Error::TokenOutOfRange { id, vocab_size: self.pieces.len() })
        }
    }
}
