//! [`ChatTemplate`]: a model's Jinja chat template, rendered exactly as Hugging Face
//! transformers' `apply_chat_template` renders it with Python's Jinja2.
//!
//! The template comes from GGUF metadata (`tokenizer.chat_template`), from a Hugging Face
//! `tokenizer_config.json`, or is the built-in [ChatML](ChatTemplate::chatml) fallback. It runs
//! on [MiniJinja](minijinja), set up the way transformers sets up Jinja2 (`builtins`): trailing
//! newline dropped, `trim_blocks` and `lstrip_blocks`, `{% break %}`/`{% continue %}`,
//! `raise_exception`, `strftime_now`, a `tojson` that is Python's `json.dumps`, Python
//! string/dict methods, and Python's way of printing `None`, `True`, floats, lists and dicts.
//!
//! OpenAI-shaped messages are normalized first: content-part arrays become one string, and
//! tool-call `arguments` sent as JSON strings become objects (see `render`).
//!
//! The golden tests (`tests/template_golden.rs`) hold the output to Python Jinja2's, byte for
//! byte, for the templates of SmolLM2, Qwen2.5-Coder, Gemma 3, Llama 3.1/3.2 and Mistral (v3),
//! and for the ChatML fallback.

mod builtins;
mod pyjson;
mod render;
mod strftime;

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use ferrite_tensor::gguf::GgufFile;
use minijinja::Environment;
use serde_json::{Map, Value};

pub use render::{normalize_message, PART_SEPARATOR};

use crate::{Error, Result, Tokenizer};

/// The GGUF metadata key holding the chat template.
pub const GGUF_KEY: &str = "tokenizer.chat_template";

/// The ChatML template [`ChatTemplate::chatml`] uses: `<|im_start|>role\ncontent<|im_end|>\n`
/// per message (`null` content printed as nothing), then `<|im_start|>assistant\n` when a
/// generation prompt is asked for.
pub const CHATML_SOURCE: &str = "{%- for message in messages %}
{{- '<|im_start|>' + message['role'] + '\\n' }}
{%- if message['content'] is string %}{{ message['content'] }}{% endif %}
{{- '<|im_end|>\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\\n' }}
{%- endif %}";

const NAME: &str = "chat_template";
/// The name of the template used instead when tools are declared, where a model has one.
const TOOL_USE: &str = "tool_use";
/// GGUF key of the `tool_use` template (llama.cpp's `tokenizer.chat_template.<name>`).
const GGUF_TOOL_USE_KEY: &str = "tokenizer.chat_template.tool_use";

/// A compiled chat template with the BOS/EOS texts it sees as `bos_token` / `eos_token`; for
/// models that have one, also the named `tool_use` template, which renders requests that
/// declare tools (as transformers picks it).
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    tool_use_source: Option<String>,
    bos_token: String,
    eos_token: String,
    clock: builtins::Clock,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("source_len", &self.source.len())
            .finish_non_exhaustive()
    }
}

fn template_error(e: &minijinja::Error) -> Error {
    match builtins::raised_message(e) {
        Some(msg) => Error::Template(msg),
        None => Error::Template(e.to_string()),
    }
}

/// The text of token `id`, or `""`.
fn token_text(tokenizer: &Tokenizer, id: Option<u32>) -> String {
    id.and_then(|id| tokenizer.token_str(id)).unwrap_or_default()
}

/// A token named in `tokenizer_config.json`: a string or `{"content": ...}`.
fn config_token(config: &Value, key: &str) -> Option<String> {
    match config.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

impl ChatTemplate {
    /// Compiles `source`. `bos_token` / `eos_token` are exposed to the template as `bos_token`
    /// / `eos_token`. A template that does not parse is an [`Error::Template`].
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate> {
        let clock = Arc::new(AtomicI64::new(builtins::REAL_TIME));
        let mut env = builtins::environment(clock.clone());
        env.add_template_owned(NAME, builtins::rewrite_generation_tags(source)).map_err(|e| template_error(&e))?;
        Ok(ChatTemplate {
            env,
            source: source.to_owned(),
            tool_use_source: None,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
            clock,
        })
    }

    /// Adds `source` as the `tool_use` template: requests that declare tools render with it.
    /// A template that does not parse is an [`Error::Template`].
    pub fn with_tool_use(mut self, source: &str) -> Result<ChatTemplate> {
        self.env
            .add_template_owned(TOOL_USE, builtins::rewrite_generation_tags(source))
            .map_err(|e| template_error(&e))?;
        self.tool_use_source = Some(source.to_owned());
        Ok(self)
    }

    /// The template in GGUF metadata `tokenizer.chat_template` (and the `tool_use` one in
    /// `tokenizer.chat_template.tool_use` when present), with the BOS/EOS texts of `tokenizer`
    /// (`""` where it has none); `Ok(None)` if the file has no template.
    pub fn from_gguf(gguf: &GgufFile, tokenizer: &Tokenizer) -> Result<Option<ChatTemplate>> {
        let text = |key: &str| -> Result<Option<&str>> {
            match gguf.get(key) {
                None => Ok(None),
                Some(v) => v
                    .as_str()
                    .map(Some)
                    .ok_or_else(|| Error::Metadata { key: key.to_owned(), problem: "not a string".to_owned() }),
            }
        };
        let Some(source) = text(GGUF_KEY)? else { return Ok(None) };
        let bos = token_text(tokenizer, tokenizer.bos_id());
        let eos = token_text(tokenizer, tokenizer.eos_id());
        let template = ChatTemplate::new(source, &bos, &eos)?;
        match text(GGUF_TOOL_USE_KEY)? {
            Some(tool_use) => template.with_tool_use(tool_use).map(Some),
            None => Ok(Some(template)),
        }
    }

    /// The `chat_template` of a Hugging Face `tokenizer_config.json`: a string, or a list of
    /// `{"name", "template"}` of which the one named `default` is taken (a list without one is
    /// an error, as in transformers) and the one named `tool_use`, if any, renders requests
    /// that declare tools. Without the key, a `chat_template.jinja` beside the
    /// config (where recent transformers saves it) is used. `Ok(None)` if there is neither.
    /// `bos_token` / `eos_token` are the config's, else `tokenizer`'s.
    pub fn from_tokenizer_config(path: &Path, tokenizer: &Tokenizer) -> Result<Option<ChatTemplate>> {
        let read =
            |p: &Path| std::fs::read_to_string(p).map_err(|source| Error::Io { path: p.display().to_string(), source });
        let config: Value = serde_json::from_str(&read(path)?)
            .map_err(|source| Error::Json { path: path.display().to_string(), source })?;
        let mut tool_use = None;
        let source = match config.get("chat_template") {
            None | Some(Value::Null) => {
                let sibling = path.with_file_name("chat_template.jinja");
                if !sibling.is_file() {
                    return Ok(None);
                }
                read(&sibling)?
            }
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(named)) => {
                let find = |name: &str| {
                    named
                        .iter()
                        .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
                        .and_then(|t| t.get("template"))
                        .and_then(Value::as_str)
                };
                tool_use = find(TOOL_USE).map(str::to_owned);
                match find("default") {
                    Some(s) => s.to_owned(),
                    None => {
                        return Err(Error::Template(format!(
                            "{}: `chat_template` lists named templates but none named `default`",
                            path.display()
                        )))
                    }
                }
            }
            Some(_) => {
                return Err(Error::Template(format!(
                    "{}: `chat_template` is neither a string nor a list of named templates",
                    path.display()
                )))
            }
        };
        let bos = config_token(&config, "bos_token").unwrap_or_else(|| token_text(tokenizer, tokenizer.bos_id()));
        let eos = config_token(&config, "eos_token").unwrap_or_else(|| token_text(tokenizer, tokenizer.eos_id()));
        let template = ChatTemplate::new(&source, &bos, &eos)?;
        match tool_use {
            Some(t) => template.with_tool_use(&t).map(Some),
            None => Ok(Some(template)),
        }
    }

    /// A plain ChatML template ([`CHATML_SOURCE`]), the fallback for models without one.
    pub fn chatml() -> ChatTemplate {
        #[allow(clippy::expect_used)]
        ChatTemplate::new(CHATML_SOURCE, "", "").expect("the built-in ChatML template compiles")
    }

    /// Pins the time `strftime_now` formats to `unix_secs` (seconds since the epoch, UTC), for
    /// reproducible prompts and tests. By default it is the system clock's.
    pub fn with_fixed_time(self, unix_secs: i64) -> ChatTemplate {
        self.clock.store(unix_secs.max(builtins::REAL_TIME + 1), Ordering::Relaxed);
        self
    }

    /// Renders OpenAI-shaped `messages` (objects with `role`, `content` (a string, `null`, or an
    /// array of `{"type": "text", "text"}` parts), and optionally `name`, `tool_calls`,
    /// `tool_call_id`) with the OpenAI `tools` declared (the `{"type": "function", "function":
    /// {...}}` objects), ending with the assistant's generation prompt when
    /// `add_generation_prompt`. Messages are normalized first (see [`normalize_message`]).
    ///
    /// Errors ([`Error::Template`]): a message the normalization rejects, a template calling
    /// `raise_exception(msg)` (the payload is `msg`), or a template failing at runtime (say,
    /// adding a string to `None`).
    pub fn render(&self, messages: &[Value], tools: Option<&[Value]>, add_generation_prompt: bool) -> Result<String> {
        self.render_with(messages, tools, add_generation_prompt, None)
    }

    /// [`render`](Self::render) with extra template variables (for templates that read e.g.
    /// `enable_thinking` or `date_string`); they may override the standard ones.
    pub fn render_with(
        &self,
        messages: &[Value],
        tools: Option<&[Value]>,
        add_generation_prompt: bool,
        extra: Option<&Map<String, Value>>,
    ) -> Result<String> {
        let ctx = render::context(messages, tools, add_generation_prompt, &self.bos_token, &self.eos_token, extra)?;
        // transformers: the `tool_use` template whenever tools are passed and the model has one.
        let name = if tools.is_some() && self.tool_use_source.is_some() { TOOL_USE } else { NAME };
        let template = self.env.get_template(name).map_err(|e| template_error(&e))?;
        template.render(minijinja::Value::from_serialize(&ctx)).map_err(|e| template_error(&e))
    }

    /// The template source as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The source of the template that renders requests declaring tools: the `tool_use` one
    /// where the model has it, else [`source`](Self::source). Tool-call formats are read from it.
    pub fn tools_source(&self) -> &str {
        self.tool_use_source.as_deref().unwrap_or(&self.source)
    }

    /// The text the template sees as `bos_token`.
    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    /// The text the template sees as `eos_token`.
    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }
}

#[cfg(test)]
mod tests;
