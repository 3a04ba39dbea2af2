//! End-to-end tests with the official OpenAI clients: the `openai` Python package and the
//! `openai` npm package (pinned and installed by `cargo xtask test`, or `cargo xtask clients`,
//! into `$FERRITE_CLIENTS`, default `~/.cache/ferrite/clients`) run the scripts under
//! `tests/clients/` against a real `ferrite serve` that serves SmolLM2 under DeepInfra's model
//! name, so that DeepInfra's examples run with only the base URL and key changed.
//!
//! A missing client, interpreter or model fails the test under `CI=true`; elsewhere the test
//! prints `SKIPPED: ...` and passes.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{clients_dir, skip, Server};

/// The name DeepInfra's examples use; ferrite serves SmolLM2 under it.
const MODEL_NAME: &str = "meta-llama/Meta-Llama-3-8B-Instruct";
/// How long one client script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(600);
/// The key of the server that needs one.
const API_KEY: &str = "sk-ferrite-test-key";

#[derive(Clone, Copy, Debug)]
enum Lang {
    Python,
    Node,
}

/// An installed client: the interpreter that runs its scripts, and the clients folder.
struct Client {
    lang: Lang,
    program: PathBuf,
    dir: PathBuf,
}

/// The client for `lang`, or `None` (skipped) when it is not installed.
fn client(lang: Lang) -> Option<Client> {
    let dir = clients_dir();
    let (program, probe): (PathBuf, &[&str]) = match lang {
        Lang::Python => (dir.join("venv/bin/python"), &["-c", "import openai"]),
        Lang::Node => ("node".into(), &["--version"]),
    };
    let works = Command::new(&program).args(probe).stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !works.is_ok_and(|s| s.success()) {
        return skip(&format!("{lang:?} client: `{} {}` does not run", program.display(), probe.join(" ")));
    }
    if let Lang::Node = lang {
        let manifest = dir.join("node/node_modules/openai/package.json");
        if !manifest.exists() {
            return skip(&format!("Node.js client: {} is missing", manifest.display()));
        }
    }
    Some(Client { lang, program, dir })
}

/// Removes a copied script when the test ends, however it ends.
struct Copied(PathBuf);

impl Drop for Copied {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Client {
    /// Runs `tests/clients/{script}.{py,mjs}` against `server` and returns its stdout; panics
    /// with its whole output when it fails or runs past [`SCRIPT_TIMEOUT`].
    fn run(&self, script: &str, server: &Server, key: Option<&str>) -> String {
        let lang = self.lang;
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
        let (path, _copy) = match lang {
            Lang::Python => (src.join(format!("{script}.py")), None),
            Lang::Node => {
                // An ES module finds `openai` in a node_modules above it (NODE_PATH does not
                // apply to `import`): run a copy from the folder the package was installed into.
                let to = self.dir.join(format!("node/ferrite-test-{script}-{}.mjs", std::process::id()));
                std::fs::copy(src.join(format!("{script}.mjs")), &to).unwrap();
                (to.clone(), Some(Copied(to)))
            }
        };
        let mut child = Command::new(&self.program)
            .arg(&path)
            .env("FERRITE_BASE_URL", &server.base)
            .env("FERRITE_API_KEY", key.unwrap_or("none"))
            .env_remove("OPENAI_BASE_URL")
            .env_remove("OPENAI_API_KEY")
            .env("PYTHONUNBUFFERED", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.program.display()));
        let pipe = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = r.read_to_string(&mut s);
                s
            })
        };
        let out = pipe(Box::new(child.stdout.take().unwrap()));
        let err = pipe(Box::new(child.stderr.take().unwrap()));
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > SCRIPT_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let (out, err) = (out.join().unwrap(), err.join().unwrap());
        let took = started.elapsed().as_secs_f32();
        eprintln!("{lang:?} {script}: {took:.1}s\n--- stdout\n{out}--- stderr\n{err}---");
        match status {
            Some(s) if s.success() => out,
            Some(s) => panic!("{lang:?} {script} failed ({s}):\n--- stdout\n{out}\n--- stderr\n{err}"),
            None => panic!("{lang:?} {script} ran past {SCRIPT_TIMEOUT:?}:\n--- stdout\n{out}\n--- stderr\n{err}"),
        }
    }
}

/// A server for SmolLM2 under DeepInfra's model name, or `None` (skipped) without the model.
fn server(extra: &[&str]) -> Option<Server> {
    Server::smollm2(MODEL_NAME, extra)
}

/// Checks what DeepInfra's examples printed: each of the six runs, headed `### NAME stream=B`,
/// ends in `FINISH_REASON PROMPT_TOKENS COMPLETION_TOKENS` (streamed) or `PROMPT COMPLETION`
/// and prints some content before; a prompt counts the same tokens streamed or not.
fn check_examples(lang: Lang, out: &str) {
    let want = ["chat", "conversation", "completions"]
        .iter()
        .flat_map(|e| [format!("{e} stream=True"), format!("{e} stream=False")])
        .chain(["end".to_string()])
        .collect::<Vec<_>>();
    // A heading is `### NAME` for one of the script's sections; sampled model text may start a
    // line with `### ` too (a Markdown heading), and belongs to the section it is printed in.
    let mut sections: Vec<(String, Vec<&str>)> = Vec::new();
    for line in out.lines() {
        match line.strip_prefix("### ").filter(|h| want.iter().any(|w| w == h)) {
            Some(head) => sections.push((head.to_string(), Vec::new())),
            None => sections.last_mut().unwrap_or_else(|| panic!("output before a heading: {line}")).1.push(line),
        }
    }
    let heads: Vec<&str> = sections.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(heads, want, "{lang:?}: runs\n{out}");
    let mut prompt_tokens = std::collections::HashMap::new();
    for (head, lines) in &sections[..6] {
        let (last, content) = lines.split_last().unwrap_or_else(|| panic!("{lang:?} {head}: printed nothing"));
        let words: Vec<&str> = last.split(' ').collect();
        let counts = if head.ends_with("stream=True") {
            assert_eq!(words.len(), 3, "{lang:?} {head}: last line {last:?}");
            assert!(["stop", "length"].contains(&words[0]), "{lang:?} {head}: finish reason in {last:?}");
            &words[1..]
        } else {
            &words[..]
        };
        let counts: Vec<u32> = counts.iter().map(|w| w.parse().unwrap_or(0)).collect();
        assert!(counts.len() == 2 && counts.iter().all(|&n| n > 0), "{lang:?} {head}: token counts in {last:?}");
        let text: String = content.iter().filter(|l| !["None", "null", "undefined"].contains(l)).copied().collect();
        assert!(!text.trim().is_empty(), "{lang:?} {head}: no content in {lines:?}");
        let example = head.split(' ').next().unwrap();
        let first = *prompt_tokens.entry(example).or_insert(counts[0]);
        assert_eq!(first, counts[0], "{lang:?} {example}: prompt tokens streamed vs not");
    }
}

/// A script that checks itself must end with `### done N checks`.
fn check_done(lang: Lang, script: &str, out: &str) {
    let last = out.lines().last().unwrap_or_default();
    assert!(last.starts_with("### done ") && last.contains(" checks"), "{lang:?} {script}: ended with {last:?}");
    eprintln!("{lang:?} {script}: {last}");
}

fn examples(lang: Lang) {
    let Some(client) = client(lang) else { return };
    let Some(s) = server(&[]) else { return };
    check_examples(lang, &client.run("deepinfra_examples", &s, None));
}

fn self_checking(lang: Lang, script: &str, key: Option<&str>) {
    let Some(client) = client(lang) else { return };
    let extra: Vec<&str> = key.map(|k| vec!["--api-key", k]).unwrap_or_default();
    let Some(s) = server(&extra) else { return };
    check_done(lang, script, &client.run(script, &s, key));
}

#[test]
fn python_deepinfra_examples() {
    examples(Lang::Python);
}

#[test]
fn node_deepinfra_examples() {
    examples(Lang::Node);
}

#[test]
fn python_usage_logprobs_echo_seed() {
    self_checking(Lang::Python, "extras", None);
}

#[test]
fn node_usage_logprobs_echo_seed() {
    self_checking(Lang::Node, "extras", None);
}

#[test]
fn python_errors_and_api_keys() {
    self_checking(Lang::Python, "errors_and_keys", Some(API_KEY));
}

#[test]
fn node_errors_and_api_keys() {
    self_checking(Lang::Node, "errors_and_keys", Some(API_KEY));
}

/// DeepInfra's embeddings example and both encodings, on all-MiniLM-L6-v2 served under the
/// example's model name.
#[test]
fn python_embeddings_both_encodings() {
    let Some(client) = client(Lang::Python) else { return };
    let Some(model) = ferrite_tensor::model_files::test_model(ferrite_tensor::model_files::MINILM) else { return };
    let s = Server::start(&["--model", model.to_str().unwrap(), "--name", "BAAI/bge-large-en-v1.5"], &[]);
    check_done(Lang::Python, "embeddings", &client.run("embeddings", &s, None));
}

/// OpenAI's weather tool example on Qwen2.5-Coder-0.5B-Instruct (Hermes tool calls), whole and
/// streamed, with the result sent back (`tests/clients/tools.py`).
#[test]
fn python_tool_calls() {
    let Some(client) = client(Lang::Python) else { return };
    let Some(model) = ferrite_tensor::model_files::test_model(ferrite_tensor::model_files::QWEN25) else { return };
    let s = Server::start(&["--model", model.to_str().unwrap(), "--name", "qwen2.5-coder"], &[]);
    check_done(Lang::Python, "tools", &client.run("tools", &s, None));
}

/// `response_format` json_schema (also through `chat.completions.parse` with a pydantic model)
/// and json_object with the Python client, on Qwen2.5-Coder.
#[test]
fn python_json_response_formats() {
    let Some(client) = client(Lang::Python) else { return };
    let Some(model) = ferrite_tensor::model_files::test_model(ferrite_tensor::model_files::QWEN25) else { return };
    let s = Server::start(&["--model", model.to_str().unwrap(), "--name", "qwen2.5-coder"], &[]);
    check_done(Lang::Python, "json_mode", &client.run("json_mode", &s, None));
}

/// DeepInfra's image generation example (`size="256x256"`, `n` 1 and 2) and the extensions,
/// on the tiny random FLUX pipeline served under the name hosted APIs give FLUX.1 [schnell]
/// (`tests/clients/images.py`; the PNGs are opened with PIL).
#[test]
fn python_images_seed_example() {
    let Some(client) = client(Lang::Python) else { return };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ferrite-models/tests/fixtures/tiny-flux");
    if !dir.join("model_index.json").exists() {
        return skip(&format!("the tiny FLUX pipeline {} is missing", dir.display())).unwrap_or(());
    }
    let s = Server::start(&["--model", dir.to_str().unwrap(), "--name", "black-forest-labs/FLUX-1-schnell"], &[]);
    check_done(Lang::Python, "images", &client.run("images", &s, None));
}
