//! `cargo xtask deploy-check`: runs `deploy/validate.py` (the Kubernetes manifests against the
//! Kubernetes schemas of `kubernetes-validate` and the CRD schemas in `deploy/schemas/`) with the
//! Python of the clients virtualenv, where `cargo xtask clients` installs `kubernetes-validate`.
//! Its tests run the same check in `cargo test --workspace`, on the real manifests and on broken
//! copies of them.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::test::workspace_root;

/// validate.py's exit status when its Python packages are missing.
const VALIDATOR_MISSING: i32 = 3;

/// What validate.py said about some manifests.
#[derive(Debug)]
pub enum Verdict {
    Valid(String),
    Invalid(String),
    /// No Python at that path, or one without `kubernetes-validate`.
    ValidatorMissing(String),
}

/// The clients virtualenv's Python.
pub fn venv_python(clients_dir: &Path) -> PathBuf {
    clients_dir.join("venv/bin/python")
}

/// Runs `python deploy/validate.py PATHS...` (the whole `deploy/` folder when `paths` is empty).
pub fn validate(python: &Path, paths: &[&Path]) -> Result<Verdict> {
    if !python.exists() {
        return Ok(Verdict::ValidatorMissing(format!("{} does not exist", python.display())));
    }
    let script = workspace_root().join("deploy/validate.py");
    let out = Command::new(python)
        .arg(&script)
        .args(paths)
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok(match out.status.code() {
        Some(0) => Verdict::Valid(text),
        Some(1) => Verdict::Invalid(text),
        Some(VALIDATOR_MISSING) => Verdict::ValidatorMissing(text),
        _ => bail!("{} failed ({}):\n{text}", script.display(), out.status),
    })
}

/// `cargo xtask deploy-check`: the whole `deploy/` folder; an error unless it is valid.
pub fn run(clients_dir: &Path) -> Result<()> {
    match validate(&venv_python(clients_dir), &[])? {
        Verdict::Valid(text) => {
            print!("{text}");
            Ok(())
        }
        Verdict::Invalid(text) => bail!("deploy/ manifests are invalid:\n{text}"),
        Verdict::ValidatorMissing(why) => {
            bail!("no validator ({}); install it with `cargo xtask clients`", why.trim())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::clients_dir;

    /// The validator's Python, or None (after saying SKIPPED) when there is none outside CI.
    fn python() -> Option<PathBuf> {
        let dir = clients_dir(&ferrite_fetch::default_models_dir());
        let python = venv_python(&dir);
        match validate(&python, &[]) {
            Ok(Verdict::ValidatorMissing(why)) => {
                let msg = format!("no manifest validator: {} (run `cargo xtask clients`)", why.trim());
                assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
                eprintln!("SKIPPED: {msg}");
                None
            }
            _ => Some(python),
        }
    }

    fn copy_dir(from: &Path, to: &Path) -> Result<()> {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            let target = to.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                copy_dir(&entry.path(), &target)?;
            } else {
                std::fs::copy(entry.path(), &target)?;
            }
        }
        Ok(())
    }

    #[test]
    fn deploy_manifests_are_valid() -> Result<()> {
        let Some(python) = python() else { return Ok(()) };
        match validate(&python, &[])? {
            Verdict::Valid(text) => {
                // Every manifest file was read: the built-in kinds and the three CRD kinds.
                assert!(text.contains("ok: 12 manifests (9 against Kubernetes"), "{text}");
                assert!(text.contains("schemas/inferencepool-v1.schema.json"), "{text}");
            }
            other => bail!("deploy/ should be valid: {other:?}"),
        }
        // Each variant as the README applies it holds together on its own.
        let deploy = workspace_root().join("deploy");
        let variants: [(&[&str], &str); 2] = [
            (&["ferrite-deployment.yaml", "ferrite-service.yaml", "plain"], "ok: 3 manifests"),
            (&["ferrite-deployment.yaml", "inferencepool.yaml", "httproute.yaml"], "ok: 10 manifests"),
        ];
        for (files, expected) in variants {
            let paths: Vec<PathBuf> = files.iter().map(|f| deploy.join(f)).collect();
            let paths: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
            match validate(&python, &paths)? {
                Verdict::Valid(text) => assert!(text.contains(expected), "{files:?}: {text}"),
                other => bail!("{files:?} should be valid: {other:?}"),
            }
        }
        Ok(())
    }

    /// Each breakage, made alone in a copy of deploy/, must fail the check with its own message;
    /// the unbroken copy must pass (so the failures come from the breakages).
    #[test]
    fn broken_manifests_are_rejected() -> Result<()> {
        let Some(python) = python() else { return Ok(()) };
        // (file, text, replacement, what the error must say)
        let breakages = [
            ("httproute.yaml", "kind: HTTPRoute", "kind: [HTTPRoute", "httproute.yaml: cannot be read as YAML"),
            ("ferrite-deployment.yaml", "replicas: 3", "replicas: three", "spec.replicas: 'three' is not of type"),
            (
                "ferrite-deployment.yaml",
                "readOnlyRootFilesystem",
                "readOnlyRootFileSystem",
                "'readOnlyRootFileSystem' was unexpected",
            ),
            (
                "ferrite-deployment.yaml",
                "terminationGracePeriodSeconds: 50",
                "terminationGracePeriodSeconds: 35",
                "terminationGracePeriodSeconds 35 must exceed preStop sleep 10 + --drain-timeout 30",
            ),
            (
                "ferrite-deployment.yaml",
                "path: /ready\n              port: http\n            periodSeconds: 5\n            timeoutSeconds",
                "path: /health\n              port: http\n            periodSeconds: 5\n            timeoutSeconds",
                "readinessProbe must GET /ready",
            ),
            (
                "ferrite-service.yaml",
                "targetPort: http",
                "targetPort: https",
                "targetPort 'https' is no port of the selected pods",
            ),
            ("inferencepool.yaml", "failureMode: FailClose", "failureMode: FailSoft", "'FailSoft' is not one of"),
            ("inferencepool.yaml", "  targetPorts:\n", "  targetPort:\n", "'targetPorts' is a required property"),
            ("inferencepool.yaml", "- number: 8080", "- number: 8081", "targetPort 8081 is no containerPort"),
            (
                "inferencepool.yaml",
                "defaultEngine: ferrite",
                "defaultEngine: ferite",
                "no engineConfigs entry for engine 'ferite'",
            ),
            ("httproute.yaml", "request: 600s", "request: 10 minutes", "does not match"),
            (
                "httproute.yaml",
                "kind: InferencePool\n          name: ferrite",
                "kind: InferencePool\n          name: ferrit",
                "backendRef names no InferencePool here: 'ferrit'",
            ),
            (
                "plain/ferrite-loadbalancer.yaml",
                "type: LoadBalancer",
                "type: LoadBalancer\n  loadBalancerIPs: [x]",
                "'loadBalancerIPs' was unexpected",
            ),
            (
                "plain/ferrite-loadbalancer.yaml",
                "apiVersion: v1\nkind: Service",
                "apiVersion: v1\nkind: Servce",
                "no schema for Servce v1",
            ),
        ];
        let source = workspace_root().join("deploy");
        let base = std::env::temp_dir().join(format!("ferrite-deploy-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let unbroken = base.join("unbroken");
        copy_dir(&source, &unbroken)?;
        assert!(matches!(validate(&python, &[&unbroken])?, Verdict::Valid(_)), "the unbroken copy must pass");
        for (i, (file, text, replacement, expected)) in breakages.iter().enumerate() {
            let dir = base.join(format!("broken-{i}"));
            copy_dir(&source, &dir)?;
            let path = dir.join(file);
            let content = std::fs::read_to_string(&path)?;
            assert_eq!(content.matches(text).count(), 1, "{file} should hold {text:?} once");
            std::fs::write(&path, content.replacen(text, replacement, 1))?;
            match validate(&python, &[&dir])? {
                Verdict::Invalid(out) => assert!(out.contains(expected), "{file}: {replacement:?}: {out}"),
                other => bail!("{file} with {replacement:?} instead of {text:?} should be invalid: {other:?}"),
            }
        }
        std::fs::remove_dir_all(&base)?;
        Ok(())
    }
}
