//! What Hugging Face's Python renderer gives a chat template beyond plain Jinja, rebuilt on a
//! MiniJinja [`Environment`]: the `raise_exception` and `strftime_now` globals, the `tojson`
//! filter with `json.dumps` semantics, Python string/dict/list methods (MiniJinja-contrib's
//! `pycompat`), Python's printing of `None`, `True`, floats, lists and dicts, the
//! `{% generation %}` block of transformers' `AssistantTracker` extension, and the environment
//! options transformers sets (`trim_blocks`, `lstrip_blocks`, loop controls, no autoescape).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use minijinja::value::{Kwargs, Rest, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Value};

use super::pyjson::{self, DumpOptions};
use super::strftime;

/// The error `raise_exception(msg)` attaches to MiniJinja's, so that rendering can hand the
/// template's own message back untouched.
#[derive(Debug)]
pub struct Raised(pub String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

/// The message of a `raise_exception` call anywhere in `err`'s chain of sources.
pub fn raised_message(err: &Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<Raised>() {
            return Some(r.0.clone());
        }
        cur = e.source();
    }
    None
}

/// A pinned clock for `strftime_now`: seconds since the epoch, or `i64::MIN` for the real clock.
pub type Clock = Arc<AtomicI64>;

/// The value of a [`Clock`] that means "use the system clock".
pub const REAL_TIME: i64 = i64::MIN;

/// A MiniJinja environment configured as transformers configures Jinja2 for chat templates.
pub fn environment(clock: Clock) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(|out, _state, value| {
        if value.is_undefined() {
            return Ok(());
        }
        out.write_str(&pyjson::py_str(value)).map_err(Error::from)
    });
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", move |format: &str| {
        let now = match clock.load(Ordering::Relaxed) {
            REAL_TIME => strftime::unix_now(),
            pinned => pinned,
        };
        strftime::strftime(format, now)
    });
    env.add_filter("tojson", tojson);
    // Jinja2's `iterable` is "`iter(x)` works": not for `None` (MiniJinja iterates it as empty).
    // Gemma 3's template relies on it to reject an assistant message with `null` content.
    env.add_test("iterable", |v: &Value| !v.is_none() && v.try_iter().is_ok());
    env
}

fn raise_exception(message: Option<Value>) -> Result<Value, Error> {
    let msg = message.map(|m| pyjson::py_str(&m)).unwrap_or_default();
    Err(Error::new(ErrorKind::InvalidOperation, msg.clone()).with_source(Raised(msg)))
}

/// The largest `tojson` indent accepted.
const MAX_INDENT: i64 = 1024;

fn bool_arg(v: &Value) -> bool {
    v.is_true()
}

/// `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`, transformers'
/// filter: arguments by position in that order, or by name.
fn tojson(value: &Value, args: Rest<Value>) -> Result<String, Error> {
    const NAMES: [&str; 4] = ["ensure_ascii", "indent", "separators", "sort_keys"];
    let mut slots: [Option<Value>; 4] = Default::default();
    let mut positional = 0;
    for arg in args.iter() {
        if arg.is_kwargs() {
            let kwargs = Kwargs::try_from(arg.clone())?;
            for (i, name) in NAMES.iter().enumerate() {
                if let Some(v) = kwargs.get::<Option<Value>>(name)? {
                    slots[i] = Some(v);
                }
            }
            kwargs.assert_all_used()?;
        } else {
            let slot = slots
                .get_mut(positional)
                .ok_or_else(|| Error::new(ErrorKind::TooManyArguments, "tojson takes at most 4 arguments"))?;
            *slot = Some(arg.clone());
            positional += 1;
        }
    }
    let [ensure_ascii, indent, separators, sort_keys] = slots;
    let indent = match indent {
        Some(v) if v.is_none() => None,
        Some(v) if v.kind() == ValueKind::String => Some(v.as_str().unwrap_or_default().to_owned()),
        Some(v) => {
            let n = i64::try_from(v).map_err(|_| {
                Error::new(ErrorKind::InvalidOperation, "tojson: indent must be an integer or a string")
            })?;
            // Python accepts any size; a bound keeps a bad template from exhausting memory.
            if n > MAX_INDENT {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: indent {n} is over {MAX_INDENT}"),
                ));
            }
            Some(" ".repeat(usize::try_from(n).unwrap_or(0)))
        }
        None => None,
    };
    let mut opts = DumpOptions {
        ensure_ascii: ensure_ascii.as_ref().is_some_and(bool_arg),
        item_sep: if indent.is_some() { "," } else { ", " }.to_owned(),
        indent,
        sort_keys: sort_keys.as_ref().is_some_and(bool_arg),
        ..DumpOptions::default()
    };
    if let Some(seps) = separators.filter(|s| !s.is_none()) {
        let parts: Vec<Value> = seps.try_iter()?.collect();
        match parts.as_slice() {
            [item, key] if item.as_str().is_some() && key.as_str().is_some() => {
                opts.item_sep = item.as_str().unwrap_or_default().to_owned();
                opts.key_sep = key.as_str().unwrap_or_default().to_owned();
            }
            _ => return Err(Error::new(ErrorKind::InvalidOperation, "tojson: separators must be two strings")),
        }
    }
    pyjson::dumps(value, &opts)
}

/// Rewrites transformers' `{% generation %}` / `{% endgeneration %}` block tags (which mark the
/// assistant's tokens and otherwise render their body unchanged) as `{% if true %}` /
/// `{% endif %}`, keeping their whitespace-control markers.
pub fn rewrite_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        let Some(end) = tag.find("%}") else {
            out.push_str(tag);
            return out;
        };
        let inner = &tag[2..end];
        let open = if inner.starts_with(['-', '+']) { &inner[..1] } else { "" };
        let after_open = &inner[open.len()..];
        let close = if after_open.ends_with(['-', '+']) { &after_open[after_open.len() - 1..] } else { "" };
        let word = after_open[..after_open.len() - close.len()].trim();
        match word {
            "generation" => out.push_str(&format!("{{%{open} if true {close}%}}")),
            "endgeneration" => out.push_str(&format!("{{%{open} endif {close}%}}")),
            _ => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_become_if_blocks() {
        let src = "{% for m in x %}{%- generation -%} a {% endgeneration %}{% endfor %}{{ '%}' }}";
        assert_eq!(rewrite_generation_tags(src), "{% for m in x %}{%- if true -%} a {% endif %}{% endfor %}{{ '%}' }}");
        assert_eq!(rewrite_generation_tags("{% generation"), "{% generation");
        assert_eq!(rewrite_generation_tags("{%-%}{%%}{%+-%}"), "{%-%}{%%}{%+-%}");
    }
}
