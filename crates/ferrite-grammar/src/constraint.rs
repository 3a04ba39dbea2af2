//! [`Constraint`]: what a choice's output must match, compiled to an llguidance grammar.

use llguidance::api::TopLevelGrammar;
use serde_json::{json, Value};

/// What a constrained choice's output must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// Any JSON object (OpenAI's `{"type":"json_object"}`).
    JsonObject,
    /// JSON valid under this JSON schema (OpenAI's `json_schema` response format).
    JsonSchema(Value),
    /// A grammar in llguidance's Lark dialect; `%json { ... }` embeds a JSON schema.
    Lark(String),
}

impl Constraint {
    /// The llguidance grammar of this constraint.
    ///
    /// JSON may be laid out freely (compact or pretty-printed, as the model prefers), but each
    /// run of whitespace between two tokens of JSON is at most [`MAX_WHITESPACE`] characters:
    /// unbounded whitespace would let a small model fill `max_tokens` with newlines. A schema
    /// that sets its own `x-guidance` options keeps them.
    pub(crate) fn grammar(&self) -> TopLevelGrammar {
        match self {
            Constraint::JsonObject => TopLevelGrammar::from_json_schema(with_layout(json!({"type": "object"}))),
            Constraint::JsonSchema(schema) => TopLevelGrammar::from_json_schema(with_layout(schema.clone())),
            Constraint::Lark(text) => TopLevelGrammar::from_lark(text.clone()),
        }
    }
}

/// The longest run of whitespace allowed between two JSON tokens (enough for a newline and
/// indentation ten levels deep).
pub const MAX_WHITESPACE: usize = 24;

/// Adds ferrite's JSON layout (see [`Constraint::grammar`]) to an object schema without
/// `x-guidance` options; other schemas (`true`, or not an object) are left for llguidance to judge.
fn with_layout(mut schema: Value) -> Value {
    if let Value::Object(map) = &mut schema {
        let pattern = format!(r"[\x20\x0A\x0D\x09]{{1,{MAX_WHITESPACE}}}");
        map.entry("x-guidance").or_insert_with(|| json!({"whitespace_pattern": pattern}));
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_added_but_never_overrides_the_schema_own() {
        let s = with_layout(json!({"type": "object"}));
        assert_eq!(s["x-guidance"]["whitespace_pattern"], r"[\x20\x0A\x0D\x09]{1,24}");
        let own = json!({"type": "object", "x-guidance": {"whitespace_flexible": true}});
        assert_eq!(with_layout(own.clone()), own);
        assert_eq!(with_layout(json!(true)), json!(true));
    }
}
