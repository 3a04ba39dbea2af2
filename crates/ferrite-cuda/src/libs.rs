//! Finding the CUDA libraries at run time.
//!
//! * `libcuda` (the driver) is opened by cudarc, which panics when it cannot; nothing here calls
//!   into cudarc's driver API before [`driver_present`] says the library is there.
//! * NVRTC is opened here, by full path or by name, whatever its major version (12 from pip's
//!   `nvidia-cuda-nvrtc-cu12`, 13 from a CUDA 13 toolkit): [`nvrtc`] looks in [`NVRTC_ENV`],
//!   ferrite's cache, pip's layouts under the system Python and the toolkit's folders, then asks
//!   the loader. Only the eight NVRTC functions the backend calls are bound.

use std::ffi::{c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::CudaError;

/// A `libnvrtc.so*` file, or a folder holding one (e.g. pip's `.../nvidia/cuda_nvrtc/lib`).
pub const NVRTC_ENV: &str = "FERRITE_NVRTC";

/// Library names tried in each folder and then through the loader, newest first.
const NVRTC_NAMES: [&str; 3] = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"];

/// Where `cargo xtask test`'s pip layout may also be unpacked by hand: `~/.cache/ferrite/nvrtc`.
pub fn default_nvrtc_root() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    Some(Path::new(&home).join(".cache/ferrite/nvrtc"))
}

/// Folders of pip's NVRTC wheels under a Python `site-packages` (cu12 and cu13 layouts).
fn pip_dirs(site: &Path) -> Vec<PathBuf> {
    ["nvidia/cuda_nvrtc/lib", "nvidia/cu13/lib", "nvidia/cu12/lib"].iter().map(|d| site.join(d)).collect()
}

/// Library files worth trying, in order (those that exist).
pub fn nvrtc_candidates() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os(NVRTC_ENV).map(PathBuf::from) {
        if p.is_dir() {
            dirs.push(p);
        } else {
            files.push(p);
        }
    }
    if let Some(root) = default_nvrtc_root() {
        dirs.extend(pip_dirs(&root));
    }
    for prefix in ["/usr/local/lib", "/usr/lib"] {
        for py in std::fs::read_dir(prefix).into_iter().flatten().flatten() {
            if py.file_name().to_string_lossy().starts_with("python3") {
                for sub in ["site-packages", "dist-packages"] {
                    dirs.extend(pip_dirs(&py.path().join(sub)));
                }
            }
        }
    }
    dirs.extend(["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"].map(PathBuf::from));
    for d in dirs {
        files.extend(NVRTC_NAMES.iter().map(|n| d.join(n)));
    }
    files.retain(|f| f.is_file());
    files
}

type Prog = *mut c_void;

/// The NVRTC functions the backend uses, from one loaded library.
pub struct Nvrtc {
    /// Where it was loaded from (a path, or a name the loader resolved).
    pub origin: String,
    _lib: libloading::Library,
    pub(crate) version: unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int,
    pub(crate) create_program: unsafe extern "C" fn(
        *mut Prog,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> c_int,
    pub(crate) compile_program: unsafe extern "C" fn(Prog, c_int, *const *const c_char) -> c_int,
    pub(crate) get_program_log_size: unsafe extern "C" fn(Prog, *mut usize) -> c_int,
    pub(crate) get_program_log: unsafe extern "C" fn(Prog, *mut c_char) -> c_int,
    pub(crate) get_cubin_size: unsafe extern "C" fn(Prog, *mut usize) -> c_int,
    pub(crate) get_cubin: unsafe extern "C" fn(Prog, *mut c_char) -> c_int,
    pub(crate) destroy_program: unsafe extern "C" fn(*mut Prog) -> c_int,
}

impl std::fmt::Debug for Nvrtc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nvrtc").field("origin", &self.origin).finish_non_exhaustive()
    }
}

impl Nvrtc {
    fn bind(lib: libloading::Library, origin: String) -> Result<Self, String> {
        macro_rules! sym {
            ($name:literal) => {
                // SAFETY: the types above are NVRTC's C signatures (nvrtc.h, unchanged since 11.x).
                *unsafe { lib.get(concat!($name, "\0").as_bytes()) }.map_err(|e| format!("{origin}: {e}"))?
            };
        }
        Ok(Nvrtc {
            version: sym!("nvrtcVersion"),
            create_program: sym!("nvrtcCreateProgram"),
            compile_program: sym!("nvrtcCompileProgram"),
            get_program_log_size: sym!("nvrtcGetProgramLogSize"),
            get_program_log: sym!("nvrtcGetProgramLog"),
            get_cubin_size: sym!("nvrtcGetCUBINSize"),
            get_cubin: sym!("nvrtcGetCUBIN"),
            destroy_program: sym!("nvrtcDestroyProgram"),
            origin,
            _lib: lib,
        })
    }
}

/// NVRTC, loaded once per process; the error lists what was tried.
pub fn nvrtc() -> Result<&'static Nvrtc, CudaError> {
    static LOADED: OnceLock<Result<Nvrtc, String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let files = nvrtc_candidates();
            let mut errors = Vec::new();
            let by_path = files.iter().map(|f| (f.as_os_str().to_owned(), f.display().to_string()));
            let by_name = NVRTC_NAMES.iter().map(|n| (std::ffi::OsString::from(n), format!("{n} (loader)")));
            for (target, origin) in by_path.chain(by_name) {
                // SAFETY: libnvrtc's initialisers have no preconditions.
                match unsafe { libloading::Library::new(&target) } {
                    Ok(lib) => match Nvrtc::bind(lib, origin) {
                        Ok(n) => return Ok(n),
                        Err(e) => errors.push(e),
                    },
                    Err(e) => errors.push(e.to_string()),
                }
            }
            Err(format!(
                "libnvrtc not found: set {NVRTC_ENV} to the library or its folder (pip install \
                 nvidia-cuda-nvrtc-cu12, or a CUDA toolkit); tried {files:?} and {NVRTC_NAMES:?} through the \
                 loader ({})",
                errors.last().map(String::as_str).unwrap_or("")
            ))
        })
        .as_ref()
        .map_err(|e| CudaError::NoNvrtc(e.clone()))
}

/// Whether the CUDA driver library (`libcuda`) can be opened.
pub fn driver_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: only probes whether cudarc can open the library.
    *PRESENT.get_or_init(|| unsafe { cudarc::driver::sys::is_culib_present() })
}
