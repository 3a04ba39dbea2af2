//! The flow-matching Euler scheduler (diffusers' `FlowMatchEulerDiscreteScheduler` as FLUX
//! configures it): sigmas from 1 down to `1/steps`, shifted either by a fixed `shift` or, with
//! dynamic shifting, by `mu` from the image's token count; each step moves the latents along the
//! predicted velocity, `x += (sigma_next - sigma) * v`.

use std::path::Path;

use serde::Deserialize;

use crate::Result;

/// `scheduler/scheduler_config.json`, the fields FLUX uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SchedulerConfig {
    #[serde(default = "default_train_steps")]
    pub num_train_timesteps: usize,
    #[serde(default = "one")]
    pub shift: f64,
    #[serde(default)]
    pub use_dynamic_shifting: bool,
    #[serde(default = "default_base_len")]
    pub base_image_seq_len: usize,
    #[serde(default = "default_max_len")]
    pub max_image_seq_len: usize,
    #[serde(default = "default_base_shift")]
    pub base_shift: f64,
    #[serde(default = "default_max_shift")]
    pub max_shift: f64,
    /// Only the exponential time shift (FLUX's) is implemented; others are refused at load.
    #[serde(default = "default_shift_type")]
    pub time_shift_type: String,
    #[serde(default)]
    pub use_karras_sigmas: bool,
    #[serde(default)]
    pub use_exponential_sigmas: bool,
    #[serde(default)]
    pub use_beta_sigmas: bool,
    #[serde(default)]
    pub invert_sigmas: bool,
    pub shift_terminal: Option<f64>,
}

fn default_train_steps() -> usize {
    1000
}
fn one() -> f64 {
    1.0
}
fn default_base_len() -> usize {
    256
}
fn default_max_len() -> usize {
    4096
}
fn default_base_shift() -> f64 {
    0.5
}
fn default_max_shift() -> f64 {
    1.15
}
fn default_shift_type() -> String {
    "exponential".into()
}

impl SchedulerConfig {
    /// Reads `dir/scheduler_config.json`, refusing options this scheduler does not implement.
    pub fn load(dir: &Path) -> Result<SchedulerConfig> {
        let path = dir.join("scheduler_config.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|source| crate::Error::Io { path: path.display().to_string(), source })?;
        let c: SchedulerConfig =
            serde_json::from_str(&text).map_err(|e| crate::Error::Config(format!("{}: {e}", path.display())))?;
        let unsupported = [
            (c.time_shift_type != "exponential", "time_shift_type other than exponential"),
            (c.use_karras_sigmas || c.use_exponential_sigmas || c.use_beta_sigmas, "karras/exponential/beta sigmas"),
            (c.invert_sigmas, "invert_sigmas"),
            (c.shift_terminal.is_some(), "shift_terminal"),
        ];
        if let Some((_, what)) = unsupported.iter().find(|(bad, _)| *bad) {
            return Err(crate::Error::Config(format!("{}: {what} is not supported", path.display())));
        }
        Ok(c)
    }

    /// `mu` of the dynamic shift for an image of `image_seq_len` tokens: linear between
    /// (base_image_seq_len, base_shift) and (max_image_seq_len, max_shift).
    pub fn mu(&self, image_seq_len: usize) -> f64 {
        let m = (self.max_shift - self.base_shift) / (self.max_image_seq_len as f64 - self.base_image_seq_len as f64);
        let b = self.base_shift - m * self.base_image_seq_len as f64;
        image_seq_len as f64 * m + b
    }

    /// The `steps + 1` sigmas (the last 0) for an image of `image_seq_len` tokens, computed in
    /// f32 as diffusers does (numpy float32 arrays).
    pub fn sigmas(&self, steps: usize, image_seq_len: usize) -> Vec<f32> {
        let steps = steps.max(1);
        // np.linspace(1.0, 1/steps, steps) in f64, then astype(float32).
        let end = 1.0 / steps as f64;
        let mut s: Vec<f32> = (0..steps)
            .map(|i| if steps == 1 { 1.0 } else { (1.0 + (end - 1.0) * i as f64 / (steps - 1) as f64) as f32 })
            .collect();
        if self.use_dynamic_shifting {
            let e = self.mu(image_seq_len).exp();
            for v in &mut s {
                // math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** 1.0) on a float32 array.
                let inv = 1.0f32 / *v - 1.0;
                *v = (e as f32) / ((e as f32) + inv);
            }
        } else {
            let shift = self.shift as f32;
            for v in &mut s {
                *v = shift * *v / (1.0 + (shift - 1.0) * *v);
            }
        }
        s.push(0.0);
        s
    }

    /// The timesteps (`sigma * num_train_timesteps`) of `sigmas` without the final 0.
    pub fn timesteps(&self, sigmas: &[f32]) -> Vec<f32> {
        sigmas[..sigmas.len().saturating_sub(1)].iter().map(|s| s * self.num_train_timesteps as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schnell() -> SchedulerConfig {
        serde_json::from_str(r#"{"_class_name":"FlowMatchEulerDiscreteScheduler","base_image_seq_len":256,"base_shift":0.5,"max_image_seq_len":4096,"max_shift":1.15,"num_train_timesteps":1000,"shift":1.0,"use_dynamic_shifting":false}"#).unwrap()
    }

    #[test]
    fn schnell_sigmas_are_the_plain_linspace() {
        let s = schnell().sigmas(4, 16);
        assert_eq!(s, vec![1.0, 0.75, 0.5, 0.25, 0.0]);
        assert_eq!(schnell().timesteps(&s), vec![1000.0, 750.0, 500.0, 250.0]);
    }

    #[test]
    fn dynamic_shift_follows_mu() {
        let mut c = schnell();
        c.use_dynamic_shifting = true;
        // mu at the base length is base_shift; at the max length max_shift.
        assert!((c.mu(256) - 0.5).abs() < 1e-12);
        assert!((c.mu(4096) - 1.15).abs() < 1e-12);
        let s = c.sigmas(4, 4096);
        let e = 1.15f64.exp();
        for (got, t) in s.iter().zip([1.0, 0.75, 0.5, 0.25]) {
            let want = e / (e + (1.0 / t - 1.0));
            assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        }
        assert_eq!(*s.last().unwrap(), 0.0);
    }
}
