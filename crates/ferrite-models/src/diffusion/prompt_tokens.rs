//! [`PromptTokenizer`]: prompts to the padded token ids FLUX's text encoders read.
//!
//! diffusers' FluxPipeline calls both tokenizers with `padding="max_length"`,
//! `max_length=L`, `truncation=True` (CLIP with `L = model_max_length = 77`, T5 with
//! `L = max_sequence_length`): the prompt's tokens are cut to `L` minus the special tokens the
//! post-processor adds (CLIP's `<|startoftext|>` and `<|endoftext|>`, T5's `</s>`), the special
//! tokens are added, and the row is padded on the right to `L` with the pad token
//! (`<|endoftext|>` for CLIP, `<pad>` = 0 for T5). A `tokenizer.json` may carry its own padding
//! and truncation settings; they are switched off at load and applied here explicitly.
//!
//! The real FLUX.1 `tokenizer/` folder has no `tokenizer.json`, only `vocab.json` and
//! `merges.txt`: such a folder gets the tokenizer transformers' `CLIPTokenizerFast` builds from
//! those two files.

use std::path::Path;

use serde_json::Value;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Lowercase, Replace, Sequence as NormalizerSequence, NFC};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{
    AddedToken, PostProcessor, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer, TruncationDirection,
};

use crate::{Error, Result};

/// CLIP's pre-tokenization pattern (transformers' `CLIPTokenizer.pat`).
const CLIP_SPLIT: &str = r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
const CLIP_BOS: &str = "<|startoftext|>";
const CLIP_EOS: &str = "<|endoftext|>";

/// A diffusers `tokenizer/` (CLIP) or `tokenizer_2/` (T5) folder.
pub struct PromptTokenizer {
    tok: Tokenizer,
    pad_id: u32,
    model_max_length: usize,
    /// Special tokens the post-processor adds to one sequence.
    added: usize,
}

impl std::fmt::Debug for PromptTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptTokenizer")
            .field("pad_id", &self.pad_id)
            .field("model_max_length", &self.model_max_length)
            .finish()
    }
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    let json = serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    Ok(Some(json))
}

/// A special token as tokenizer configs write it: a string or an `AddedToken` object.
fn token_text(v: &Value) -> Option<&str> {
    v.as_str().or_else(|| v.get("content").and_then(Value::as_str))
}

fn tokenizer_error(dir: &Path, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("tokenizer in {}: {e}", dir.display()))
}

impl PromptTokenizer {
    /// Loads `dir`: `tokenizer.json` (or, for CLIP, `vocab.json` + `merges.txt`), with the pad
    /// token and `model_max_length` from `tokenizer_config.json` / `special_tokens_map.json`.
    pub fn load(dir: &Path) -> Result<PromptTokenizer> {
        let config = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
        let special = read_json(&dir.join("special_tokens_map.json"))?.unwrap_or(Value::Null);
        let json_file = dir.join("tokenizer.json");
        let mut tok = if json_file.is_file() {
            Tokenizer::from_file(&json_file).map_err(|e| tokenizer_error(dir, e))?
        } else if dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file() {
            clip_from_vocab(dir)?
        } else {
            return Err(Error::Config(format!(
                "{} has neither tokenizer.json nor vocab.json + merges.txt",
                dir.display()
            )));
        };
        tok.with_truncation(None).map_err(|e| tokenizer_error(dir, e))?;
        tok.with_padding(None);

        let pad = [&config, &special]
            .iter()
            .find_map(|j| j.get("pad_token").and_then(token_text))
            .ok_or_else(|| Error::Config(format!("{}: no pad_token in the tokenizer config", dir.display())))?;
        let pad_id = tok
            .token_to_id(pad)
            .ok_or_else(|| Error::Config(format!("{}: pad token `{pad}` is not in the vocabulary", dir.display())))?;
        // Some configs write an effectively unbounded 1e30 here.
        let model_max_length = config
            .get("model_max_length")
            .and_then(Value::as_f64)
            .filter(|&m| m >= 1.0)
            .map_or(usize::MAX, |m| if m >= usize::MAX as f64 { usize::MAX } else { m as usize });
        let added = tok.get_post_processor().map_or(0, |p| p.added_tokens(false));
        Ok(PromptTokenizer { tok, pad_id, model_max_length, added })
    }

    /// The tokenizer's `model_max_length` (77 for CLIP; `usize::MAX` when the config has none).
    pub fn model_max_length(&self) -> usize {
        self.model_max_length
    }

    /// The id rows are padded with.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// One row of exactly `max_len` ids per prompt, as transformers gives them for
    /// `padding="max_length", max_length=max_len, truncation=True`.
    pub fn encode(&self, prompts: &[&str], max_len: usize) -> Result<Vec<Vec<u32>>> {
        if max_len <= self.added {
            return Err(Error::Config(format!(
                "max_len {max_len} leaves no room beside the {} special tokens",
                self.added
            )));
        }
        prompts
            .iter()
            .map(|prompt| {
                let tokenize = |e: tokenizers::Error| Error::Config(format!("tokenizing `{prompt}`: {e}"));
                let mut enc = self.tok.encode(*prompt, false).map_err(tokenize)?;
                enc.truncate(max_len - self.added, 0, TruncationDirection::Right);
                let enc = self.tok.post_process(enc, None, true).map_err(tokenize)?;
                let mut ids = enc.get_ids().to_vec();
                ids.resize(max_len, self.pad_id);
                Ok(ids)
            })
            .collect()
    }
}

/// The CLIP tokenizer transformers' `CLIPTokenizerFast` converts `vocab.json` + `merges.txt`
/// into: NFC, whitespace runs to one space, lowercase; CLIP's split pattern then byte-level
/// pieces; BPE with `</w>` ending each word; `<|startoftext|> $A <|endoftext|>`.
fn clip_from_vocab(dir: &Path) -> Result<Tokenizer> {
    let err = |e: tokenizers::Error| tokenizer_error(dir, e);
    let vocab = dir.join("vocab.json");
    let merges = dir.join("merges.txt");
    let bpe = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
        .unk_token(CLIP_EOS.into())
        .end_of_word_suffix("</w>".into())
        .build()
        .map_err(err)?;
    let mut tok = Tokenizer::new(bpe);
    let whitespace =
        Replace::new(tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()), " ").map_err(err)?;
    tok.with_normalizer(Some(NormalizerSequence::new(vec![NFC.into(), whitespace.into(), Lowercase.into()])));
    let split =
        Split::new(SplitPattern::Regex(CLIP_SPLIT.into()), SplitDelimiterBehavior::Removed, true).map_err(err)?;
    tok.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
        PreTokenizerWrapper::Split(split),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)),
    ])));
    tok.with_decoder(Some(tokenizers::decoders::bpe::BPEDecoder::new("</w>".into())));
    let id = |t: &str| {
        tok.token_to_id(t).ok_or_else(|| Error::Config(format!("{}: `{t}` is not in vocab.json", dir.display())))
    };
    let (bos, eos) = (id(CLIP_BOS)?, id(CLIP_EOS)?);
    tok.with_post_processor(Some(
        RobertaProcessing::new((CLIP_EOS.into(), eos), (CLIP_BOS.into(), bos))
            .trim_offsets(false)
            .add_prefix_space(false),
    ));
    tok.add_special_tokens(&[AddedToken::from(CLIP_BOS, true), AddedToken::from(CLIP_EOS, true)]);
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway folder with a word-level `tokenizer.json` that carries its own padding and
    /// truncation (which `load` must ignore) and a T5-style `$A </s>` post-processor.
    fn word_level_folder(name: &str, config: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ferrite-prompt-tokens-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let tokenizer = r#"{
          "version": "1.0",
          "truncation": {"direction": "Right", "max_length": 3, "strategy": "LongestFirst", "stride": 0},
          "padding": {"strategy": "BatchLongest", "direction": "Left", "pad_to_multiple_of": null,
                      "pad_id": 2, "pad_type_id": 0, "pad_token": "<unk>"},
          "added_tokens": [
            {"id": 0, "content": "<pad>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 1, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
          ],
          "normalizer": null,
          "pre_tokenizer": {"type": "Whitespace"},
          "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}}],
            "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}
          },
          "decoder": null,
          "model": {"type": "WordLevel", "vocab": {"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3, "b": 4, "c": 5, "d": 6},
                    "unk_token": "<unk>"}
        }"#;
        std::fs::write(dir.join("tokenizer.json"), tokenizer).expect("write tokenizer.json");
        std::fs::write(dir.join("tokenizer_config.json"), config).expect("write tokenizer_config.json");
        dir
    }

    #[test]
    fn pads_and_truncates_to_max_len_with_the_end_token_kept() {
        let dir = word_level_folder("t5", r#"{"pad_token": "<pad>", "model_max_length": 512}"#);
        let tok = PromptTokenizer::load(&dir).expect("load");
        assert_eq!(tok.model_max_length(), 512);
        assert_eq!(tok.pad_id(), 0);
        let ids = tok.encode(&["a b", "d c b a d", "x"], 4).expect("encode");
        assert_eq!(ids, vec![vec![3, 4, 1, 0], vec![6, 5, 4, 1], vec![2, 1, 0, 0]]);
        assert!(tok.encode(&["a"], 1).is_err(), "no room for </s>");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn pad_token_may_be_an_added_token_object_and_must_exist() {
        let dir = word_level_folder(
            "obj",
            r#"{"pad_token": {"content": "</s>", "special": true}, "model_max_length": 1e30}"#,
        );
        let tok = PromptTokenizer::load(&dir).expect("load");
        assert_eq!((tok.pad_id(), tok.model_max_length()), (1, usize::MAX));
        std::fs::remove_dir_all(&dir).ok();

        let dir = word_level_folder("bad", r#"{"pad_token": "<nope>"}"#);
        let err = PromptTokenizer::load(&dir).expect_err("unknown pad token");
        assert!(err.to_string().contains("<nope>"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_folder_without_tokenizer_files_is_an_error() {
        let dir = std::env::temp_dir().join(format!("ferrite-prompt-tokens-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let err = PromptTokenizer::load(&dir).expect_err("empty folder");
        assert!(err.to_string().contains("tokenizer.json"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
