//! The engine for programs without an async runtime: the same calls, blocking the caller.
//!
//! ```no_run
//! use ferrite::blocking::Engine;
//! use ferrite::{ChatCompletionRequest, ChatMessage};
//!
//! let engine = Engine::new(ferrite::Engine::builder().model("smollm2").build()?);
//! let req = ChatCompletionRequest::new("smollm2", [ChatMessage::user("Hello!")]).max_tokens(16);
//! println!("{}", engine.chat(req)?.choices[0].message.content.as_deref().unwrap_or(""));
//! # Ok::<(), ferrite::Error>(())
//! ```

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use futures_core::Stream;

use crate::types::{ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse};
use crate::types::{CompletionChunk, CompletionRequest, CompletionResponse, EmbeddingRequest, EmbeddingResponse};
use crate::types::{ImageGenerationRequest, ImagesResponse};
use crate::{ChatCompletionStream, CompletionStream, Error, RequestOptions};

/// A blocking view of an [`crate::Engine`].
#[derive(Debug, Clone)]
pub struct Engine(pub crate::Engine);

impl Engine {
    /// Wraps an engine.
    pub fn new(engine: crate::Engine) -> Self {
        Engine(engine)
    }

    /// [`crate::Engine::chat`], blocking.
    pub fn chat(&self, req: ChatCompletionRequest) -> Result<ChatCompletionResponse, Error> {
        block_on(self.0.chat(req))
    }

    /// [`crate::Engine::chat_with`], blocking.
    pub fn chat_with(
        &self,
        req: ChatCompletionRequest,
        options: RequestOptions,
    ) -> Result<ChatCompletionResponse, Error> {
        block_on(self.0.chat_with(req, options))
    }

    /// [`crate::Engine::complete`], blocking.
    pub fn complete(&self, req: CompletionRequest) -> Result<CompletionResponse, Error> {
        block_on(self.0.complete(req))
    }

    /// [`crate::Engine::embed`], blocking.
    pub fn embed(&self, req: EmbeddingRequest) -> Result<EmbeddingResponse, Error> {
        block_on(self.0.embed(req))
    }

    /// [`crate::Engine::generate_images`], blocking.
    pub fn generate_images(&self, req: ImageGenerationRequest) -> Result<ImagesResponse, Error> {
        block_on(self.0.generate_images(req))
    }

    /// [`crate::Engine::generate_images_with_progress`], blocking (`progress` runs on the image
    /// worker's thread).
    pub fn generate_images_with_progress(
        &self,
        req: ImageGenerationRequest,
        progress: impl FnMut(usize, usize) + Send + 'static,
    ) -> Result<ImagesResponse, Error> {
        block_on(self.0.generate_images_with_progress(req, progress))
    }

    /// The chunks of a chat answer as an iterator; dropping it cancels the generation.
    pub fn chat_stream(&self, req: ChatCompletionRequest) -> Result<Chunks<ChatCompletionStream>, Error> {
        self.0.chat_stream(req).map(Chunks)
    }

    /// The chunks of a text completion as an iterator; dropping it cancels the generation.
    pub fn complete_stream(&self, req: CompletionRequest) -> Result<Chunks<CompletionStream>, Error> {
        self.0.complete_stream(req).map(Chunks)
    }
}

/// A chunk stream iterated by blocking the caller.
#[derive(Debug)]
pub struct Chunks<S>(S);

impl Iterator for Chunks<ChatCompletionStream> {
    type Item = Result<ChatCompletionChunk, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        block_on(std::future::poll_fn(|cx| std::pin::Pin::new(&mut self.0).poll_next(cx)))
    }
}

impl Iterator for Chunks<CompletionStream> {
    type Item = Result<CompletionChunk, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        block_on(std::future::poll_fn(|cx| std::pin::Pin::new(&mut self.0).poll_next(cx)))
    }
}

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on this thread (the engine's futures only wait on channels).
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
