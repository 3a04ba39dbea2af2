//! What the CUDA tests share: the emulated device (built once per test binary), random data,
//! CPU/emulated tensor pairs and their comparison.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use ferrite_cuda::{CudaBackend, EmuDriver};

use ferrite_tensor::{Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Whether `CI=true` (or 1): then a missing tool is a failure, not a skip.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The CUDA backend over the emulator of `kernels/emu/` (the kernels compiled as host C++),
/// or `None` (test skipped) without a C++ compiler outside CI.
pub fn emu() -> Option<&'static Device> {
    emu_backend().map(|(d, _)| d)
}

/// [`emu`] with its backend (for what is not in the `Backend` trait, such as `argmax`).
pub fn emu_backend() -> Option<&'static (Device, Arc<CudaBackend>)> {
    static DEVICE: OnceLock<Option<(Device, Arc<CudaBackend>)>> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cuda-emu");
            match ferrite_cuda::emu::build(&dir).and_then(|lib| EmuDriver::load(&lib)) {
                Ok(driver) => {
                    let be = Arc::new(CudaBackend::new(Arc::new(driver)));
                    Some((Device::new(be.clone()), be))
                }
                Err(e) => {
                    assert!(!ci(), "{e} (under CI=true the emulator must build)");
                    eprintln!("SKIPPED: {e}");
                    None
                }
            }
        })
        .as_ref()
}

/// A real GPU (`cuda:0`), or `None` without one: GPU tests skip, also under `CI=true` (CI has
/// no GPU), and say so once per test binary.
pub fn gpu_backend() -> Option<&'static (Device, Arc<CudaBackend>)> {
    static DEVICE: OnceLock<Option<(Device, Arc<CudaBackend>)>> = OnceLock::new();
    DEVICE
        .get_or_init(|| match CudaBackend::open(0) {
            Ok(be) => {
                let be = Arc::new(be);
                eprintln!("also on the GPU: {:?}", ferrite_cuda::describe_devices());
                Some((Device::new(be.clone()), be))
            }
            Err(e) => {
                eprintln!("SKIPPED on a real GPU (the emulator runs these tests): {e}");
                None
            }
        })
        .as_ref()
}

/// Where each test runs: the emulator, and a real GPU when the machine has one.
pub fn backends() -> Vec<&'static (Device, Arc<CudaBackend>)> {
    emu_backend().into_iter().chain(gpu_backend()).collect()
}

/// [`backends`]' devices.
pub fn devices() -> Vec<&'static Device> {
    backends().into_iter().map(|(d, _)| d).collect()
}

/// `n` values uniform in `-scale..scale` from `seed`.
pub fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-scale..scale)).collect()
}

/// `x` on the CPU and on `dev`.
pub fn pair(data: &[f32], shape: &[usize], dev: &Device) -> (Tensor, Tensor) {
    let cpu = Tensor::from_f32(data, shape.to_vec(), &Device::cpu()).unwrap();
    (cpu.clone(), cpu.to_device(dev).unwrap())
}

/// The largest |cpu - other| is at most `tol` times the largest CPU magnitude.
pub fn assert_close(what: &str, cpu: &Tensor, other: &Tensor, tol: f32) {
    assert_eq!(cpu.dims(), other.dims(), "{what}: shapes");
    let (a, b) = (cpu.to_vec_f32().unwrap(), other.to_vec_f32().unwrap());
    let peak = a.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst <= tol * peak, "{what}: max |cpu - cuda| = {worst:e}, over {tol:e} × {peak}");
}
