//! Chat requests: template, tokens, and the events turned into responses or chunks.

use std::sync::Arc;

use ferrite_chat::Tokenizer;
use ferrite_scheduler::Event;
use serde_json::Value;

use super::events::{chat_logprob, finish_reason, usage, Chunker};
use super::grammar::{constrained_options, response_format_constraint};
use super::request::{max_tokens, sampling_view, Run};
use super::{Inner, RequestOptions};
use crate::types::{
    ChatChoice, ChatChunkChoice, ChatCompletionChunk, ChatCompletionMessage, ChatCompletionRequest,
    ChatCompletionResponse, ChatDelta, ChatLogprobs, ChatTokenLogprob, FinishReason, Role, ToolChoice, ToolChoiceMode,
    Usage,
};
use crate::Error;

/// Validates, renders the chat template, tokenizes and submits.
pub(crate) fn start(inner: &Arc<Inner>, req: &ChatCompletionRequest, options: RequestOptions) -> Result<Run, Error> {
    req.validate()?;
    let options = match req.response_format.as_ref().and_then(response_format_constraint) {
        Some(c) => constrained_options(inner, &c, "response_format", options)?,
        None => options,
    };
    let tools_off = matches!(req.tool_choice, Some(ToolChoice::Mode(ToolChoiceMode::None)));
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) && !tools_off {
        return Err(Error::invalid("tools", "tool calling is not supported yet"));
    }
    let prompt = render_prompt(inner, req)?;
    let view = sampling_view!(req);
    let max = max_tokens(inner, req.max_new_tokens(), prompt.len());
    let logprobs = req.logprobs.then(|| req.top_logprobs.unwrap_or(0) as usize);
    Run::start(inner, vec![prompt], view.n, "chatcmpl", &req.model, "messages", |p| {
        let mut r = view.to_request(p, max, &options);
        r.logprobs = logprobs;
        r
    })
}

/// The prompt tokens of the conversation, as the model's chat template lays it out.
fn render_prompt(inner: &Inner, req: &ChatCompletionRequest) -> Result<Vec<u32>, Error> {
    // The template joins content parts itself (`ferrite_chat::template::normalize_message`).
    let messages: Vec<Value> = req.messages.iter().map(|m| serde_json::to_value(m).unwrap_or(Value::Null)).collect();
    let text = inner.template.render(&messages, None, true).map_err(|e| Error::invalid("messages", e.to_string()))?;
    inner.tokenizer.encode(&text, false).map_err(|e| Error::invalid("messages", e.to_string()))
}

/// Collects a whole chat answer.
pub(crate) struct ChatCollector {
    text: Vec<String>,
    logprobs: Vec<Option<Vec<ChatTokenLogprob>>>,
    reasons: Vec<Option<FinishReason>>,
    usage: Usage,
}

impl ChatCollector {
    pub fn new(req: &ChatCompletionRequest, n: usize) -> Self {
        ChatCollector {
            text: vec![String::new(); n],
            logprobs: vec![req.logprobs.then(Vec::new); n],
            reasons: vec![None; n],
            usage: Usage::new(0, 0),
        }
    }

    pub fn push(&mut self, tok: &Tokenizer, (_, ev): (usize, Event)) -> Result<(), Error> {
        match ev {
            Event::Delta { index, text, logprobs, .. } => {
                self.text[index].push_str(&text);
                if let Some(l) = self.logprobs[index].as_mut() {
                    l.extend(logprobs.iter().map(|lp| chat_logprob(tok, lp)));
                }
            }
            Event::Finished { index, reason, .. } => self.reasons[index] = Some(finish_reason(reason)),
            Event::Done(u) => self.usage = usage(&u),
            Event::Error(m) => return Err(Error::Internal(m)),
            Event::PromptLogprobs(_) => {}
        }
        Ok(())
    }

    pub fn finish(self, run: &Run) -> Result<ChatCompletionResponse, Error> {
        let choices = self
            .text
            .into_iter()
            .zip(self.logprobs)
            .zip(self.reasons)
            .enumerate()
            .map(|(i, ((text, logprobs), reason))| ChatChoice {
                index: i as u32,
                message: ChatCompletionMessage::assistant(text),
                logprobs: logprobs.map(|content| ChatLogprobs { content: Some(content) }),
                finish_reason: reason,
            })
            .collect();
        Ok(ChatCompletionResponse::new(run.id.clone(), run.created, run.model.clone(), choices, self.usage))
    }
}

/// Turns events into `chat.completion.chunk`s: a role chunk first, content deltas, then per
/// choice a chunk with its `finish_reason` and the usage so far; with `include_usage`, a last
/// chunk with no choices and the totals.
pub(crate) struct ChatChunker {
    id: String,
    created: u64,
    model: String,
    logprobs: bool,
    include_usage: bool,
    role_sent: Vec<bool>,
}

impl ChatChunker {
    pub fn new(req: &ChatCompletionRequest, run: &Run) -> Self {
        ChatChunker {
            id: run.id.clone(),
            created: run.created,
            model: run.model.clone(),
            logprobs: req.logprobs,
            include_usage: req.stream_options.as_ref().is_some_and(|o| o.include_usage),
            role_sent: vec![false; run.n],
        }
    }

    fn chunk(&self, choices: Vec<ChatChunkChoice>) -> ChatCompletionChunk {
        ChatCompletionChunk::new(self.id.clone(), self.created, self.model.clone(), choices)
    }
}

fn delta_choice(index: usize, delta: ChatDelta) -> ChatChunkChoice {
    ChatChunkChoice { index: index as u32, delta, logprobs: None, finish_reason: None }
}

impl Chunker for ChatChunker {
    type Chunk = ChatCompletionChunk;

    fn on_event(&mut self, tok: &Tokenizer, (_, ev): (usize, Event)) -> Result<Vec<ChatCompletionChunk>, Error> {
        let mut out = Vec::new();
        match ev {
            Event::Delta { index, text, logprobs, .. } => {
                if !self.role_sent[index] {
                    self.role_sent[index] = true;
                    let delta =
                        ChatDelta { role: Some(Role::Assistant), content: Some(String::new()), tool_calls: None };
                    out.push(self.chunk(vec![delta_choice(index, delta)]));
                }
                if !text.is_empty() || (self.logprobs && !logprobs.is_empty()) {
                    let mut c = delta_choice(index, ChatDelta { role: None, content: Some(text), tool_calls: None });
                    if self.logprobs {
                        let content = logprobs.iter().map(|lp| chat_logprob(tok, lp)).collect();
                        c.logprobs = Some(ChatLogprobs { content: Some(content) });
                    }
                    out.push(self.chunk(vec![c]));
                }
            }
            Event::Finished { index, reason, usage: u, .. } => {
                let mut c = delta_choice(index, ChatDelta::default());
                c.finish_reason = Some(finish_reason(reason));
                let mut chunk = self.chunk(vec![c]);
                chunk.usage = Some(usage(&u));
                out.push(chunk);
            }
            Event::Done(u) => {
                if self.include_usage {
                    let mut chunk = self.chunk(Vec::new());
                    chunk.usage = Some(usage(&u));
                    out.push(chunk);
                }
            }
            Event::Error(m) => return Err(Error::Internal(m)),
            Event::PromptLogprobs(_) => {}
        }
        Ok(out)
    }
}
