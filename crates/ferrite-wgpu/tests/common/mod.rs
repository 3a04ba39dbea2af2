//! What the WGPU tests share: the device (once per test binary), random data, and CPU/GPU
//! tensor pairs and their comparison.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::OnceLock;

use ferrite_tensor::{Device, Tensor};
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

/// `x` on both devices.
pub fn pair(data: &[f32], shape: &[usize], gpu: &Device) -> (Tensor, Tensor) {
    let cpu = Tensor::from_f32(data, shape.to_vec(), &Device::cpu()).unwrap();
    (cpu.clone(), cpu.to_device(gpu).unwrap())
}

/// The largest |cpu - gpu| is at most `tol` times the largest CPU magnitude.
pub fn assert_close(what: &str, cpu: &Tensor, gpu: &Tensor, tol: f32) {
    assert_eq!(cpu.dims(), gpu.dims(), "{what}: shapes");
    let (a, b) = (cpu.to_vec_f32().unwrap(), gpu.to_vec_f32().unwrap());
    let peak = a.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst <= tol * peak, "{what}: max |cpu - gpu| = {worst:e}, over {tol:e} × {peak}");
}
