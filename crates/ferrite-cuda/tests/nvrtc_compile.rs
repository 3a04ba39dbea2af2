//! Every kernel file of `kernels/` compiles with NVRTC for sm_80 (A100) and sm_90 (H100/H200),
//! without warnings: CI has no GPU, but a kernel that does not compile fails here.
//!
//! NVRTC comes from pip's `nvidia-cuda-nvrtc-cu12` (`cargo xtask test` installs it and sets
//! `FERRITE_NVRTC`). Without it the test fails under `CI=true` and prints `SKIPPED` elsewhere.

#![allow(clippy::unwrap_used)]

use ferrite_cuda::kernels::{self, FILES};
use ferrite_cuda::nvrtc::{self, Arch};

mod common;

#[test]
fn every_kernel_file_compiles_for_sm80_and_sm90() {
    if let Err(e) = ferrite_cuda::libs::nvrtc() {
        assert!(!common::ci(), "{e} (under CI=true NVRTC must be installed: cargo xtask test does so)");
        eprintln!("SKIPPED: {e}");
        return;
    }
    let (major, minor) = nvrtc::version().unwrap();
    eprintln!("NVRTC {major}.{minor}");
    for arch in [Arch::SM80, Arch::SM90] {
        for file in FILES {
            let cubin = nvrtc::compile(&kernels::source(file), file.name, arch).unwrap_or_else(|e| panic!("{e}"));
            // An ELF image with code for this architecture.
            assert_eq!(&cubin[..4], b"\x7fELF", "kernels/{}.cu for {}", file.name, arch.name());
            assert!(cubin.len() > 1000, "kernels/{}.cu for {}: {} bytes", file.name, arch.name(), cubin.len());
        }
    }
}

#[test]
fn a_kernel_that_does_not_compile_is_an_error_with_nvrtcs_log() {
    if ferrite_cuda::libs::nvrtc().is_err() {
        assert!(!common::ci(), "NVRTC missing under CI=true");
        eprintln!("SKIPPED: no NVRTC");
        return;
    }
    let err = nvrtc::compile("extern \"C\" __global__ void k() { undefined_thing(); }", "broken", Arch::SM90)
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken.cu does not compile for sm_90"), "{err}");
    assert!(err.contains("undefined_thing"), "{err}");
}

#[test]
fn the_cache_returns_the_compiled_cubin_the_second_time() {
    if ferrite_cuda::libs::nvrtc().is_err() {
        assert!(!common::ci(), "NVRTC missing under CI=true");
        eprintln!("SKIPPED: no NVRTC");
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("nvrtc-cache-{}", std::process::id()));
    let cache = nvrtc::KernelCache::new(&dir);
    let src = kernels::source(&kernels::ARGMAX);
    let (first, hit) = cache.get_or_compile(&src, "argmax", Arch::SM80, 12040).unwrap();
    assert!(!hit);
    let (second, hit) = cache.get_or_compile(&src, "argmax", Arch::SM80, 12040).unwrap();
    assert!(hit, "the second compile must come from the cache");
    assert_eq!(first, second);
    let (_, hit) = cache.get_or_compile(&src, "argmax", Arch::SM80, 12050).unwrap();
    assert!(!hit, "another driver version recompiles");
    let _ = std::fs::remove_dir_all(&dir);
}
