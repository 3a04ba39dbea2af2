//! [`GrammarVocabulary`]: a model's tokens compiled once for llguidance.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use ferrite_chat::Tokenizer;
use llguidance::toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};

use crate::{Constraint, GrammarError, GrammarProcessor};

/// A model's vocabulary as llguidance sees it: the exact bytes of every token in a token trie,
/// the end-of-generation ids as its EOS set, and the grammar compiler built over them.
///
/// Building one walks the whole vocabulary and precomputes llguidance's token slices (tens of
/// milliseconds to a second for a 150k vocabulary); build it once per model and share it
/// (it is cheap to clone). Control tokens (`<|im_end|>`, `<|im_start|>`, ...) are entered
/// under llguidance's special-token marker, so no text a grammar allows can be spelled with
/// them; end-of-generation tokens are allowed only where the grammar may end.
#[derive(Clone)]
pub struct GrammarVocabulary {
    factory: Arc<ParserFactory>,
    eog: Arc<[u32]>,
    vocab_size: usize,
}

impl std::fmt::Debug for GrammarVocabulary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrammarVocabulary")
            .field("vocab_size", &self.vocab_size)
            .field("eog", &self.eog)
            .finish_non_exhaustive()
    }
}

impl GrammarVocabulary {
    /// Compiles the vocabulary of `tokenizer`.
    pub fn new(tokenizer: &Tokenizer) -> Result<GrammarVocabulary, GrammarError> {
        let vocab_size = tokenizer.vocab_size();
        let n = u32::try_from(vocab_size).map_err(|_| GrammarError::Vocabulary("too many tokens".into()))?;
        // The tokenizer's EOS first: llguidance reports it as "the" EOS token.
        let mut eog: Vec<u32> = tokenizer.eos_id().into_iter().collect();
        eog.extend(tokenizer.eog_ids().iter().copied().filter(|id| Some(*id) != tokenizer.eos_id()));
        eog.retain(|&id| id < n);
        let Some(&eos) = eog.first() else {
            return Err(GrammarError::Vocabulary("the tokenizer has no end-of-generation token".into()));
        };
        let words = token_words(tokenizer, n)?;
        let info = TokRxInfo {
            vocab_size: n,
            tok_eos: eos,
            tok_bos: tokenizer.bos_id(),
            tok_pad: tokenizer.pad_id(),
            tok_unk: tokenizer.special_tokens().unk,
            tok_end_of_turn: tokenizer.eot_id(),
        };
        let built = catch_unwind(AssertUnwindSafe(|| -> Result<ParserFactory, String> {
            let trie = TokTrie::from(&info, &words).with_eos_tokens(&eog);
            let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
            let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
            factory.quiet();
            Ok(factory)
        }));
        let factory = match built {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => return Err(GrammarError::Vocabulary(e)),
            Err(_) => return Err(GrammarError::Vocabulary("llguidance panicked building the token trie".into())),
        };
        Ok(GrammarVocabulary { factory: Arc::new(factory), eog: eog.into(), vocab_size })
    }

    /// The number of token ids.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The end-of-generation ids, the tokenizer's EOS first.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    /// Compiles `constraint` once; its processors (one per choice) all start from it.
    ///
    /// An invalid schema or grammar is a [`GrammarError::Invalid`] naming what is wrong.
    pub fn compile(&self, constraint: &Constraint) -> Result<CompiledGrammar, GrammarError> {
        let grammar = constraint.grammar();
        let parser = catch_unwind(AssertUnwindSafe(|| self.factory.create_parser(grammar)))
            .map_err(|_| GrammarError::Invalid("the grammar compiler panicked".into()))?
            .map_err(|e| GrammarError::Invalid(e.to_string()))?;
        let start = Matcher::new(Ok(parser));
        if let Some(e) = start.get_error() {
            return Err(GrammarError::Invalid(e));
        }
        Ok(CompiledGrammar { start, eog: self.eog.clone(), vocab_size: self.vocab_size })
    }

    /// Compiles `constraint` and returns `n` processors at its start, one per choice.
    pub fn processors(&self, constraint: &Constraint, n: usize) -> Result<Vec<GrammarProcessor>, GrammarError> {
        let compiled = self.compile(constraint)?;
        Ok((0..n).map(|_| compiled.processor()).collect())
    }

    /// One processor for `constraint` (see [`GrammarVocabulary::compile`]).
    pub fn processor(&self, constraint: &Constraint) -> Result<GrammarProcessor, GrammarError> {
        Ok(self.compile(constraint)?.processor())
    }
}

/// A constraint compiled against a vocabulary: hands out processors at the grammar's start.
pub struct CompiledGrammar {
    start: Matcher,
    eog: Arc<[u32]>,
    vocab_size: usize,
}

impl std::fmt::Debug for CompiledGrammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledGrammar").field("vocab_size", &self.vocab_size).finish_non_exhaustive()
    }
}

impl CompiledGrammar {
    /// A fresh processor at the start of the grammar (independent of every other one).
    pub fn processor(&self) -> GrammarProcessor {
        GrammarProcessor::new(self.start.deep_clone(), self.eog.clone(), self.vocab_size)
    }
}

/// Per token id, the bytes llguidance matches it as: its text for ordinary and user-defined
/// tokens; the special-token marker and its name for control tokens.
fn token_words(tokenizer: &Tokenizer, n: u32) -> Result<Vec<Vec<u8>>, GrammarError> {
    (0..n)
        .map(|id| {
            let err = |e: ferrite_chat::Error| GrammarError::Vocabulary(e.to_string());
            if tokenizer.is_control(id) {
                let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                w.extend_from_slice(tokenizer.token_to_piece(id, true).map_err(err)?);
                Ok(w)
            } else {
                Ok(tokenizer.token_to_piece(id, true).map_err(err)?.to_vec())
            }
        })
        .collect()
}
