//! Grammar-constrained decoding for chat requests: `response_format` (JSON object, JSON
//! schema) and, for the tool-calling code, any [`Constraint`] such as a Lark grammar.
//!
//! The model's [`GrammarVocabulary`] is compiled at the first request that needs it and kept
//! in [`Inner`]; each request compiles its constraint once and every choice gets its own
//! processor starting from it.

use std::sync::Arc;

use ferrite_grammar::{CompiledGrammar, Constraint, GrammarVocabulary};
use ferrite_scheduler::LogitsProcessor;

use super::{Inner, RequestOptions};
use crate::types::ResponseFormat;
use crate::Error;

/// The constraint a `response_format` asks for (`None` for plain text).
pub(crate) fn response_format_constraint(format: &ResponseFormat) -> Option<Constraint> {
    match format {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => Some(Constraint::JsonObject),
        ResponseFormat::JsonSchema { json_schema } => {
            Some(json_schema.schema.clone().map_or(Constraint::JsonObject, Constraint::JsonSchema))
        }
    }
}

/// The model's grammar vocabulary, compiled on first use.
fn vocabulary(inner: &Inner) -> Result<&GrammarVocabulary, Error> {
    let built = inner.grammar.get_or_init(|| GrammarVocabulary::new(&inner.tokenizer).map_err(|e| e.to_string()));
    built.as_ref().map_err(|e| Error::Internal(format!("constrained decoding is unavailable for this model: {e}")))
}

/// Compiles `constraint`; an invalid schema or grammar is a 400 naming `param`.
fn compile(inner: &Inner, constraint: &Constraint, param: &str) -> Result<CompiledGrammar, Error> {
    vocabulary(inner)?.compile(constraint).map_err(|e| Error::invalid(param, e.to_string()))
}

/// `options` with `constraint` enforced on every choice, before the caller's own logits
/// processor if it has one. An invalid schema or grammar is a 400 naming `param`.
pub(crate) fn constrained_options(
    inner: &Inner,
    constraint: &Constraint,
    param: &str,
    options: RequestOptions,
) -> Result<RequestOptions, Error> {
    let compiled = Arc::new(compile(inner, constraint, param)?);
    let own = options.logits_processor;
    Ok(RequestOptions {
        logits_processor: Some(Arc::new(move || {
            let grammar = Box::new(compiled.processor());
            match &own {
                Some(make) => Box::new(Chain(grammar, make())),
                None => grammar,
            }
        })),
    })
}

/// Two processors, one after the other.
struct Chain(Box<dyn LogitsProcessor>, Box<dyn LogitsProcessor>);

impl LogitsProcessor for Chain {
    fn process(&mut self, generated: &[u32], logits: &mut [f32]) {
        self.0.process(generated, logits);
        self.1.process(generated, logits);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn response_formats_map_to_constraints() {
        assert_eq!(response_format_constraint(&ResponseFormat::Text), None);
        assert_eq!(response_format_constraint(&ResponseFormat::JsonObject), Some(Constraint::JsonObject));
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let f = ResponseFormat::json_schema("a", schema.clone());
        assert_eq!(response_format_constraint(&f), Some(Constraint::JsonSchema(schema)));
        let alias: ResponseFormat = serde_json::from_value(json!({"type": "json"})).expect("json alias");
        assert_eq!(alias, ResponseFormat::JsonObject);
    }

    #[test]
    fn chain_runs_both_processors_in_order() {
        struct Set(usize, f32);
        impl LogitsProcessor for Set {
            fn process(&mut self, _: &[u32], logits: &mut [f32]) {
                logits[self.0] = self.1;
            }
        }
        let mut c = Chain(Box::new(Set(0, 1.0)), Box::new(Set(0, 2.0)));
        let mut row = [0.0, 0.0];
        c.process(&[], &mut row);
        assert_eq!(row, [2.0, 0.0]);
    }
}
