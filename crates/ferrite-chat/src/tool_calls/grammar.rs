//! The Lark grammar (llguidance syntax, JSON Schemas embedded with `%json`) that makes a model
//! call a tool in its own format: for `tool_choice: "required"` (any of the tools) or a named
//! function. The arguments follow the function's `parameters` schema, so they always parse.
//!
//! Hermes, one call:
//!
//! ```text
//! start: tool_call
//! tool_call: "<tool_call>\n" call "\n</tool_call>"
//! call: %json {"type": "object", "properties": {"name": {"const": "get_weather"},
//!              "arguments": {...parameters...}}, "required": ["name", "arguments"], ...}
//! ```
//!
//! With parallel calls allowed, `start: tool_call ("\n" tool_call)*`. Llama 3 JSON writes
//! `{"name", "parameters"}` objects separated by `; `; Mistral v3 a `[TOOL_CALLS] [...]` array of
//! `{"name", "arguments"}` objects; newer Mistral `[TOOL_CALLS]name[ARGS]{...}` with one
//! alternative per function. Several tools become an `anyOf` of their call schemas.

use serde_json::{json, Value};

use super::ToolCallFormat;
use crate::{Error, Result};

/// Which call the grammar forces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForcedChoice<'a> {
    /// At least one call, of any of the tools (`tool_choice: "required"`).
    Required,
    /// A call of this function (`tool_choice: {"type": "function", "function": {"name"}}`).
    Named(&'a str),
}

/// One function: its name and parameter schema.
struct Function<'a> {
    name: &'a str,
    parameters: Value,
}

/// The functions of OpenAI-shaped `tools` (`{"type": "function", "function": {"name",
/// "parameters"}}`); a missing or empty `parameters` means any object.
fn functions(tools: &[Value]) -> Result<Vec<Function<'_>>> {
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            let f = tool.get("function").unwrap_or(tool);
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::ToolCalls(format!("tools[{i}] has no function name")))?;
            let parameters = match f.get("parameters") {
                None | Some(Value::Null) => json!({"type": "object"}),
                Some(Value::Object(o)) if o.is_empty() => json!({"type": "object"}),
                Some(p @ Value::Object(_)) => p.clone(),
                Some(_) => return Err(Error::ToolCalls(format!("tools[{i}].function.parameters is not an object"))),
            };
            Ok(Function { name, parameters })
        })
        .collect()
}

/// The schema of one call object: `{"name": <const>, args_key: <parameters>}`.
fn call_schema(f: &Function<'_>, args_key: &str) -> Value {
    json!({
        "type": "object",
        "properties": {"name": {"const": f.name}, args_key: f.parameters},
        "required": ["name", args_key],
        "additionalProperties": false,
    })
}

/// `schemas` as one schema: itself when alone, else their `anyOf`.
fn any_of(mut schemas: Vec<Value>) -> Value {
    if schemas.len() == 1 {
        schemas.remove(0)
    } else {
        json!({ "anyOf": schemas })
    }
}

/// A Lark string literal (JSON string syntax, which Lark's accepts).
fn lit(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// The grammar forcing `choice` among `tools` in `format`; `parallel` allows several calls.
///
/// Errors ([`Error::ToolCalls`]): no tools, a named function not among them, a tool without a
/// name or with non-object `parameters`.
pub fn lark_grammar(
    format: ToolCallFormat,
    tools: &[Value],
    choice: ForcedChoice<'_>,
    parallel: bool,
) -> Result<String> {
    let all = functions(tools)?;
    let chosen: Vec<&Function<'_>> = match choice {
        ForcedChoice::Required => all.iter().collect(),
        ForcedChoice::Named(name) => all.iter().filter(|f| f.name == name).take(1).collect(),
    };
    if chosen.is_empty() {
        return Err(Error::ToolCalls(match choice {
            ForcedChoice::Required => "tool_choice \"required\" needs at least one tool".to_owned(),
            ForcedChoice::Named(name) => format!("tool_choice names function {name:?}, which is not in tools"),
        }));
    }
    let schema_of = |key: &str| any_of(chosen.iter().map(|f| call_schema(f, key)).collect()).to_string();
    let repeat = |item: &str, sep: &str| {
        if parallel {
            format!("{item} ({} {item})*", lit(sep))
        } else {
            item.to_owned()
        }
    };
    let text = match format {
        ToolCallFormat::Hermes => format!(
            "start: {}\ntool_call: {} call {}\ncall: %json {}\n",
            repeat("tool_call", "\n"),
            lit("<tool_call>\n"),
            lit("\n</tool_call>"),
            schema_of("arguments")
        ),
        ToolCallFormat::Llama3Json => {
            format!("start: {}\ncall: %json {}\n", repeat("call", "; "), schema_of("parameters"))
        }
        ToolCallFormat::MistralJson => format!(
            "start: {} {} {}\ncall: %json {}\n",
            lit("[TOOL_CALLS] ["),
            repeat("call", ", "),
            lit("]"),
            schema_of("arguments")
        ),
        ToolCallFormat::MistralArgs => {
            let alternatives: Vec<String> =
                (0..chosen.len()).map(|i| format!("{} {} args_{i}", lit(chosen[i].name), lit("[ARGS]"))).collect();
            let mut text = format!(
                "start: {}\ntool_call: {} call\ncall: {}\n",
                if parallel { "tool_call+" } else { "tool_call" },
                lit("[TOOL_CALLS]"),
                alternatives.join(" | ")
            );
            for (i, f) in chosen.iter().enumerate() {
                text.push_str(&format!("args_{i}: %json {}\n", f.parameters));
            }
            text
        }
    };
    Ok(text)
}
