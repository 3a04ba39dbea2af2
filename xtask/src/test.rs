//! `cargo xtask test`: the one command CI and newcomers run. System packages, then the models,
//! then the official OpenAI clients, then `cargo test --workspace` (the `test` profile,
//! opt-level 3), then the docs and a packaging dry run, then a summary.

use crate::apt;
use crate::checks;
use crate::clients;
use crate::human;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestArgs {
    pub models_dir: PathBuf,
    pub skip_fetch: bool,
    /// Passed on to `cargo test` (what came after `--`).
    pub cargo_args: Vec<String>,
}

struct Stage {
    name: &'static str,
    ok: bool,
    detail: String,
    took: Duration,
}

pub fn run(args: &TestArgs) -> Result<()> {
    let started = Instant::now();
    let ci = std::env::var("CI").unwrap_or_default();
    eprintln!(
        "xtask test: models in {}, CI={}",
        args.models_dir.display(),
        if ci.is_empty() { "(unset)" } else { &ci }
    );
    let mut stages = Vec::new();

    let t = Instant::now();
    let mut packages = apt::TEST_PACKAGES.to_vec();
    packages.extend(clients::system_packages_needed());
    let apt = apt::ensure_apt_packages(&packages);
    let ok = apt.is_ok();
    let detail = match &apt {
        Ok(installed) if installed.is_empty() && packages.is_empty() => "none needed".into(),
        Ok(installed) if installed.is_empty() => "all present".into(),
        Ok(installed) => format!("installed {}", installed.join(" ")),
        Err(e) => format!("{e:#}"),
    };
    stages.push(Stage { name: "system packages", ok, detail, took: t.elapsed() });

    if ok {
        let t = Instant::now();
        let (ok, detail) = if args.skip_fetch {
            (true, "skipped (--skip-fetch)".to_string())
        } else {
            match crate::fetch_models(&args.models_dir, &[]) {
                Ok(reports) => (true, format!("{} model(s) ok", reports.len())),
                Err(e) => (false, format!("{e:#}")),
            }
        };
        stages.push(Stage { name: "fetch-models", ok, detail, took: t.elapsed() });
    }

    let clients_dir = clients::clients_dir(&args.models_dir);
    if stages.iter().all(|s| s.ok) {
        let t = Instant::now();
        let (ok, detail) = if args.skip_fetch {
            (true, "skipped (--skip-fetch)".to_string())
        } else {
            match clients::ensure_clients(&clients_dir) {
                Ok(detail) => (true, detail),
                Err(e) => (false, format!("{e:#}")),
            }
        };
        stages.push(Stage { name: "openai clients", ok, detail, took: t.elapsed() });
    }

    if stages.iter().all(|s| s.ok) {
        let t = Instant::now();
        let (ok, detail) = match cargo_test(&args.models_dir, &clients_dir, &args.cargo_args) {
            Ok(c) => (c.succeeded(), c.describe()),
            Err(e) => (false, format!("{e:#}")),
        };
        stages.push(Stage { name: "cargo test", ok, detail, took: t.elapsed() });
    }

    // Only for a full run: `cargo xtask test -- FILTER` is for iterating on some tests.
    if args.cargo_args.is_empty() {
        for (name, check) in [("docs", checks::docs as fn() -> Result<String>), ("package", checks::package)] {
            let t = Instant::now();
            let (ok, detail) = match check() {
                Ok(d) => (true, d),
                Err(e) => (false, format!("{e:#}")),
            };
            stages.push(Stage { name, ok, detail, took: t.elapsed() });
        }
    }

    eprintln!("\nxtask test summary:");
    for s in &stages {
        let mark = if s.ok { "ok    " } else { "FAILED" };
        eprintln!("  {mark} {:<16} {:>8}  {}", s.name, human::secs(s.took), s.detail);
    }
    let passed = stages.iter().all(|s| s.ok);
    let verdict = if passed { "PASSED" } else { "FAILED" };
    eprintln!("xtask test: {verdict} in {}", human::secs(started.elapsed()));
    if !passed {
        bail!("xtask test failed");
    }
    Ok(())
}

/// The workspace root (xtask lives in `<root>/xtask`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Runs `cargo test --workspace --no-fail-fast [extra]`, echoing its output and tallying the
/// `test result:` lines. `FERRITE_MODELS` and `FERRITE_CLIENTS` are set to the folders fetched
/// into, `FERRITE_NVRTC` to the clients' NVRTC wheel; `CI` passes through.
fn cargo_test(models_dir: &Path, clients_dir: &Path, extra: &[String]) -> Result<Counts> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["test", "--workspace", "--no-fail-fast"])
        .args(extra)
        .env("FERRITE_MODELS", models_dir)
        .env("FERRITE_CLIENTS", clients_dir)
        .envs(clients::nvrtc_dir(clients_dir).map(|d| ("FERRITE_NVRTC", d)))
        .current_dir(workspace_root())
        .stdout(Stdio::piped());
    eprintln!("running: cargo test --workspace --no-fail-fast {}", extra.join(" "));
    let mut child = cmd.spawn().context("starting cargo test")?;
    let stdout = child.stdout.take().context("cargo test's stdout")?;
    let mut counts = Counts::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        println!("{line}");
        if let Some(c) = parse_test_result(&line) {
            counts.add(&c);
        }
    }
    counts.exit_ok = child.wait().context("waiting for cargo test")?.success();
    Ok(counts)
}

/// Tally of libtest's `test result:` lines.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub suites: usize,
    pub failed_suites: usize,
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    pub exit_ok: bool,
}

impl Counts {
    fn add(&mut self, c: &Counts) {
        self.suites += c.suites;
        self.failed_suites += c.failed_suites;
        self.passed += c.passed;
        self.failed += c.failed;
        self.ignored += c.ignored;
    }

    fn succeeded(&self) -> bool {
        self.exit_ok && self.failed == 0 && self.failed_suites == 0
    }

    fn describe(&self) -> String {
        let mut s = format!(
            "{} passed, {} failed, {} ignored in {} suite(s)",
            self.passed, self.failed, self.ignored, self.suites
        );
        if !self.exit_ok {
            s.push_str("; cargo test exited with an error (a build failure?)");
        }
        s
    }
}

/// Parses `test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; ...`.
pub fn parse_test_result(line: &str) -> Option<Counts> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (verdict, rest) = rest.split_once(". ")?;
    let mut c = Counts { suites: 1, failed_suites: usize::from(verdict != "ok"), ..Counts::default() };
    for field in rest.split(';') {
        let mut words = field.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match what {
            "passed" => c.passed = n,
            "failed" => c.failed = n,
            "ignored" => c.ignored = n,
            _ => {}
        }
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libtest_summaries() {
        let ok = "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; \
                  finished in 0.01s";
        let c = parse_test_result(ok);
        assert_eq!(c, Some(Counts { suites: 1, passed: 12, ignored: 1, ..Counts::default() }));
        let bad = "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out";
        let c = parse_test_result(bad);
        assert_eq!(c, Some(Counts { suites: 1, failed_suites: 1, passed: 3, failed: 2, ..Counts::default() }));
        assert_eq!(parse_test_result("running 12 tests"), None);
    }

    #[test]
    fn a_failed_build_is_a_failure() {
        let c = Counts { exit_ok: false, ..Counts::default() };
        assert!(!c.succeeded());
        let c = Counts { exit_ok: true, passed: 3, ..Counts::default() };
        assert!(c.succeeded());
    }
}
