//! The official OpenAI clients that `crates/ferrite-server/tests/openai_clients.rs` drives: the
//! `openai` Python package in a virtualenv and the `openai` npm package in a folder, both pinned
//! and kept outside the repository (`$FERRITE_CLIENTS`, default `<models dir>/../clients`, that
//! is `~/.cache/ferrite/clients`). The same virtualenv holds `kubernetes-validate`, which
//! `deploy/validate.py` uses (see `deploy_check`), and `pillow`, with which the image example
//! (`tests/clients/images.py`) opens the PNGs the server returns. Installing is idempotent: an installed pinned
//! version is left alone, without asking a registry.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The pinned `openai` Python package (PyPI; needs Python >= 3.10).
pub const OPENAI_PY: &str = "3.57.0";
/// The pinned `kubernetes-validate` Python package: the Kubernetes OpenAPI schemas (1.25 to 1.37)
/// that `deploy/validate.py` checks the manifests against, offline; it brings `jsonschema` and
/// `PyYAML`, which the script uses too.
pub const KUBERNETES_VALIDATE: &str = "1.37.0";
/// The pinned `pillow` Python package: DeepInfra's image example opens the returned PNG with
/// PIL, and so does `tests/clients/images.py`.
pub const PILLOW: &str = "11.3.0";
/// The pinned NVRTC wheel (`nvidia-cuda-nvrtc-cu12`): the CUDA backend's tests compile every
/// kernel of `kernels/` with it for sm_80 and sm_90, without a GPU or a CUDA toolkit.
pub const NVRTC: &str = "12.9.86";
/// The Python packages of the virtualenv, pinned.
const PYTHON_PINS: [(&str, &str); 4] = [
    ("openai", OPENAI_PY),
    ("kubernetes-validate", KUBERNETES_VALIDATE),
    ("pillow", PILLOW),
    ("nvidia-cuda-nvrtc-cu12", NVRTC),
];
/// The pinned `openai` npm package: the newest 6.x (7.x needs Node.js 22; this machine has 20).
pub const OPENAI_NODE: &str = "6.30.1";

/// `$FERRITE_CLIENTS`, else `clients` beside the models folder.
pub fn clients_dir(models_dir: &Path) -> PathBuf {
    if let Some(d) = std::env::var_os("FERRITE_CLIENTS") {
        return PathBuf::from(d);
    }
    models_dir.parent().unwrap_or(models_dir).join("clients")
}

/// The folder of the venv's `libnvrtc.so.12` (pip's `nvidia/cuda_nvrtc/lib`), if installed.
pub fn nvrtc_dir(dir: &Path) -> Option<PathBuf> {
    let lib = dir.join("venv/lib");
    std::fs::read_dir(&lib)
        .ok()?
        .flatten()
        .map(|e| e.path().join("site-packages/nvidia/cuda_nvrtc/lib"))
        .find(|p| p.is_dir())
}

/// The Debian packages that installing and running the clients needs and that this machine
/// lacks, judged by what runs rather than by dpkg (a NodeSource `nodejs` brings its own npm
/// and conflicts with Debian's `npm` package): `python3`, `python3-pip` (pip, also for
/// fetch-models), `python3-venv` (Debian moves `ensurepip`, which `venv` needs, there),
/// `nodejs` and `npm`.
pub fn system_packages_needed() -> Vec<&'static str> {
    let mut need = Vec::new();
    if !runs("python3", &["--version"]) {
        need.push("python3");
    }
    if !runs("python3", &["-m", "pip", "--version"]) {
        need.push("python3-pip");
    }
    if !runs("python3", &["-c", "import venv, ensurepip"]) {
        need.push("python3-venv");
    }
    if !runs("node", &["--version"]) {
        need.push("nodejs");
    }
    if !runs("npm", &["--version"]) {
        need.push("npm");
    }
    need
}

/// Installs whichever pinned client is missing (or at another version) under `dir`; returns a
/// one-line account.
pub fn ensure_clients(dir: &Path) -> Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let py = ensure_python(&dir.join("venv")).context("the Python packages (openai, kubernetes-validate, pillow)")?;
    let node = ensure_node(&dir.join("node")).context("the Node.js openai client")?;
    Ok(format!(
        "python openai {OPENAI_PY}, kubernetes-validate {KUBERNETES_VALIDATE}, pillow {PILLOW} and \
         nvidia-cuda-nvrtc-cu12 {NVRTC} {py}, \
         npm openai {OPENAI_NODE} {node} in {}",
        dir.display()
    ))
}

fn ensure_python(venv: &Path) -> Result<&'static str> {
    let python = venv.join("bin/python");
    if python.exists() && missing_pins(&python).is_empty() {
        return Ok("present");
    }
    if !python.exists() {
        eprintln!("clients: python3 -m venv {}", venv.display());
        let ok = Command::new("python3").arg("-m").arg("venv").arg(venv).status().is_ok_and(|s| s.success());
        if !ok {
            // A half-made venv would be taken for a made one next time.
            let _ = std::fs::remove_dir_all(venv);
            bail!(
                "`python3 -m venv {}` failed (on Debian/Ubuntu install python3-venv; \
                 `cargo xtask test` does so as root)",
                venv.display()
            );
        }
    }
    let pins: Vec<String> = missing_pins(&python).iter().map(|(name, v)| format!("{name}=={v}")).collect();
    eprintln!("clients: pip install {}", pins.join(" "));
    let args = ["-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-input"];
    run(Command::new(&python).args(args).args(&pins))?;
    match missing_pins(&python).as_slice() {
        [] => Ok("installed"),
        still => bail!("after pip install, these are still not at their pinned versions: {still:?}"),
    }
}

/// The pins of [`PYTHON_PINS`] that the virtualenv's `python` lacks or has at another version.
fn missing_pins(python: &Path) -> Vec<(&'static str, &'static str)> {
    let script = "import importlib.metadata as m, sys; \
                  v = {d.metadata['Name'].lower(): d.version for d in m.distributions()}; \
                  print('\\n'.join(v.get(n, '-') for n in sys.argv[1:]))";
    let mut args = vec!["-c", script];
    args.extend(PYTHON_PINS.iter().map(|(name, _)| *name));
    let installed = output(python, &args).unwrap_or_default();
    let installed: Vec<&str> = installed.lines().collect();
    PYTHON_PINS.iter().zip(0..).filter(|((_, want), i)| installed.get(*i) != Some(want)).map(|(pin, _)| *pin).collect()
}

fn ensure_node(prefix: &Path) -> Result<&'static str> {
    let manifest = prefix.join("node_modules/openai/package.json");
    if package_version(&manifest).as_deref() == Some(OPENAI_NODE) {
        return Ok("present");
    }
    eprintln!("clients: npm install --prefix {} openai@{OPENAI_NODE}", prefix.display());
    std::fs::create_dir_all(prefix)?;
    let pin = format!("openai@{OPENAI_NODE}");
    let args = ["install", "--no-audit", "--no-fund", "--loglevel=error", "--save-exact", "--prefix"];
    run(Command::new("npm").args(args).arg(prefix).arg(pin))?;
    match package_version(&manifest) {
        Some(v) if v == OPENAI_NODE => Ok("installed"),
        other => bail!("after npm install, {} says {other:?}, not {OPENAI_NODE}", manifest.display()),
    }
}

/// The top-level `"version"` of a package.json (the first such key: npm writes it before any
/// nested object that could hold another).
fn package_version(manifest: &Path) -> Option<String> {
    let text = std::fs::read_to_string(manifest).ok()?;
    version_field(&text)
}

pub fn version_field(json: &str) -> Option<String> {
    let rest = &json[json.find("\"version\"")? + "\"version\"".len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn output(program: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_package_json_version() {
        let json = "{\n  \"name\": \"openai\",\n  \"version\": \"6.30.1\",\n  \"x\": {\"version\": \"1\"}\n}";
        assert_eq!(version_field(json).as_deref(), Some("6.30.1"));
        assert_eq!(version_field("{\"version\" : \"1.2.3\"}").as_deref(), Some("1.2.3"));
        assert_eq!(version_field("{\"name\": \"x\"}"), None);
        assert_eq!(version_field("{\"version\": 3}"), None);
    }

    #[test]
    fn clients_sit_beside_the_models() {
        if std::env::var_os("FERRITE_CLIENTS").is_some() {
            return;
        }
        assert_eq!(clients_dir(Path::new("/c/ferrite/models")), Path::new("/c/ferrite/clients"));
    }
}
