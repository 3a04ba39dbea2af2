//! What the WGPU tests share: the device (once per test binary) and random data.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::OnceLock;

use ferrite_tensor::Device;
use rand::{rngs::StdRng, Rng, SeedableRng};

/// The WGPU device wgpu picks (lavapipe in CI), or `None` (test skipped) when there is no
/// adapter outside CI; under `CI=true` a missing adapter fails the test.
pub fn gpu() -> Option<&'static Device> {
    static DEVICE: OnceLock<Option<Device>> = OnceLock::new();
    DEVICE
        .get_or_init(|| match ferrite_wgpu::device(None) {
            Ok(d) => {
                eprintln!("wgpu device: {}", d.name());
                Some(d)
            }
            Err(e) => {
                let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
                assert!(!ci, "{e} (under CI=true a missing adapter is a failure)");
                eprintln!("SKIPPED: {e}");
                None
            }
        })
        .as_ref()
}

/// `n` values uniform in `-scale..scale` from `seed`.
pub fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-scale..scale)).collect()
}
