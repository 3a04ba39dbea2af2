//! Sentence-embedding pooling as a sentence-transformers folder describes it: `modules.json`
//! lists the modules (Transformer, Pooling, Normalize), the Pooling module's `config.json` names
//! the mode.

use std::path::Path;

use serde_json::Value;

use crate::{Error, Result};

/// How the token states of one sequence become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolingMode {
    /// The first token's state (`[CLS]`; bge).
    Cls,
    /// The mean over the sequence's tokens (all-MiniLM, gte, e5).
    Mean,
    /// The last token's state (decoder-based embedders).
    LastToken,
}

/// The pooling of a model, plus whether the pooled vector is L2-normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pooling {
    pub mode: PoolingMode,
    pub normalize: bool,
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

impl Pooling {
    /// Reads a sentence-transformers folder. Without `modules.json` (a bare Hugging Face
    /// encoder): mean pooling, no normalisation.
    pub fn from_folder(dir: &Path) -> Result<Pooling> {
        let modules_path = dir.join("modules.json");
        if !modules_path.exists() {
            return Ok(Pooling { mode: PoolingMode::Mean, normalize: false });
        }
        let modules = read_json(&modules_path)?;
        let modules = modules
            .as_array()
            .ok_or_else(|| Error::Config(format!("{}: expected an array", modules_path.display())))?;
        let kind = |m: &Value| m["type"].as_str().unwrap_or("").rsplit('.').next().unwrap_or("").to_string();
        let normalize = modules.iter().any(|m| kind(m) == "Normalize");
        let mode = match modules.iter().find(|m| kind(m) == "Pooling") {
            Some(m) => {
                let sub = m["path"].as_str().unwrap_or("1_Pooling");
                Self::mode_from_config(&read_json(&dir.join(sub).join("config.json"))?)?
            }
            None => PoolingMode::Mean,
        };
        Ok(Pooling { mode, normalize })
    }

    /// The mode of a Pooling module's `config.json` (exactly one mode must be on).
    pub fn mode_from_config(v: &Value) -> Result<PoolingMode> {
        let on = |k: &str| v[k].as_bool().unwrap_or(false);
        let modes = [
            ("pooling_mode_cls_token", Some(PoolingMode::Cls)),
            ("pooling_mode_mean_tokens", Some(PoolingMode::Mean)),
            ("pooling_mode_lasttoken", Some(PoolingMode::LastToken)),
            ("pooling_mode_max_tokens", None),
            ("pooling_mode_mean_sqrt_len_tokens", None),
            ("pooling_mode_weightedmean_tokens", None),
        ];
        let chosen: Vec<_> = modes.iter().filter(|(k, _)| on(k)).collect();
        match chosen.as_slice() {
            [(_, Some(mode))] => Ok(*mode),
            [(k, None)] => Err(Error::Config(format!("pooling mode `{k}` is not supported (cls, mean, lasttoken)"))),
            _ => Err(Error::Config(format!("pooling config must turn on exactly one mode, got {}", chosen.len()))),
        }
    }

    /// Pools `rows` (one sequence's token states, `len x dim` row-major) into one vector.
    pub fn apply(&self, rows: &[f32], dim: usize) -> Vec<f32> {
        let len = rows.len().checked_div(dim).unwrap_or(0);
        let mut v = match (self.mode, len) {
            (_, 0) => vec![0.0; dim],
            (PoolingMode::Cls, _) => rows[..dim].to_vec(),
            (PoolingMode::LastToken, _) => rows[(len - 1) * dim..].to_vec(),
            (PoolingMode::Mean, _) => {
                let mut acc = vec![0f64; dim];
                for r in rows.chunks_exact(dim) {
                    acc.iter_mut().zip(r).for_each(|(a, &x)| *a += x as f64);
                }
                acc.iter().map(|a| (a / len as f64) as f32).collect()
            }
        };
        if self.normalize {
            l2_normalize(&mut v);
        }
        v
    }
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn modes() {
        let m = |v| Pooling::mode_from_config(&v);
        assert_eq!(m(json!({"pooling_mode_cls_token": true})).ok(), Some(PoolingMode::Cls));
        assert_eq!(
            m(json!({"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": false})).ok(),
            Some(PoolingMode::Mean)
        );
        assert_eq!(m(json!({"pooling_mode_lasttoken": true})).ok(), Some(PoolingMode::LastToken));
        assert!(m(json!({"pooling_mode_max_tokens": true})).is_err());
        assert!(m(json!({"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true})).is_err());
    }

    #[test]
    fn apply() {
        let rows = [1.0, 2.0, 3.0, 6.0];
        let p = |mode, normalize| Pooling { mode, normalize }.apply(&rows, 2);
        assert_eq!(p(PoolingMode::Cls, false), vec![1.0, 2.0]);
        assert_eq!(p(PoolingMode::LastToken, false), vec![3.0, 6.0]);
        assert_eq!(p(PoolingMode::Mean, false), vec![2.0, 4.0]);
        let n = p(PoolingMode::LastToken, true);
        assert!((n[0] - 3.0 / 45f32.sqrt()).abs() < 1e-7 && (n[1] - 6.0 / 45f32.sqrt()).abs() < 1e-7);
    }
}
