//! Text completions: raw prompts (text or token ids), `echo`, legacy logprobs.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferrite_chat::Tokenizer;
use ferrite_scheduler::{Event, TokenLogprob};

use super::events::{finish_reason, piece, Chunker};
use super::request::{sampling_view, Run};
use super::{Inner, RequestOptions};
use crate::types::{
    CompletionChoice, CompletionChunk, CompletionLogprobs, CompletionRequest, CompletionResponse, FinishReason, Prompt,
    PromptTokensDetails, Usage,
};
use crate::Error;

/// Validates, tokenizes every prompt and submits one scheduler request per prompt.
pub(crate) fn start(inner: &Arc<Inner>, req: &CompletionRequest, options: RequestOptions) -> Result<Run, Error> {
    req.validate()?;
    let encode = |s: &String| inner.tokenizer.encode(s, true).map_err(|e| Error::invalid("prompt", e.to_string()));
    let prompts = match &req.prompt {
        Prompt::Text(s) => vec![encode(s)?],
        Prompt::Texts(v) => v.iter().map(encode).collect::<Result<_, _>>()?,
        Prompt::Tokens(t) => vec![t.clone()],
        Prompt::TokenBatches(b) => b.clone(),
    };
    let view = sampling_view!(req);
    // `max_tokens: 0` with `echo` returns the prompt alone: one token is generated and dropped.
    let max = (req.max_new_tokens() as usize).max(1);
    let logprobs = req.logprobs.map(|k| k as usize);
    let echo_logprobs = if req.echo { logprobs } else { None };
    Run::start(inner, prompts, view.n, "cmpl", &req.model, "prompt", |p| {
        let mut r = view.to_request(p, max, &options);
        r.logprobs = logprobs;
        r.prompt_logprobs = echo_logprobs;
        r
    })
}

/// One choice as it is assembled.
#[derive(Default)]
struct Choice {
    text: String,
    logprobs: Option<CompletionLogprobs>,
    /// Characters in `text` (the legacy `text_offset` counts characters).
    chars: u32,
    reason: Option<FinishReason>,
}

impl Choice {
    /// Adds a token's logprobs; `prompt`: an echoed prompt token (its control tokens are part of
    /// the echoed text), else a generated one (control tokens add no text).
    fn add_token(
        &mut self,
        tok: &Tokenizer,
        token: u32,
        prompt: bool,
        logprob: Option<f32>,
        top: Option<&[(u32, f32)]>,
    ) {
        let Some(lp) = self.logprobs.as_mut() else { return };
        let (text, _) = piece(tok, token, prompt);
        lp.text_offset.push(self.chars);
        self.chars += text.chars().count() as u32;
        lp.tokens.push(text);
        lp.token_logprobs.push(logprob);
        lp.top_logprobs
            .push(top.map(|t| t.iter().map(|&(id, l)| (piece(tok, id, true).0, l)).collect::<BTreeMap<_, _>>()));
    }
}

/// What completions, streamed or not, keep while events arrive.
pub(crate) struct CompletionState {
    n: usize,
    echo: bool,
    /// `max_tokens: 0`: generated tokens are dropped.
    discard: bool,
    /// The echoed text of each prompt.
    echo_text: Vec<String>,
    prompt_logprobs: Vec<Vec<Option<TokenLogprob>>>,
    prompt_tokens: Vec<Vec<u32>>,
    choices: Vec<Choice>,
    /// Choices that have received their first event (the echo goes first).
    started: Vec<bool>,
    usage: Usage,
    /// Prompt tokens served from the prefix cache, per prompt.
    cached: Vec<u32>,
}

impl CompletionState {
    fn new(req: &CompletionRequest, run: &Run, tok: &Tokenizer) -> Self {
        let echo_text = match &req.prompt {
            Prompt::Text(s) => vec![s.clone()],
            Prompt::Texts(v) => v.clone(),
            _ => run.prompts.iter().map(|p| tok.decode(p, false).unwrap_or_default()).collect(),
        };
        let total = run.n * run.prompts.len();
        let logprobs = req.logprobs.is_some();
        CompletionState {
            n: run.n,
            echo: req.echo,
            discard: req.max_tokens == Some(0),
            echo_text,
            prompt_logprobs: vec![Vec::new(); run.prompts.len()],
            prompt_tokens: run.prompts.clone(),
            choices: (0..total)
                .map(|_| Choice { logprobs: logprobs.then(CompletionLogprobs::default), ..Default::default() })
                .collect(),
            started: vec![false; total],
            usage: Usage::new(run.prompts.iter().map(|p| p.len() as u32).sum(), 0),
            cached: vec![0; run.prompts.len()],
        }
    }

    /// Applies an event; returns the index of the choice whose text or logprobs grew, and the
    /// new text.
    fn apply(&mut self, tok: &Tokenizer, (p, ev): (usize, Event)) -> Result<Option<(usize, String)>, Error> {
        match ev {
            Event::PromptLogprobs(l) => self.prompt_logprobs[p] = l,
            Event::Delta { index, text, tokens, logprobs } => {
                let c = p * self.n + index;
                let mut new = String::new();
                if !self.started[c] {
                    self.started[c] = true;
                    if self.echo {
                        new.push_str(&self.echo_text[p]);
                        let prompt = self.prompt_tokens[p].clone();
                        for (i, &t) in prompt.iter().enumerate() {
                            let lp = self.prompt_logprobs[p].get(i).cloned().flatten();
                            let (logprob, top) = match &lp {
                                Some(l) => (Some(l.logprob), Some(l.top.as_slice())),
                                None => (None, None),
                            };
                            self.choices[c].add_token(tok, t, true, logprob, top);
                        }
                    }
                }
                if !self.discard {
                    new.push_str(&text);
                    for (i, &t) in tokens.iter().enumerate() {
                        let l = logprobs.get(i);
                        self.choices[c].add_token(tok, t, false, l.map(|l| l.logprob), l.map(|l| l.top.as_slice()));
                    }
                }
                self.choices[c].text.push_str(&new);
                return Ok(Some((c, new)));
            }
            Event::Finished { index, reason, completion_tokens, usage } => {
                let c = p * self.n + index;
                self.choices[c].reason = Some(finish_reason(reason));
                if !self.discard {
                    self.usage.completion_tokens += completion_tokens as u32;
                }
                self.cached[p] = usage.cached_tokens as u32;
            }
            Event::Done(u) => self.cached[p] = u.cached_tokens as u32,
            Event::Error(m) => return Err(Error::Internal(m)),
        }
        Ok(None)
    }

    fn usage(&self) -> Usage {
        let mut u = Usage::new(self.usage.prompt_tokens, self.usage.completion_tokens);
        u.prompt_tokens_details = Some(PromptTokensDetails { cached_tokens: self.cached.iter().sum() });
        u
    }
}

/// Collects a whole completion.
pub(crate) struct CompletionCollector(CompletionState);

impl CompletionCollector {
    pub fn new(req: &CompletionRequest, run: &Run, tok: &Tokenizer) -> Self {
        CompletionCollector(CompletionState::new(req, run, tok))
    }

    pub fn push(&mut self, tok: &Tokenizer, ev: (usize, Event)) -> Result<(), Error> {
        self.0.apply(tok, ev).map(|_| ())
    }

    pub fn finish(self, run: &Run) -> Result<CompletionResponse, Error> {
        let usage = self.0.usage();
        let choices = self
            .0
            .choices
            .into_iter()
            .enumerate()
            .map(|(i, c)| CompletionChoice {
                text: c.text,
                index: i as u32,
                logprobs: c.logprobs,
                finish_reason: c.reason,
            })
            .collect();
        Ok(CompletionResponse::new(run.id.clone(), run.created, run.model.clone(), choices, usage))
    }
}

/// Turns events into `text_completion` chunks; the chunk with a `finish_reason` carries the
/// usage so far, and `include_usage` adds a last chunk with the totals.
pub(crate) struct CompletionChunker {
    state: CompletionState,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    /// Scheduler requests not done yet.
    open: usize,
}

impl CompletionChunker {
    pub fn new(req: &CompletionRequest, run: &Run, tok: &Tokenizer) -> Self {
        CompletionChunker {
            state: CompletionState::new(req, run, tok),
            id: run.id.clone(),
            created: run.created,
            model: run.model.clone(),
            include_usage: req.stream_options.as_ref().is_some_and(|o| o.include_usage),
            open: run.prompts.len(),
        }
    }

    fn chunk(&self, choices: Vec<CompletionChoice>) -> CompletionChunk {
        CompletionChunk::new(self.id.clone(), self.created, self.model.clone(), choices)
    }
}

impl Chunker for CompletionChunker {
    type Chunk = CompletionChunk;

    fn on_event(&mut self, tok: &Tokenizer, ev: (usize, Event)) -> Result<Vec<CompletionChunk>, Error> {
        let (p, kind) = (ev.0, &ev.1);
        let finished = match kind {
            Event::Finished { index, .. } => Some(p * self.state.n + index),
            _ => None,
        };
        let done = matches!(kind, Event::Done(_));
        let logprob_len = |s: &CompletionState, c: usize| s.choices[c].logprobs.as_ref().map_or(0, |l| l.tokens.len());
        let before: Vec<usize> = (0..self.state.choices.len()).map(|c| logprob_len(&self.state, c)).collect();
        let grown = self.state.apply(tok, ev)?;
        let mut out = Vec::new();
        if let Some((c, text)) = grown {
            let logprobs = self.state.choices[c].logprobs.as_ref().map(|l| tail(l, before[c]));
            if !text.is_empty() || logprobs.as_ref().is_some_and(|l| !l.tokens.is_empty()) {
                let choice = CompletionChoice { text, index: c as u32, logprobs, finish_reason: None };
                out.push(self.chunk(vec![choice]));
            }
        }
        if let Some(c) = finished {
            let choice = CompletionChoice {
                text: String::new(),
                index: c as u32,
                logprobs: None,
                finish_reason: self.state.choices[c].reason,
            };
            let mut chunk = self.chunk(vec![choice]);
            chunk.usage = Some(self.state.usage());
            out.push(chunk);
        }
        if done {
            self.open -= 1;
            if self.open == 0 && self.include_usage {
                let mut chunk = self.chunk(Vec::new());
                chunk.usage = Some(self.state.usage());
                out.push(chunk);
            }
        }
        Ok(out)
    }
}

/// The entries of `l` from `from` on.
fn tail(l: &CompletionLogprobs, from: usize) -> CompletionLogprobs {
    CompletionLogprobs {
        tokens: l.tokens[from..].to_vec(),
        token_logprobs: l.token_logprobs[from..].to_vec(),
        top_logprobs: l.top_logprobs[from..].to_vec(),
        text_offset: l.text_offset[from..].to_vec(),
    }
}
