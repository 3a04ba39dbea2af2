//! Kernel compilation with NVRTC for the device's own architecture, cached on disk.
//!
//! Kernels are compiled to a cubin for `sm_XY` (no PTX JIT in the driver, so a driver older
//! than the NVRTC release still loads them). The cache key is the SHA-256 of the source, the
//! architecture, the driver version and the NVRTC version: a changed kernel, GPU or driver
//! compiles afresh, anything else loads the cubin from [`KernelCache`].

use std::ffi::{c_char, CString};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{libs, CudaError};

/// A GPU architecture (compute capability).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Arch {
    pub major: u32,
    pub minor: u32,
}

impl Arch {
    pub const SM80: Arch = Arch { major: 8, minor: 0 };
    pub const SM90: Arch = Arch { major: 9, minor: 0 };

    /// `sm_XY`.
    pub fn name(&self) -> String {
        format!("sm_{}{}", self.major, self.minor)
    }

    /// Whether `__dp4a` exists (sm_61 and later); the quantized kernels need it.
    pub fn has_dp4a(&self) -> bool {
        (self.major, self.minor) >= (6, 1)
    }
}

/// An NVRTC status as an error (`NVRTC_SUCCESS` is 0).
fn check(code: i32, what: &str) -> Result<(), CudaError> {
    if code == 0 {
        Ok(())
    } else {
        Err(CudaError::Nvrtc(format!("{what}: NVRTC error {code}")))
    }
}

/// NVRTC's version `(major, minor)`.
pub fn version() -> Result<(i32, i32), CudaError> {
    let n = libs::nvrtc()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: pointers to live locals.
    check(unsafe { (n.version)(&mut major, &mut minor) }, "nvrtcVersion")?;
    Ok((major, minor))
}

/// The compiler options for `arch`.
pub fn options(arch: Arch) -> Vec<String> {
    vec![format!("--gpu-architecture={}", arch.name()), "--std=c++17".into(), "-DFERRITE_CUDA".into()]
}

/// Compiles `source` (named `name` in messages) to a cubin for `arch`. A compile error carries
/// NVRTC's log.
pub fn compile(source: &str, name: &str, arch: Arch) -> Result<Vec<u8>, CudaError> {
    let n = libs::nvrtc()?;
    let src = CString::new(source).map_err(|_| CudaError::Nvrtc(format!("{name}: NUL byte in the source")))?;
    let cname = CString::new(format!("{name}.cu")).map_err(|_| CudaError::Nvrtc("bad kernel file name".into()))?;
    let opts: Vec<CString> = options(arch).into_iter().filter_map(|o| CString::new(o).ok()).collect();
    let opt_ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
    let mut prog = std::ptr::null_mut();
    // SAFETY: NVRTC copies the source and name; no headers.
    check(
        unsafe { (n.create_program)(&mut prog, src.as_ptr(), cname.as_ptr(), 0, std::ptr::null(), std::ptr::null()) },
        "nvrtcCreateProgram",
    )?;
    // SAFETY: `prog` is live until destroyed below; the option strings outlive the call.
    let compiled = unsafe { (n.compile_program)(prog, opt_ptrs.len() as i32, opt_ptrs.as_ptr()) };
    let out = if compiled != 0 {
        // SAFETY: live program.
        let log = unsafe { log(n, prog) };
        Err(CudaError::Nvrtc(format!("kernels/{name}.cu does not compile for {}:\n{log}", arch.name())))
    } else {
        // SAFETY: live, compiled program.
        unsafe { cubin(n, prog) }
    };
    // SAFETY: created above, destroyed once.
    let _ = unsafe { (n.destroy_program)(&mut prog) };
    out
}

/// The program's log (warnings or errors), empty when there is none.
///
/// # Safety
/// `prog` must be a live program of `n`.
unsafe fn log(n: &libs::Nvrtc, prog: *mut std::ffi::c_void) -> String {
    let mut size = 0usize;
    // SAFETY: the caller passes a live program; the buffer has the size NVRTC reported.
    unsafe {
        if (n.get_program_log_size)(prog, &mut size) != 0 {
            return "(no log)".into();
        }
        let mut buf = vec![0u8; size.max(1)];
        if (n.get_program_log)(prog, buf.as_mut_ptr() as *mut c_char) != 0 {
            return "(no log)".into();
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).trim().to_string()
    }
}

/// The compiled cubin.
///
/// # Safety
/// `prog` must be a live, compiled program of `n`.
unsafe fn cubin(n: &libs::Nvrtc, prog: *mut std::ffi::c_void) -> Result<Vec<u8>, CudaError> {
    let mut size = 0usize;
    // SAFETY: live program, pointer to a local.
    check(unsafe { (n.get_cubin_size)(prog, &mut size) }, "nvrtcGetCUBINSize")?;
    let mut buf = vec![0u8; size];
    // SAFETY: `buf` holds the `size` bytes NVRTC reported.
    check(unsafe { (n.get_cubin)(prog, buf.as_mut_ptr() as *mut c_char) }, "nvrtcGetCUBIN")?;
    Ok(buf)
}

/// Compiled kernels on disk, one file per cache key.
#[derive(Debug, Clone)]
pub struct KernelCache {
    dir: PathBuf,
}

/// Overrides the cache folder.
pub const CACHE_ENV: &str = "FERRITE_CUDA_CACHE";

impl KernelCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        KernelCache { dir: dir.into() }
    }

    /// `$FERRITE_CUDA_CACHE`, else `~/.cache/ferrite/cuda-kernels`.
    pub fn default_location() -> Option<Self> {
        if let Some(d) = std::env::var_os(CACHE_ENV) {
            return Some(KernelCache::new(d));
        }
        let home = std::env::var_os("HOME")?;
        Some(KernelCache::new(Path::new(&home).join(".cache/ferrite/cuda-kernels")))
    }

    /// The key of `source` compiled for `arch` under driver `driver_version` by NVRTC `nvrtc`.
    pub fn key(source: &str, arch: Arch, driver_version: i32, nvrtc: (i32, i32)) -> String {
        let mut h = Sha256::new();
        h.update(source.as_bytes());
        h.update(format!("\0{}\0{driver_version}\0{}.{}\0{:?}", arch.name(), nvrtc.0, nvrtc.1, options(arch)));
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cubin"))
    }

    /// The cached cubin of `key`, if any.
    pub fn load(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(key)).ok().filter(|b| !b.is_empty())
    }

    /// Stores a cubin (through a temporary file and a rename, so readers never see half of one).
    pub fn store(&self, key: &str, cubin: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!("{key}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, cubin)?;
        std::fs::rename(&tmp, self.path(key))
    }

    /// The cubin of `source` for `arch`: from the cache, else compiled (and stored; a cache that
    /// cannot be written only costs a recompile next time).
    pub fn get_or_compile(
        &self,
        source: &str,
        name: &str,
        arch: Arch,
        driver_version: i32,
    ) -> Result<(Vec<u8>, bool), CudaError> {
        let key = Self::key(source, arch, driver_version, version()?);
        if let Some(c) = self.load(&key) {
            return Ok((c, true));
        }
        let c = compile(source, name, arch)?;
        let _ = self.store(&key, &c);
        Ok((c, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_source_arch_driver_and_compiler() {
        let k = KernelCache::key("a", Arch::SM80, 12040, (12, 9));
        assert_eq!(k, KernelCache::key("a", Arch::SM80, 12040, (12, 9)));
        assert_eq!(k.len(), 64);
        for other in [
            KernelCache::key("b", Arch::SM80, 12040, (12, 9)),
            KernelCache::key("a", Arch::SM90, 12040, (12, 9)),
            KernelCache::key("a", Arch::SM80, 12050, (12, 9)),
            KernelCache::key("a", Arch::SM80, 12040, (12, 8)),
        ] {
            assert_ne!(k, other);
        }
    }

    #[test]
    fn the_cache_round_trips_and_ignores_empty_files() {
        let dir = std::env::temp_dir().join(format!("ferrite-cuda-cache-test-{}", std::process::id()));
        let cache = KernelCache::new(&dir);
        assert_eq!(cache.load("k"), None);
        cache.store("k", b"cubin bytes").expect("writable temp dir");
        assert_eq!(cache.load("k").as_deref(), Some(&b"cubin bytes"[..]));
        std::fs::write(dir.join("e.cubin"), b"").expect("writable");
        assert_eq!(cache.load("e"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn architectures_are_named_as_nvrtc_wants() {
        assert_eq!(Arch::SM80.name(), "sm_80");
        assert_eq!(Arch { major: 8, minor: 9 }.name(), "sm_89");
        assert!(Arch::SM90.has_dp4a() && !Arch { major: 6, minor: 0 }.has_dp4a());
    }
}
