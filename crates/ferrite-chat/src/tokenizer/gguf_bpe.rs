//! GPT-2 style byte-level BPE (`tokenizer.ggml.model = "gpt2"`) as a `tokenizers` pipeline:
//! llama.cpp's pre-tokenizer regexes, applied one after the other as `Split` (isolated)
//! pre-tokenizers, then the byte-to-unicode mapping, then BPE with the GGUF merges ranked in
//! file order.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior};

use super::vocab::{meta_err, GgufVocab};
use crate::{Error, Result};

/// GPT-2's own regex (llama.cpp `LLAMA_VOCAB_PRE_TYPE_GPT2`).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// Qwen2's regex (llama.cpp `LLAMA_VOCAB_PRE_TYPE_QWEN2`): case-insensitive contractions,
/// letters with one leading non-letter, single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Llama 3's regex (llama.cpp `LLAMA_VOCAB_PRE_TYPE_LLAMA3`): as Qwen2 but digits in threes.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// What a `tokenizer.ggml.pre` name means to llama.cpp's BPE tokenizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreTokenizerSpec {
    /// The regexes applied one after the other, each splitting the pieces of the previous one.
    pub regexes: Vec<&'static str>,
    /// Whether a whole pre-token that is in the vocabulary is taken as is, skipping the merges.
    pub ignore_merges: bool,
    /// llama.cpp's `add_bos` default for this family (the metadata key overrides it).
    pub default_add_bos: bool,
}

/// The llama.cpp pre-tokenizer for a `tokenizer.ggml.pre` name.
///
/// Only the families below are implemented; `smollm` and `qwen2` are proven against
/// llama.cpp by the golden tests, the other names share exactly their llama.cpp settings with
/// one of those or with plain GPT-2 / Llama 3.
pub fn pre_tokenizer_spec(pre: &str) -> Result<PreTokenizerSpec> {
    let (regexes, ignore_merges, default_add_bos) = match pre {
        // LLAMA_VOCAB_PRE_TYPE_STARCODER and friends: each digit alone, then GPT-2.
        "smollm" | "starcoder" | "refact" | "command-r" => (vec![r"\p{N}", GPT2], false, false),
        "qwen2" | "deepseek-r1-qwen" | "stablelm2" => (vec![QWEN2], false, false),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => (vec![LLAMA3], true, true),
        "gpt-2" | "phi-2" | "mpt" | "olmo" => (vec![GPT2], false, false),
        other => return Err(Error::Unsupported(format!("tokenizer.ggml.pre = {other:?} (GPT-2 BPE)"))),
    };
    Ok(PreTokenizerSpec { regexes, ignore_merges, default_add_bos })
}

/// The pre-tokenizer: each regex as an isolating `Split`, then the byte-level mapping.
pub fn pre_tokenizer(spec: &PreTokenizerSpec) -> Result<PreTokenizerWrapper> {
    let mut steps: Vec<PreTokenizerWrapper> = Vec::new();
    for re in &spec.regexes {
        let split = Split::new(SplitPattern::Regex(re.to_string()), SplitDelimiterBehavior::Isolated, false)?;
        steps.push(split.into());
    }
    steps.push(ByteLevel::new(false, false, false).into());
    Ok(Sequence::new(steps).into())
}

/// Splits a GGUF merge line `"left right"` where llama.cpp does (the first space after the
/// first byte, so a left part that is itself a space survives).
fn split_merge(line: &str) -> Option<(String, String)> {
    let first_len = line.chars().next()?.len_utf8();
    let pos = line[first_len..].find(' ')? + first_len;
    Some((line[..pos].to_string(), line[pos + 1..].to_string()))
}

/// Builds the `tokenizers` pipeline for a GPT-2 BPE vocabulary (added tokens are registered
/// by the caller), with the pre-tokenizer spec it used.
pub fn build(vocab: &GgufVocab) -> Result<(tokenizers::Tokenizer, PreTokenizerSpec)> {
    let pre = vocab.pre.as_deref().unwrap_or("default");
    let spec = pre_tokenizer_spec(pre)?;
    let ids: Vocab = vocab.tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();

    let mut merges = Vec::with_capacity(vocab.merges.len());
    let mut seen = std::collections::HashSet::with_capacity(vocab.merges.len());
    for (i, line) in vocab.merges.iter().enumerate() {
        let pair = split_merge(line)
            .ok_or_else(|| meta_err("tokenizer.ggml.merges", &format!("entry {i} {line:?} has no space")))?;
        // llama.cpp keeps the first rank of a repeated pair; `tokenizers` would keep the last.
        if seen.insert(pair.clone()) {
            merges.push(pair);
        }
    }
    if merges.is_empty() {
        return Err(meta_err("tokenizer.ggml.merges", "missing or empty (needed by GPT-2 BPE)"));
    }

    let bpe = BPE::builder().vocab_and_merges(ids, merges).ignore_merges(spec.ignore_merges).build()?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(pre_tokenizer(&spec)?));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    Ok((tok, spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_lines_split_like_llama_cpp() {
        assert_eq!(split_merge("Ġ t"), Some(("Ġ".into(), "t".into())));
        assert_eq!(split_merge("  x"), Some((" ".into(), "x".into())));
        assert_eq!(split_merge("ab"), None);
    }

    #[test]
    fn unknown_pre_tokenizer_is_an_error() {
        assert!(pre_tokenizer_spec("no-such-pre").is_err());
        assert!(pre_tokenizer_spec("default").is_err());
        for pre in ["smollm", "qwen2", "llama-bpe", "gpt-2"] {
            let spec = pre_tokenizer_spec(pre).expect("known pre-tokenizer");
            assert!(pre_tokenizer(&spec).is_ok(), "{pre} regexes compile");
        }
    }
}
