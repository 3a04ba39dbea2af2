//! SentencePiece-style vocabularies (`tokenizer.ggml.model = "llama"`, e.g. Gemma 3) as a
//! `tokenizers` BPE.
//!
//! llama.cpp's SPM tokenizer (`llm_tokenizer_spm_session`) splits the text (spaces escaped as
//! `▁`, a `▁` prepended when `add_space_prefix`) into characters, then repeatedly merges the
//! adjacent pair whose concatenation is the vocabulary token with the highest score (leftmost
//! first on ties), and spells characters missing from the vocabulary as `<0xNN>` byte tokens.
//! There is no pre-tokenizer: a whole text fragment is one "word".
//!
//! A BPE reproduces that when its merges are every split `(left, right)` of every token into two
//! vocabulary tokens, ranked by the score of the merged token, highest first: this is how
//! Hugging Face's SentencePiece converters derive merges. The one theoretical difference is two
//! different splits of the same token competing at overlapping positions, which llama.cpp breaks
//! by position and the BPE by rank; the golden tests show it does not arise in practice.

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::{DecoderWrapper, NormalizerWrapper};

use super::vocab::{meta_err, GgufVocab, TokenType};
use crate::Result;

/// SentencePiece's word-boundary marker, which stands for a space.
pub const SPACE_MARKER: char = '\u{2581}';

/// Merges implied by a scored vocabulary: every `(left, right)` split of a token into two
/// vocabulary tokens, ordered by the merged token's score (highest first; ties keep vocabulary
/// order), splits of one token ordered by the ids of their parts.
pub fn merges_from_scores(tokens: &[String], scores: &[f32], ids: &Vocab) -> Vec<(String, String)> {
    let mut scored: Vec<(f32, u32, u32, usize)> = Vec::new(); // (score, left id, right id, token)
    for (id, token) in tokens.iter().enumerate() {
        let score = scores.get(id).copied().unwrap_or(0.0);
        let mut local: Vec<(u32, u32)> = Vec::new();
        for (split, _) in token.char_indices().skip(1) {
            let (l, r) = token.split_at(split);
            if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                local.push((li, ri));
            }
        }
        local.sort_unstable();
        scored.extend(local.into_iter().map(|(li, ri)| (score, li, ri, id)));
    }
    // Stable: equal scores keep vocabulary order, as the Python converters' sort does.
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().map(|(_, li, ri, _)| (tokens[li as usize].clone(), tokens[ri as usize].clone())).collect()
}

/// Builds the `tokenizers` pipeline for a SentencePiece-style vocabulary (added tokens are
/// registered by the caller). `add_space_prefix` is llama.cpp's (metadata, default true).
pub fn build(vocab: &GgufVocab, add_space_prefix: bool) -> Result<tokenizers::Tokenizer> {
    if vocab.scores.is_empty() {
        return Err(meta_err("tokenizer.ggml.scores", "missing (needed by SentencePiece vocabularies)"));
    }
    // Later duplicates win, as in llama.cpp's `token_to_id`.
    let ids: Vocab = vocab.tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let merges = merges_from_scores(&vocab.tokens, &vocab.scores, &ids);

    let mut builder = BPE::builder().vocab_and_merges(ids, merges).byte_fallback(true).fuse_unk(true);
    let unk =
        vocab.unk_id.or_else(|| vocab.token_types.iter().position(|t| *t == TokenType::Unknown).map(|i| i as u32));
    if let Some(unk) = unk.and_then(|id| vocab.tokens.get(id as usize)) {
        builder = builder.unk_token(unk.clone());
    }
    let bpe = builder.build()?;

    let marker = SPACE_MARKER.to_string();
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if add_space_prefix {
        normalizers.push(Prepend::new(marker.clone()).into());
    }
    normalizers.push(Replace::new(" ", marker.as_str())?.into());

    let mut decoders: Vec<DecoderWrapper> = vec![
        tokenizers::decoders::DecoderWrapper::Replace(Replace::new(marker.as_str(), " ")?),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }

    let mut tok = tokenizers::Tokenizer::new(bpe);
    tok.with_normalizer(Some(NormalizerSequence::new(normalizers)));
    tok.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_follow_merged_token_scores() {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "bc", "abc"].iter().map(|s| s.to_string()).collect();
        let scores = [0.0, 0.0, 0.0, -2.0, -1.0, -3.0];
        let ids = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let merges = merges_from_scores(&tokens, &scores, &ids);
        let want: Vec<(String, String)> = [("b", "c"), ("a", "b"), ("a", "bc"), ("ab", "c")]
            .iter()
            .map(|(l, r)| (l.to_string(), r.to_string()))
            .collect();
        assert_eq!(merges, want);
    }
}
