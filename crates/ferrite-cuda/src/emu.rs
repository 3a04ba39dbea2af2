//! [`Driver`] over the CUDA emulator of `kernels/emu/`: the same kernel sources compiled as host
//! C++ (each CUDA thread a coroutine, barriers and warp shuffles honoured), with device memory
//! in host memory. It runs the whole backend (argument lists, launch shapes, kernels) on
//! machines without a GPU, slowly; tests use it to check the CUDA backend against the CPU one.
//! It is not a way to run models: a GPU is thousands of times faster.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::driver::{DevicePtr, Driver, LaunchDims};
use crate::kernels::{self, Kernel};
use crate::CudaError;

/// The folder of the kernel sources (this crate is used from its repository for emulation).
pub const KERNEL_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../kernels");

const EMU_SOURCES: [&str; 3] = [
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../kernels/emu/emu.cpp")),
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../kernels/emu/cuda_emu.h")),
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../kernels/emu/registry.inc")),
];

type LaunchFn = unsafe extern "C" fn(
    name: *const c_char,
    grid: *const c_uint,
    block: *const c_uint,
    shared_bytes: c_uint,
    params: *mut *mut c_void,
    err: *mut c_char,
    err_len: c_uint,
) -> c_int;

/// Builds the emulator library into `out_dir` (named by a hash of every source, so a changed
/// kernel rebuilds and an unchanged one is reused) and returns its path. Needs a C++20
/// compiler (`$CXX`, else `c++`).
pub fn build(out_dir: &Path) -> Result<PathBuf, CudaError> {
    let mut h = Sha256::new();
    for s in EMU_SOURCES.iter().chain(kernels::PRELUDE.iter()).chain(kernels::FILES.iter().map(|f| &f.body)) {
        h.update(s.as_bytes());
        h.update([0]);
    }
    let hash: String = h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    let lib = out_dir.join(format!("libferrite_cuda_emu-{hash}.so"));
    if lib.is_file() {
        return Ok(lib);
    }
    std::fs::create_dir_all(out_dir).map_err(|e| CudaError::Emulator(format!("{}: {e}", out_dir.display())))?;
    let tmp = out_dir.join(format!("libferrite_cuda_emu-{hash}.{}.tmp", std::process::id()));
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let out = std::process::Command::new(&cxx)
        .args(["-std=c++20", "-O2", "-ffp-contract=off", "-fPIC", "-shared", "-pthread", "-DFERRITE_EMU", "-o"])
        .arg(&tmp)
        .arg(Path::new(KERNEL_DIR).join("emu/emu.cpp"))
        .output()
        .map_err(|e| CudaError::Emulator(format!("running {cxx} (a C++20 compiler builds the CUDA emulator): {e}")))?;
    if !out.status.success() {
        return Err(CudaError::Emulator(format!(
            "the CUDA emulator does not build:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    std::fs::rename(&tmp, &lib).map_err(|e| CudaError::Emulator(format!("{}: {e}", lib.display())))?;
    Ok(lib)
}

/// The emulated device.
#[derive(Debug)]
pub struct EmuDriver {
    _lib: libloading::Library,
    launch_fn: LaunchFn,
    allocations: Mutex<HashMap<DevicePtr, std::alloc::Layout>>,
    launches: Mutex<u64>,
}

impl EmuDriver {
    /// Loads the emulator library at `path` (see [`build`]).
    pub fn load(path: &Path) -> Result<Self, CudaError> {
        // SAFETY: our own library, whose initialisers only set up static tables.
        let lib = unsafe { libloading::Library::new(path) }
            .map_err(|e| CudaError::Emulator(format!("{}: {e}", path.display())))?;
        // SAFETY: the symbol has the signature of `LaunchFn` (kernels/emu/emu.cpp).
        let launch_fn = *unsafe { lib.get::<LaunchFn>(b"ferrite_emu_launch\0") }
            .map_err(|e| CudaError::Emulator(format!("{}: {e}", path.display())))?;
        Ok(EmuDriver { _lib: lib, launch_fn, allocations: Mutex::new(HashMap::new()), launches: Mutex::new(0) })
    }

    /// Kernels launched so far.
    pub fn launches(&self) -> u64 {
        *self.launches.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Panics unless `ptr .. ptr + bytes` lies inside one live allocation: a wrong copy in the
    /// backend must fail a test, not corrupt the host's memory.
    fn check_range(&self, ptr: DevicePtr, bytes: usize) -> Result<(), CudaError> {
        let allocs = self.allocations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let ok = allocs.iter().any(|(&base, l)| ptr >= base && ptr + bytes as u64 <= base + l.size() as u64);
        if ok || bytes == 0 {
            Ok(())
        } else {
            Err(CudaError::Emulator(format!("access to {bytes} bytes at {ptr:#x} outside every allocation")))
        }
    }
}

impl Driver for EmuDriver {
    fn name(&self) -> String {
        "cuda-emu".into()
    }

    fn alloc(&self, bytes: usize) -> Result<DevicePtr, CudaError> {
        let layout = std::alloc::Layout::from_size_align(bytes.max(1), 256)
            .map_err(|e| CudaError::Emulator(format!("allocating {bytes} bytes: {e}")))?;
        // SAFETY: non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        if p.is_null() {
            return Err(CudaError::OutOfMemory { requested: bytes, free: 0, total: 0, detail: "host".into() });
        }
        let ptr = p as usize as DevicePtr;
        self.allocations.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(ptr, layout);
        Ok(ptr)
    }

    fn free(&self, ptr: DevicePtr) {
        let layout = self.allocations.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&ptr);
        if let Some(layout) = layout {
            // SAFETY: allocated by `alloc` with this layout, freed once.
            unsafe { std::alloc::dealloc(ptr as usize as *mut u8, layout) };
        }
    }

    fn zero(&self, ptr: DevicePtr, bytes: usize) -> Result<(), CudaError> {
        self.check_range(ptr, bytes)?;
        // SAFETY: checked to lie in a live allocation.
        unsafe { std::ptr::write_bytes(ptr as usize as *mut u8, 0, bytes) };
        Ok(())
    }

    fn upload(&self, dst: DevicePtr, src: &[u8]) -> Result<(), CudaError> {
        self.check_range(dst, src.len())?;
        // SAFETY: checked; `src` is a distinct host slice.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst as usize as *mut u8, src.len()) };
        Ok(())
    }

    fn download(&self, src: DevicePtr, dst: &mut [u8]) -> Result<(), CudaError> {
        self.check_range(src, dst.len())?;
        // SAFETY: checked.
        unsafe { std::ptr::copy_nonoverlapping(src as usize as *const u8, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    fn copy(&self, dst: DevicePtr, src: DevicePtr, bytes: usize) -> Result<(), CudaError> {
        self.check_range(dst, bytes)?;
        self.check_range(src, bytes)?;
        // SAFETY: checked; `copy` allows overlap.
        unsafe { std::ptr::copy(src as usize as *const u8, dst as usize as *mut u8, bytes) };
        Ok(())
    }

    fn launch(&self, kernel: &Kernel, dims: LaunchDims, params: &mut [*mut c_void]) -> Result<(), CudaError> {
        let mut count = self.launches.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *count += 1;
        let name = CString::new(kernel.name).map_err(|_| CudaError::Launch("kernel name with a NUL".into()))?;
        let mut err = vec![0 as c_char; 1024];
        // SAFETY: the emulator reads `params` as the kernel's parameter list, like cuLaunchKernel;
        // launches are serialised by the `launches` lock.
        let rc = unsafe {
            (self.launch_fn)(
                name.as_ptr(),
                dims.grid.as_ptr(),
                dims.block.as_ptr(),
                dims.shared_bytes,
                params.as_mut_ptr(),
                err.as_mut_ptr(),
                err.len() as c_uint,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let msg: Vec<u8> = err.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        Err(CudaError::Launch(format!("{} (emulated): {}", kernel.name, String::from_utf8_lossy(&msg))))
    }

    fn synchronize(&self) -> Result<(), CudaError> {
        Ok(())
    }
}
