//! The deployments a server offers, and how a request's `model` string finds one.
//!
//! A deployment is a model file served under a name, optionally with a version, a deploy id and
//! aliases. A request may name it as `NAME` (the first deployment listed with that name),
//! `NAME:VERSION`, `deploy_id:ID` or an alias. They come from a TOML file:
//!
//! ```toml
//! [engine]                   # optional; command-line flags win over these
//! threads = 4
//! kv_cache_mb = 512
//! max_num_seqs = 16
//! max_queue = 256
//! max_concurrent_images = 1  # image jobs run at once per image model; more wait in the queue
//!
//! [[model]]
//! name = "smollm2"
//! version = "2024-11"
//! deploy_id = "d-7f3a"
//! path = "SmolLM2-135M-Instruct.Q4_1.gguf"   # relative to the config file, or a built-in name
//! aliases = ["default", "gpt-4o-mini"]
//! ```
//!
//! or from `--model PATH [--name NAME]`. Deployments of the same file share one engine.

use std::collections::HashMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::ServerError;
use crate::{Engine, ModelInfo};
use serde::Deserialize;

/// The contents of `ferrite serve --config FILE`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Engine settings shared by every model.
    #[serde(default)]
    pub engine: EngineSettings,
    /// The deployments (`[[model]]` tables).
    #[serde(default, rename = "model")]
    pub models: Vec<DeploymentSpec>,
}

impl ConfigFile {
    /// Reads and checks a config file; relative model paths are taken from the file's folder
    /// when a file is there.
    pub fn load(path: &Path) -> Result<ConfigFile, ServerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServerError::Config(format!("reading {}: {e}", path.display())))?;
        let mut config: ConfigFile =
            toml::from_str(&text).map_err(|e| ServerError::Config(format!("parsing {}: {e}", path.display())))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for m in &mut config.models {
            let joined = dir.join(&m.path);
            if Path::new(&m.path).is_relative() && joined.exists() {
                m.path = joined.to_string_lossy().into_owned();
            }
        }
        Ok(config)
    }
}

/// How to build engines; unset fields keep the engine's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// Compute device (`cpu`, `wgpu`, `wgpu:ADAPTER`).
    pub device: Option<String>,
    /// Worker threads.
    pub threads: Option<usize>,
    /// KV cache size in MiB.
    pub kv_cache_mb: Option<usize>,
    /// Most sequences decoded together.
    pub max_num_seqs: Option<usize>,
    /// Most requests waiting for admission before new ones get 503.
    pub max_queue: Option<usize>,
    /// Image jobs an image model runs at once (default 1).
    pub max_concurrent_images: Option<usize>,
}

impl EngineSettings {
    /// These settings, with each field of `over` that is set replacing ours.
    pub fn overridden_by(&self, over: &EngineSettings) -> EngineSettings {
        EngineSettings {
            device: over.device.clone().or_else(|| self.device.clone()),
            threads: over.threads.or(self.threads),
            kv_cache_mb: over.kv_cache_mb.or(self.kv_cache_mb),
            max_num_seqs: over.max_num_seqs.or(self.max_num_seqs),
            max_queue: over.max_queue.or(self.max_queue),
            max_concurrent_images: over.max_concurrent_images.or(self.max_concurrent_images),
        }
    }

    fn build(&self, model: &str) -> Result<Engine, crate::Error> {
        let mut b = Engine::builder().model(model);
        if let Some(d) = &self.device {
            b = b.device(d.clone());
        }
        if let Some(n) = self.threads {
            b = b.threads(n);
        }
        if let Some(mb) = self.kv_cache_mb {
            b = b.kv_cache_mb(mb);
        }
        if let Some(n) = self.max_num_seqs {
            b = b.max_num_seqs(n);
        }
        if let Some(n) = self.max_queue {
            b = b.max_queue(n);
        }
        if let Some(n) = self.max_concurrent_images {
            b = b.max_concurrent_images(n);
        }
        b.build()
    }
}

/// One `[[model]]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    /// The name requests use.
    pub name: String,
    /// A version, for `NAME:VERSION`.
    pub version: Option<String>,
    /// An id, for `deploy_id:ID`.
    pub deploy_id: Option<String>,
    /// The model file or folder, or a built-in model name.
    pub path: String,
    /// Other names for it.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// Fails on empty names and on names, versions, ids or aliases that two deployments share.
pub fn check_specs(specs: &[DeploymentSpec]) -> Result<(), ServerError> {
    macro_rules! bail {
        ($($arg:tt)*) => {
            return Err(ServerError::Config(format!($($arg)*)))
        };
    }
    if specs.is_empty() {
        bail!("no model to serve: give --model PATH or a --config file with [[model]] tables");
    }
    for (i, s) in specs.iter().enumerate() {
        if s.name.is_empty() || s.aliases.iter().any(String::is_empty) {
            bail!("model {i}: names and aliases must not be empty");
        }
        for t in &specs[..i] {
            if t.name == s.name && t.version == s.version {
                bail!("two models are named {:?} with version {:?}", s.name, s.version);
            }
            if s.deploy_id.is_some() && t.deploy_id == s.deploy_id {
                bail!("two models have deploy_id {:?}", s.deploy_id.as_deref().unwrap_or_default());
            }
            let clash = |a: &String| t.aliases.contains(a) || (t.name == *a);
            if let Some(a) = s.aliases.iter().find(|a| clash(a)).or(t.aliases.iter().find(|a| **a == s.name)) {
                bail!("the alias {a:?} names two models");
            }
        }
    }
    Ok(())
}

/// The index of the deployment `model` names, if any: `deploy_id:ID`, then an exact name (the
/// first listed), an alias, then `NAME:VERSION`.
pub fn resolve_spec(specs: &[DeploymentSpec], model: &str) -> Option<usize> {
    if let Some(id) = model.strip_prefix("deploy_id:") {
        return specs.iter().position(|s| s.deploy_id.as_deref() == Some(id));
    }
    if let Some(i) = specs.iter().position(|s| s.name == model || s.aliases.iter().any(|a| a == model)) {
        return Some(i);
    }
    let (name, version) = model.rsplit_once(':')?;
    specs.iter().position(|s| s.name == name && s.version.as_deref() == Some(version))
}

/// A loaded deployment.
pub struct Deployment {
    /// What the config said.
    pub spec: DeploymentSpec,
    /// The id `GET /models` lists: `NAME`, or `NAME:VERSION` when an earlier deployment has the
    /// same name.
    pub id: String,
    /// Unix time it was loaded.
    pub created: u64,
    /// The engine serving it (shared by deployments of the same file).
    pub engine: Engine,
}

impl Deployment {
    /// Its `GET /models` entry.
    pub fn info(&self) -> ModelInfo {
        ModelInfo::new(self.id.clone(), self.created, "ferrite")
    }
}

/// The deployments of a server.
pub struct ModelRegistry {
    deployments: Vec<Deployment>,
    specs: Vec<DeploymentSpec>,
}

impl ModelRegistry {
    /// Loads every deployment's engine (once per distinct path); slow, call off the async
    /// threads.
    pub fn load(specs: Vec<DeploymentSpec>, settings: &EngineSettings) -> Result<ModelRegistry, ServerError> {
        check_specs(&specs)?;
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut engines: HashMap<String, Engine> = HashMap::new();
        let mut deployments = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let engine = match engines.get(&spec.path) {
                Some(e) => e.clone(),
                None => {
                    let started = std::time::Instant::now();
                    super::log::event(
                        "info",
                        "loading_model",
                        &[("model", spec.name.as_str().into()), ("path", spec.path.as_str().into())],
                    );
                    let e = settings
                        .build(&spec.path)
                        .map_err(|source| ServerError::Load { name: spec.name.clone(), source })?;
                    super::log::event(
                        "info",
                        "model_loaded",
                        &[("model", spec.name.as_str().into()), ("seconds", super::log::seconds_since(started))],
                    );
                    engines.insert(spec.path.clone(), e.clone());
                    e
                }
            };
            let shadowed = specs[..i].iter().any(|s| s.name == spec.name);
            let id = match (&spec.version, shadowed) {
                (Some(v), true) => format!("{}:{v}", spec.name),
                _ => spec.name.clone(),
            };
            deployments.push(Deployment { spec: spec.clone(), id, created, engine });
        }
        Ok(ModelRegistry { deployments, specs })
    }

    /// The deployment `model` names.
    pub fn resolve(&self, model: &str) -> Option<&Deployment> {
        resolve_spec(&self.specs, model).map(|i| &self.deployments[i])
    }

    /// All deployments, in config order.
    pub fn deployments(&self) -> &[Deployment] {
        &self.deployments
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn spec(name: &str, version: Option<&str>, id: Option<&str>, aliases: &[&str]) -> DeploymentSpec {
        DeploymentSpec {
            name: name.into(),
            version: version.map(Into::into),
            deploy_id: id.map(Into::into),
            path: "m.gguf".into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn resolution_forms() {
        let specs = vec![
            spec("smol", Some("2"), Some("d-2"), &["default"]),
            spec("smol", Some("1"), Some("d-1"), &[]),
            spec("qwen:0.5b", None, None, &["coder"]),
        ];
        check_specs(&specs).unwrap();
        assert_eq!(resolve_spec(&specs, "smol"), Some(0));
        assert_eq!(resolve_spec(&specs, "smol:1"), Some(1));
        assert_eq!(resolve_spec(&specs, "smol:2"), Some(0));
        assert_eq!(resolve_spec(&specs, "deploy_id:d-1"), Some(1));
        assert_eq!(resolve_spec(&specs, "default"), Some(0));
        assert_eq!(resolve_spec(&specs, "qwen:0.5b"), Some(2));
        assert_eq!(resolve_spec(&specs, "coder"), Some(2));
        for unknown in ["smol:3", "deploy_id:d-3", "deploy_id:", "other", ""] {
            assert_eq!(resolve_spec(&specs, unknown), None, "{unknown}");
        }
    }

    #[test]
    fn clashes_are_rejected() {
        assert!(check_specs(&[]).is_err());
        assert!(check_specs(&[spec("a", None, None, &[]), spec("a", None, None, &[])]).is_err());
        assert!(check_specs(&[spec("a", None, Some("x"), &[]), spec("b", None, Some("x"), &[])]).is_err());
        assert!(check_specs(&[spec("a", None, None, &["z"]), spec("b", None, None, &["z"])]).is_err());
        assert!(check_specs(&[spec("a", None, None, &["b"]), spec("b", None, None, &[])]).is_err());
        assert!(check_specs(&[spec("a", None, None, &[]), spec("b", None, None, &["a"])]).is_err());
        assert!(check_specs(&[spec("", None, None, &[])]).is_err());
    }

    #[test]
    fn config_file_parses() {
        let c: ConfigFile = toml::from_str(
            r#"
            [engine]
            threads = 2
            [[model]]
            name = "smol"
            version = "1"
            deploy_id = "d-1"
            path = "x.gguf"
            aliases = ["a"]
            "#,
        )
        .unwrap();
        assert_eq!(c.engine.threads, Some(2));
        assert_eq!(
            c.models,
            vec![DeploymentSpec { path: "x.gguf".into(), ..spec("smol", Some("1"), Some("d-1"), &["a"]) }]
        );
        assert!(toml::from_str::<ConfigFile>("[[model]]\nname = \"a\"\npath = \"p\"\ntypo = 1\n").is_err());
        let flags = EngineSettings { threads: Some(8), ..Default::default() };
        assert_eq!(c.engine.overridden_by(&flags).threads, Some(8));
    }
}
