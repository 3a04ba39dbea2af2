//! Golden tests: [`ChatTemplate`] against Python Jinja2 rendering the way transformers'
//! `apply_chat_template` does, byte for byte.
//!
//! `tests/golden/templates.json` comes from `scripts/golden_templates.py`: the chat templates of
//! SmolLM2 and Qwen2.5-Coder read from their GGUF files, those of Gemma 3 (instruction-tuned),
//! Llama 3.1, Llama 3.2 and Mistral (v3: `[AVAILABLE_TOOLS]`, `[TOOL_CALLS]`) from
//! `scripts/chat_templates/`, the ChatML fallback, and a synthetic
//! template exercising `raise_exception`, `strftime_now` (pinned), `tojson` arguments, loop
//! controls and `{% generation %}`, each rendered over the same conversations (stored as an
//! OpenAI client sends them; the script applies ferrite's normalization before Jinja2 sees
//! them). A case Python rejects must be an error here too: with the template's own message
//! when it came from `raise_exception`.
//!
//! The model templates are loaded with [`ChatTemplate::from_gguf`], so the test also checks
//! that the GGUF's template and BOS/EOS texts are read as Python reads them; when a model file
//! is missing those templates are skipped (a failure under `CI=true`).

use std::collections::BTreeMap;

use ferrite_chat::{ChatTemplate, Error, Tokenizer};
use ferrite_tensor::gguf::GgufFile;
use ferrite_tensor::model_files::test_model;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Golden {
    fixed_time: i64,
    templates: BTreeMap<String, TemplateSpec>,
    cases: Vec<Case>,
    outputs: BTreeMap<String, BTreeMap<String, Outcome>>,
}

#[derive(Deserialize)]
struct TemplateSpec {
    gguf: Option<String>,
    source: String,
    bos_token: String,
    eos_token: String,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    messages: Vec<Value>,
    tools: Option<Vec<Value>>,
    add_generation_prompt: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    /// Rendered text.
    Text(String),
    /// `raise_exception` was called with this message.
    Raised(String),
    /// Some other template failure (Python's exception, for the record).
    Error(String),
}

fn golden() -> Golden {
    serde_json::from_str(include_str!("golden/templates.json")).expect("golden JSON")
}

/// The first differing line, with context, for a readable failure.
fn diff(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.split('\n').collect(), got.split('\n').collect());
    let i = w.iter().zip(&g).position(|(a, b)| a != b).unwrap_or(w.len().min(g.len()));
    let from = i.saturating_sub(2);
    let show = |lines: &[&str]| {
        lines
            .iter()
            .enumerate()
            .skip(from)
            .take(5)
            .map(|(n, l)| format!("  {:>3} {l:?}", n + 1))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (wl, gl) = (w.get(i).copied().unwrap_or_default(), g.get(i).copied().unwrap_or_default());
    let col = wl.chars().zip(gl.chars()).take_while(|(a, b)| a == b).count();
    let near = |l: &str| l.chars().skip(col.saturating_sub(20)).take(50).collect::<String>();
    format!(
        "first difference at line {} column {}: want {:?}, got {:?}\n want:\n{}\n got:\n{}",
        i + 1,
        col + 1,
        near(wl),
        near(gl),
        show(&w),
        show(&g)
    )
}

fn check_case(name: &str, template: &ChatTemplate, case: &Case, want: &Outcome) -> Option<String> {
    let got = template.render(&case.messages, case.tools.as_deref(), case.add_generation_prompt);
    let case_name = &case.name;
    match (want, got) {
        (Outcome::Text(w), Ok(g)) if *w == g => None,
        (Outcome::Text(w), Ok(g)) => Some(format!("{name}/{case_name}: output differs; {}", diff(w, &g))),
        (Outcome::Text(_), Err(e)) => Some(format!("{name}/{case_name}: Python renders it, we fail: {e}")),
        (Outcome::Raised(w), Err(Error::Template(g))) if *w == g => None,
        (Outcome::Raised(w), got) => Some(format!("{name}/{case_name}: want raise_exception({w:?}), got {got:?}")),
        (Outcome::Error(_), Err(Error::Template(_))) => None,
        (Outcome::Error(w), got) => Some(format!("{name}/{case_name}: Python fails ({w}), we give {got:?}")),
    }
}

/// The template named `name`, loaded as ferrite loads it; `None` if its model file is missing.
fn load(name: &str, spec: &TemplateSpec, fixed_time: i64) -> Option<ChatTemplate> {
    let template = match (name, &spec.gguf) {
        ("chatml", _) => {
            let t = ChatTemplate::chatml();
            assert_eq!(t.source(), spec.source, "CHATML_SOURCE differs from the golden script's copy");
            t
        }
        (_, Some(file)) => {
            let path = test_model(file)?;
            let gguf = GgufFile::open(&path).expect("open GGUF");
            let tok = Tokenizer::from_gguf(&gguf).expect("tokenizer");
            let t = ChatTemplate::from_gguf(&gguf, &tok).expect("compile").expect("GGUF has a chat template");
            assert_eq!(t.source(), spec.source, "{name}: template source differs from Python's read");
            assert_eq!((t.bos_token(), t.eos_token()), (spec.bos_token.as_str(), spec.eos_token.as_str()));
            t
        }
        _ => ChatTemplate::new(&spec.source, &spec.bos_token, &spec.eos_token).expect("compile"),
    };
    Some(template.with_fixed_time(fixed_time))
}

fn check_template(name: &str) {
    let golden = golden();
    let spec = golden.templates.get(name).expect("template in golden file");
    let Some(template) = load(name, spec, golden.fixed_time) else { return };
    let outputs = golden.outputs.get(name).expect("outputs in golden file");
    assert!(golden.cases.len() >= 30, "only {} cases", golden.cases.len());
    let bad: Vec<String> = golden
        .cases
        .iter()
        .filter_map(|case| {
            let want = outputs.get(&case.name).expect("an outcome per case");
            check_case(name, &template, case, want)
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{name}: {} of {} cases differ from Jinja2:\n{}",
        bad.len(),
        golden.cases.len(),
        bad.join("\n\n")
    );
}

#[test]
fn smollm2_matches_jinja2() {
    check_template("smollm2");
}

#[test]
fn qwen25_matches_jinja2() {
    check_template("qwen25");
}

#[test]
fn gemma3_matches_jinja2() {
    check_template("gemma3");
}

#[test]
fn llama31_matches_jinja2() {
    check_template("llama31");
}

#[test]
fn llama32_matches_jinja2() {
    check_template("llama32");
}

#[test]
fn mistral_matches_jinja2() {
    check_template("mistral");
}

#[test]
fn chatml_matches_jinja2() {
    check_template("chatml");
}

#[test]
fn synthetic_matches_jinja2() {
    check_template("synthetic");
}

#[test]
fn golden_covers_raise_exception() {
    let golden = golden();
    let raised = golden.outputs.values().flat_map(|o| o.values()).filter(|o| matches!(o, Outcome::Raised(_))).count();
    assert!(raised >= 3, "the golden file should hold raise_exception cases");
}

#[test]
fn tool_call_formats_of_golden_templates() {
    use ferrite_chat::ToolCallFormat::{Hermes, Llama3Json, MistralJson};
    let golden = golden();
    let want = [
        ("qwen25", Some(Hermes)),
        ("llama31", Some(Llama3Json)),
        ("llama32", Some(Llama3Json)),
        ("mistral", Some(MistralJson)),
        ("gemma3", None),
        ("smollm2", None),
        ("chatml", None),
    ];
    for (name, format) in want {
        let source = &golden.templates.get(name).expect("template in golden file").source;
        assert_eq!(ferrite_chat::ToolCallFormat::detect(source), format, "{name}");
    }
}
