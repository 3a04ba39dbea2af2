//! Finding the CUDA libraries at run time.
//!
//! cudarc opens `libcuda` and `libnvrtc` by their usual names on first use and panics when
//! it cannot, so nothing here calls into cudarc before checking that the library is present.
//! NVRTC often comes from pip (`nvidia-cuda-nvrtc-cu12`) rather than a toolkit on the loader's
//! path: [`load_nvrtc`] opens it by full path first (from [`NVRTC_ENV`] or ferrite's cache),
//! after which cudarc's lookup by name finds the already-loaded library.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::CudaError;

/// A `libnvrtc.so*` file, or a folder holding one (e.g. pip's `.../nvidia/cuda_nvrtc/lib`).
pub const NVRTC_ENV: &str = "FERRITE_NVRTC";

/// Where `cargo xtask test` installs pip's NVRTC: `~/.cache/ferrite/nvrtc`.
pub fn default_nvrtc_root() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    Some(Path::new(&home).join(".cache/ferrite/nvrtc"))
}

/// Library files worth trying, in order: the environment's, then the pip layout under the
/// default root.
pub fn nvrtc_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut add_dir_or_file = |p: PathBuf| {
        if p.is_dir() {
            for name in ["libnvrtc.so.12", "libnvrtc.so.13", "libnvrtc.so"] {
                out.push(p.join(name));
            }
        } else {
            out.push(p);
        }
    };
    if let Some(p) = std::env::var_os(NVRTC_ENV) {
        add_dir_or_file(PathBuf::from(p));
    }
    if let Some(root) = default_nvrtc_root() {
        add_dir_or_file(root.join("nvidia/cuda_nvrtc/lib"));
    }
    out
}

/// Makes NVRTC available to cudarc (once per process). The error lists what was tried.
pub fn load_nvrtc() -> Result<(), CudaError> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let tried = nvrtc_candidates();
            for path in tried.iter().filter(|p| p.is_file()) {
                if open_global(path).is_ok() {
                    break;
                }
            }
            // SAFETY: only probes whether cudarc can open the library (no NVRTC call).
            if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
                Ok(())
            } else {
                Err(format!(
                    "libnvrtc not found: set {NVRTC_ENV} to the library or its folder (pip install \
                     nvidia-cuda-nvrtc-cu12), or put it on the loader path; tried {tried:?} and the loader's search"
                ))
            }
        })
        .clone()
        .map_err(CudaError::NoNvrtc)
}

/// Whether the CUDA driver library (`libcuda`) can be opened.
pub fn driver_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: only probes whether cudarc can open the library.
    *PRESENT.get_or_init(|| unsafe { cudarc::driver::sys::is_culib_present() })
}

/// Opens `path` with its symbols global and keeps it loaded for the life of the process, so
/// that a later `dlopen` by soname returns it.
#[cfg(unix)]
fn open_global(path: &Path) -> Result<(), libloading::Error> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    // SAFETY: libnvrtc's initialisers have no preconditions; the handle is leaked on purpose.
    let lib = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) }?;
    std::mem::forget(lib);
    Ok(())
}

#[cfg(not(unix))]
fn open_global(path: &Path) -> Result<(), libloading::Error> {
    // SAFETY: as above.
    let lib = unsafe { libloading::Library::new(path) }?;
    std::mem::forget(lib);
    Ok(())
}
