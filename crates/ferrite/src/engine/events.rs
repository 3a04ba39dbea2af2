//! Streams of chunks over a run's events, and the conversions they share.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ferrite_chat::Tokenizer;
use ferrite_scheduler::{Event, TokenLogprob};
use futures_core::Stream;

use super::chat::ChatChunker;
use super::completion::CompletionChunker;
use super::request::Run;
use super::Inner;
use crate::types::{ChatCompletionChunk, ChatTokenLogprob, CompletionChunk, FinishReason, TopLogprob, Usage};
use crate::Error;

/// Turns a run's events into the chunks of one response kind.
pub(crate) trait Chunker {
    type Chunk;
    fn on_event(&mut self, tok: &Tokenizer, ev: (usize, Event)) -> Result<Vec<Self::Chunk>, Error>;
}

/// The shared machinery of the chunk streams.
struct ChunkStream<C: Chunker> {
    run: Run,
    chunker: C,
    inner: Arc<Inner>,
    queue: VecDeque<C::Chunk>,
    done: bool,
}

impl<C: Chunker> ChunkStream<C> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<C::Chunk, Error>>> {
        loop {
            if let Some(c) = self.queue.pop_front() {
                return Poll::Ready(Some(Ok(c)));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match self.run.poll_next(cx) {
                Poll::Ready(Some(ev)) => match self.chunker.on_event(&self.inner.tokenizer, ev) {
                    Ok(chunks) => self.queue.extend(chunks),
                    Err(e) => {
                        self.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                },
                Poll::Ready(None) => self.done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

macro_rules! chunk_stream {
    ($(#[$doc:meta])* $name:ident, $chunker:ty, $chunk:ty) => {
        $(#[$doc])*
        pub struct $name(ChunkStream<$chunker>);

        impl $name {
            pub(crate) fn new(run: Run, chunker: $chunker, inner: Arc<Inner>) -> Self {
                $name(ChunkStream { run, chunker, inner, queue: VecDeque::new(), done: false })
            }

            /// The response id (`chatcmpl-...` / `cmpl-...`) every chunk carries.
            pub fn id(&self) -> &str {
                &self.0.run.id
            }
        }

        impl Stream for $name {
            type Item = Result<$chunk, Error>;

            fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
                self.get_mut().0.poll(cx)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).field("id", &self.0.run.id).finish_non_exhaustive()
            }
        }
    };
}

chunk_stream!(
    /// The chunks of a streamed chat answer ([`crate::Engine::chat_stream`]). Dropping it
    /// cancels the generation and frees its KV blocks.
    ChatCompletionStream,
    ChatChunker,
    ChatCompletionChunk
);
chunk_stream!(
    /// The chunks of a streamed text completion ([`crate::Engine::complete_stream`]). Dropping
    /// it cancels the generation.
    CompletionStream,
    CompletionChunker,
    CompletionChunk
);

/// A token's text (invalid UTF-8 replaced) and its bytes. With `special` false, control tokens
/// (`<|im_end|>`) give the empty text they add to a generated answer; alternatives and echoed
/// prompt tokens name them (`special` true).
pub(crate) fn piece(tok: &Tokenizer, id: u32, special: bool) -> (String, Vec<u8>) {
    let bytes = tok.token_to_piece(id, special).map(<[u8]>::to_vec).unwrap_or_default();
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}

pub(crate) fn chat_logprob(tok: &Tokenizer, lp: &TokenLogprob) -> ChatTokenLogprob {
    let (token, bytes) = piece(tok, lp.token, false);
    let top_logprobs = lp
        .top
        .iter()
        .map(|&(id, logprob)| {
            let (token, bytes) = piece(tok, id, true);
            TopLogprob { token, logprob, bytes: Some(bytes) }
        })
        .collect();
    ChatTokenLogprob { token, logprob: lp.logprob, bytes: Some(bytes), top_logprobs }
}

pub(crate) fn finish_reason(r: ferrite_scheduler::FinishReason) -> FinishReason {
    match r {
        ferrite_scheduler::FinishReason::Stop => FinishReason::Stop,
        ferrite_scheduler::FinishReason::Length => FinishReason::Length,
    }
}

pub(crate) fn usage(u: &ferrite_scheduler::Usage) -> Usage {
    let mut out = Usage::new(u.prompt_tokens as u32, u.completion_tokens as u32);
    out.prompt_tokens_details = Some(crate::types::PromptTokensDetails { cached_tokens: u.cached_tokens as u32 });
    out
}
