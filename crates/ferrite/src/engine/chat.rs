//! Chat requests: template, tokens, and the events turned into responses or chunks.

use std::sync::Arc;

use ferrite_chat::tool_calls::{lark_grammar, ForcedChoice, ToolOutput};
use ferrite_chat::{Tokenizer, ToolCallParser};
use ferrite_grammar::Constraint;
use ferrite_scheduler::Event;
use serde_json::Value;

use super::events::{chat_logprob, finish_reason, usage, Chunker};
use super::grammar::{constrained_options, response_format_constraint};
use super::request::{max_tokens, sampling_view, Run};
use super::tools::{call_id, fit_call_ids, template_tools, ToolSetup};
use super::{Inner, RequestOptions};
use crate::types::{
    ChatChoice, ChatChunkChoice, ChatCompletionChunk, ChatCompletionMessage, ChatCompletionRequest,
    ChatCompletionResponse, ChatDelta, ChatLogprobs, ChatTokenLogprob, FinishReason, FunctionCall, FunctionCallDelta,
    Role, ToolCall, ToolCallDelta, ToolChoice, ToolChoiceMode, ToolType, Usage,
};
use crate::Error;

/// Validates, renders the chat template, tokenizes and submits.
pub(crate) fn start(inner: &Arc<Inner>, req: &ChatCompletionRequest, options: RequestOptions) -> Result<Run, Error> {
    req.validate()?;
    // A forced tool call (`tool_choice` "required" or named) is grammar-constrained in the
    // model's call format, and wins over `response_format`; otherwise a JSON response format is.
    let options = match forced_tool_constraint(inner, req)? {
        Some(c) => constrained_options(inner, &c, "tool_choice", options)?,
        None => match req.response_format.as_ref().and_then(response_format_constraint) {
            Some(c) => constrained_options(inner, &c, "response_format", options)?,
            None => options,
        },
    };
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

/// The Lark grammar of a forced tool call (`tool_choice` "required" or a named function) in the
/// format the request's output will be parsed in; `None` when the model may choose.
fn forced_tool_constraint(inner: &Inner, req: &ChatCompletionRequest) -> Result<Option<Constraint>, Error> {
    let choice = match &req.tool_choice {
        Some(ToolChoice::Mode(ToolChoiceMode::Required)) => ForcedChoice::Required,
        Some(ToolChoice::Named(named)) => ForcedChoice::Named(&named.function.name),
        _ => return Ok(None),
    };
    let (Some(setup), Some(tools)) = (ToolSetup::for_request(inner, req), template_tools(req)) else {
        return Ok(None);
    };
    let parallel = req.parallel_tool_calls != Some(false);
    let grammar = lark_grammar(setup.format(), &tools, choice, parallel)
        .map_err(|e| Error::invalid("tool_choice", e.to_string()))?;
    Ok(Some(Constraint::Lark(grammar)))
}

/// The prompt tokens of the conversation, as the model's chat template lays it out.
fn render_prompt(inner: &Inner, req: &ChatCompletionRequest) -> Result<Vec<u32>, Error> {
    // The template joins content parts itself (`ferrite_chat::template::normalize_message`).
    let mut messages: Vec<Value> =
        req.messages.iter().map(|m| serde_json::to_value(m).unwrap_or(Value::Null)).collect();
    fit_call_ids(inner, &mut messages);
    let tools = template_tools(req);
    let text = inner
        .template
        .render(&messages, tools.as_deref(), true)
        .map_err(|e| Error::invalid("messages", e.to_string()))?;
    inner.tokenizer.encode(&text, false).map_err(|e| Error::invalid("messages", e.to_string()))
}

/// Collects a whole chat answer.
pub(crate) struct ChatCollector {
    text: Vec<String>,
    logprobs: Vec<Option<Vec<ChatTokenLogprob>>>,
    reasons: Vec<Option<FinishReason>>,
    usage: Usage,
    tools: Option<ToolSetup>,
}

impl ChatCollector {
    pub fn new(inner: &Inner, req: &ChatCompletionRequest, n: usize) -> Self {
        ChatCollector {
            text: vec![String::new(); n],
            logprobs: vec![req.logprobs.then(Vec::new); n],
            reasons: vec![None; n],
            usage: Usage::new(0, 0),
            tools: ToolSetup::for_request(inner, req),
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
        let tools = self.tools;
        let choices = self
            .text
            .into_iter()
            .zip(self.logprobs)
            .zip(self.reasons)
            .enumerate()
            .map(|(i, ((text, logprobs), reason))| {
                let (message, reason) = match tools {
                    Some(setup) => tool_message(setup, &text, reason),
                    None => (ChatCompletionMessage::assistant(text), reason),
                };
                ChatChoice {
                    index: i as u32,
                    message,
                    logprobs: logprobs.map(|content| ChatLogprobs { content: Some(content) }),
                    finish_reason: reason,
                }
            })
            .collect();
        Ok(ChatCompletionResponse::new(run.id.clone(), run.created, run.model.clone(), choices, self.usage))
    }
}

/// The assistant message of a whole answer searched for tool calls: `content` is `null` when
/// only calls were made, and the finish reason becomes `tool_calls` when any were.
fn tool_message(
    setup: ToolSetup,
    text: &str,
    reason: Option<FinishReason>,
) -> (ChatCompletionMessage, Option<FinishReason>) {
    let mut parser = setup.parser();
    let mut content = String::new();
    let mut calls = Vec::new();
    for item in parser.push(text).into_iter().chain(parser.finish()) {
        match item {
            ToolOutput::Content(c) => content.push_str(&c),
            ToolOutput::Call(c) => calls.push(ToolCall {
                id: call_id(),
                kind: ToolType::Function,
                function: FunctionCall { name: c.name, arguments: c.arguments },
            }),
        }
    }
    if calls.is_empty() {
        return (ChatCompletionMessage::assistant(content), reason);
    }
    let content = (!content.is_empty()).then_some(content);
    let message = ChatCompletionMessage { role: Role::Assistant, content, tool_calls: Some(calls) };
    (message, Some(FinishReason::ToolCalls))
}

/// Turns events into `chat.completion.chunk`s: a role chunk first, content deltas, then per
/// choice a chunk with its `finish_reason` and the usage so far; with `include_usage`, a last
/// chunk with no choices and the totals.
///
/// With tools, each choice's text goes through a [`ToolCallParser`]: content is sent as soon as
/// it cannot be part of a call, and each call as two `delta.tool_calls` fragments once its JSON
/// is complete (`index`, `id`, `type` and `function.name` with empty `arguments`, then the
/// `arguments`), as OpenAI streams them; the finish reason is then `tool_calls`.
pub(crate) struct ChatChunker {
    id: String,
    created: u64,
    model: String,
    logprobs: bool,
    include_usage: bool,
    role_sent: Vec<bool>,
    parsers: Option<Vec<ToolCallParser>>,
}

impl ChatChunker {
    pub fn new(inner: &Inner, req: &ChatCompletionRequest, run: &Run) -> Self {
        ChatChunker {
            id: run.id.clone(),
            created: run.created,
            model: run.model.clone(),
            logprobs: req.logprobs,
            include_usage: req.stream_options.as_ref().is_some_and(|o| o.include_usage),
            role_sent: vec![false; run.n],
            parsers: ToolSetup::for_request(inner, req).map(|s| (0..run.n).map(|_| s.parser()).collect()),
        }
    }

    fn chunk(&self, choices: Vec<ChatChunkChoice>) -> ChatCompletionChunk {
        ChatCompletionChunk::new(self.id.clone(), self.created, self.model.clone(), choices)
    }

    /// The content and call chunks of parsed output; calls are numbered from `first_call`.
    fn output_chunks(&self, index: usize, items: Vec<ToolOutput>, first_call: usize) -> Vec<ChatCompletionChunk> {
        let mut out = Vec::new();
        let mut call_index = first_call as u32;
        for item in items {
            match item {
                ToolOutput::Content(text) => {
                    let delta = ChatDelta { role: None, content: Some(text), tool_calls: None };
                    out.push(self.chunk(vec![delta_choice(index, delta)]));
                }
                ToolOutput::Call(call) => {
                    let head = ToolCallDelta {
                        index: call_index,
                        id: Some(call_id()),
                        kind: Some(ToolType::Function),
                        function: Some(FunctionCallDelta { name: Some(call.name), arguments: Some(String::new()) }),
                    };
                    let args = ToolCallDelta {
                        index: call_index,
                        id: None,
                        kind: None,
                        function: Some(FunctionCallDelta { name: None, arguments: Some(call.arguments) }),
                    };
                    for piece in [head, args] {
                        let delta = ChatDelta { role: None, content: None, tool_calls: Some(vec![piece]) };
                        out.push(self.chunk(vec![delta_choice(index, delta)]));
                    }
                    call_index += 1;
                }
            }
        }
        out
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
                let lps = (self.logprobs && !logprobs.is_empty())
                    .then(|| ChatLogprobs { content: Some(logprobs.iter().map(|lp| chat_logprob(tok, lp)).collect()) });
                let mut chunks = match self.parsers.as_mut() {
                    Some(parsers) => {
                        let first_call = parsers[index].calls();
                        let items = parsers[index].push(&text);
                        self.output_chunks(index, items, first_call)
                    }
                    None if text.is_empty() => Vec::new(),
                    None => self.output_chunks(index, vec![ToolOutput::Content(text)], 0),
                };
                if let Some(lps) = lps {
                    if chunks.is_empty() {
                        let delta = ChatDelta { role: None, content: Some(String::new()), tool_calls: None };
                        chunks.push(self.chunk(vec![delta_choice(index, delta)]));
                    }
                    chunks[0].choices[0].logprobs = Some(lps);
                }
                out.extend(chunks);
            }
            Event::Finished { index, reason, usage: u, .. } => {
                let mut reason = finish_reason(reason);
                if let Some(parsers) = self.parsers.as_mut() {
                    let first_call = parsers[index].calls();
                    let items = parsers[index].finish();
                    if parsers[index].calls() > 0 {
                        reason = FinishReason::ToolCalls;
                    }
                    out.extend(self.output_chunks(index, items, first_call));
                }
                let mut c = delta_choice(index, ChatDelta::default());
                c.finish_reason = Some(reason);
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
