//! Special token ids and the end-of-generation set, found the way llama.cpp finds them
//! (`llama_vocab::impl::load`, "auto-detect special tokens by text").

use std::collections::BTreeSet;

/// Texts llama.cpp takes as the end-of-turn token when the metadata names none, in the order we
/// prefer them (llama.cpp walks a hash map, so its pick among several is arbitrary).
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<end_of_turn>",
    "<|end|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Texts llama.cpp always adds to the end-of-generation set (and upgrades to control tokens).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Fill-in-the-middle tokens llama.cpp also treats as end of generation (pad, repo, file sep).
const FIM_EOG_TEXTS: &[&[&str]] = &[
    &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"],
    &["<|file_sep|>"],
];

/// The special ids of a vocabulary and what `encode` adds.
#[derive(Debug, Clone, Default)]
pub struct SpecialTokens {
    /// Beginning of sequence.
    pub bos: Option<u32>,
    /// End of sequence.
    pub eos: Option<u32>,
    /// End of turn (`<|im_end|>`, `<end_of_turn>`, ...).
    pub eot: Option<u32>,
    /// Padding.
    pub pad: Option<u32>,
    /// Unknown.
    pub unk: Option<u32>,
    /// Every id that ends generation.
    pub eog: BTreeSet<u32>,
    /// Whether `encode(.., add_special = true)` prepends BOS.
    pub add_bos: bool,
    /// Whether `encode(.., add_special = true)` appends EOS.
    pub add_eos: bool,
}

/// Finds the end-of-turn token and the end-of-generation set as llama.cpp does.
///
/// `lookup` maps a token text to its id. `eos`/`eot`/`eom` are the ids the metadata names.
/// Returns `(eot, eog)`; the caller should treat every id in `eog` as a control token, as
/// llama.cpp upgrades them.
pub fn detect_eog(
    lookup: impl Fn(&str) -> Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
) -> (Option<u32>, BTreeSet<u32>) {
    let eot = eot.or_else(|| EOT_TEXTS.iter().find_map(|t| lookup(t)));
    let eom = eom.or_else(|| lookup("<|eom_id|>"));
    let mut eog: BTreeSet<u32> = BTreeSet::new();
    for texts in FIM_EOG_TEXTS {
        if let Some(id) = texts.iter().find_map(|t| lookup(t)) {
            eog.insert(id);
        }
    }
    eog.extend(EOG_TEXTS.iter().filter_map(|t| lookup(t)));
    eog.extend([eos, eot, eom].into_iter().flatten());
    // llama.cpp's gemma4/plamo rule: a plain `</s>` is an ordinary token beside these markers.
    if lookup("<|tool_response>").is_some() || lookup("<|plamo:eos|>").is_some() {
        if let Some(s) = lookup("</s>") {
            if Some(s) != eos {
                eog.remove(&s);
            }
        }
    }
    (eot, eog)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_vocab_ends_on_im_end_and_endoftext() {
        let vocab = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "hello"];
        let lookup = |t: &str| vocab.iter().position(|v| *v == t).map(|i| i as u32);
        let (eot, eog) = detect_eog(lookup, Some(2), None, None);
        assert_eq!(eot, Some(2));
        assert_eq!(eog.into_iter().collect::<Vec<_>>(), vec![0, 2]);
    }

    #[test]
    fn explicit_eot_wins() {
        let vocab = ["<eos>", "<end_of_turn>", "x"];
        let lookup = |t: &str| vocab.iter().position(|v| *v == t).map(|i| i as u32);
        let (eot, eog) = detect_eog(lookup, Some(0), Some(2), None);
        assert_eq!(eot, Some(2));
        assert_eq!(eog.into_iter().collect::<Vec<_>>(), vec![0, 1, 2]);
    }
}
