//! Per-request options that have no place in the OpenAI request body.

use std::sync::Arc;

pub use ferrite_scheduler::LogitsProcessor;

type ProcessorFactory = Arc<dyn Fn() -> Box<dyn LogitsProcessor> + Send + Sync>;

/// Options for one request, beside its OpenAI body.
#[derive(Clone, Default)]
pub struct RequestOptions {
    pub(crate) logits_processor: Option<ProcessorFactory>,
}

impl std::fmt::Debug for RequestOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestOptions").field("logits_processor", &self.logits_processor.is_some()).finish()
    }
}

impl RequestOptions {
    /// No options.
    pub fn new() -> Self {
        RequestOptions::default()
    }

    /// Runs a logits processor on every sampling step of every choice; `make` builds one
    /// processor per choice (processors may keep state, e.g. a grammar's position).
    pub fn logits_processor<P, F>(mut self, make: F) -> Self
    where
        P: LogitsProcessor + 'static,
        F: Fn() -> P + Send + Sync + 'static,
    {
        self.logits_processor = Some(Arc::new(move || Box::new(make()) as Box<dyn LogitsProcessor>));
        self
    }

    pub(crate) fn processors(&self, n: usize) -> Vec<Box<dyn LogitsProcessor>> {
        match &self.logits_processor {
            Some(make) => (0..n).map(|_| make()).collect(),
            None => Vec::new(),
        }
    }
}
