//! [`Driver`] over an NVIDIA GPU: the CUDA driver API through cudarc, one non-blocking stream
//! per device, stream-ordered allocation (`cuMemAllocAsync`), kernels compiled by NVRTC for
//! the device's architecture on first use ([`crate::nvrtc::KernelCache`]).

use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::Mutex;

use cudarc::driver::result::{self, DriverError};
use cudarc::driver::sys;

use crate::driver::{DevicePtr, Driver, LaunchDims};
use crate::kernels::{self, Kernel};
use crate::nvrtc::{Arch, KernelCache};
use crate::{libs, CudaError};

fn driver_err(what: &str) -> impl Fn(DriverError) -> CudaError + '_ {
    move |e| CudaError::Driver(format!("{what}: {:?}", e.0))
}

/// One GPU as the driver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    pub ordinal: usize,
    pub name: String,
    pub arch: Arch,
    pub total_memory: usize,
}

/// Initialises the driver API; a clear error when there is no driver library.
fn init() -> Result<(), CudaError> {
    if !libs::driver_present() {
        return Err(CudaError::NoDriver);
    }
    result::init().map_err(driver_err("cuInit"))
}

/// The driver's CUDA version, e.g. 12040.
pub fn driver_version() -> Result<i32, CudaError> {
    init()?;
    let mut v = 0;
    // SAFETY: driver initialised; pointer to a local.
    unsafe { sys::cuDriverGetVersion(&mut v) }.result().map_err(driver_err("cuDriverGetVersion"))?;
    Ok(v)
}

/// Every GPU the driver sees.
pub fn gpus() -> Result<Vec<GpuInfo>, CudaError> {
    init()?;
    let count = result::device::get_count().map_err(driver_err("cuDeviceGetCount"))?;
    (0..count.max(0) as usize).map(gpu_info).collect()
}

fn gpu_info(ordinal: usize) -> Result<GpuInfo, CudaError> {
    let dev = result::device::get(ordinal as i32).map_err(driver_err("cuDeviceGet"))?;
    let attr = |a| {
        // SAFETY: `dev` came from cuDeviceGet.
        unsafe { result::device::get_attribute(dev, a) }.map_err(driver_err("cuDeviceGetAttribute"))
    };
    let major = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let minor = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    Ok(GpuInfo {
        ordinal,
        name: result::device::get_name(dev).map_err(driver_err("cuDeviceGetName"))?,
        arch: Arch { major: major.max(0) as u32, minor: minor.max(0) as u32 },
        // SAFETY: as above.
        total_memory: unsafe { result::device::total_mem(dev) }.map_err(driver_err("cuDeviceTotalMem"))?,
    })
}

/// Compiled modules and their functions.
#[derive(Debug, Default)]
struct Loaded {
    modules: HashMap<&'static str, sys::CUmodule>,
    functions: HashMap<&'static str, sys::CUfunction>,
}

/// One GPU's context and stream.
#[derive(Debug)]
pub struct CudaDriver {
    info: GpuInfo,
    driver_version: i32,
    ctx: sys::CUcontext,
    stream: sys::CUstream,
    cache: Option<KernelCache>,
    loaded: Mutex<Loaded>,
}

// SAFETY: the context and stream handles are usable from any thread once the context is made
// current there (every call below does so first); `loaded` is behind a mutex.
unsafe impl Send for CudaDriver {}
// SAFETY: as above.
unsafe impl Sync for CudaDriver {}

impl CudaDriver {
    /// Opens GPU `ordinal`: its primary context and a new stream.
    pub fn open(ordinal: usize) -> Result<Self, CudaError> {
        init()?;
        let count = result::device::get_count().map_err(driver_err("cuDeviceGetCount"))?.max(0) as usize;
        if ordinal >= count {
            return Err(CudaError::NoDevice(format!("cuda:{ordinal} requested, the driver sees {count} GPU(s)")));
        }
        let info = gpu_info(ordinal)?;
        if !info.arch.has_dp4a() {
            return Err(CudaError::NoDevice(format!(
                "{} is {}; ferrite's CUDA kernels need sm_61 or later",
                info.name,
                info.arch.name()
            )));
        }
        let driver_version = driver_version()?;
        let dev = result::device::get(ordinal as i32).map_err(driver_err("cuDeviceGet"))?;
        // SAFETY: `dev` is valid; the primary context stays retained for the process.
        let ctx = unsafe { result::primary_ctx::retain(dev) }.map_err(driver_err("cuDevicePrimaryCtxRetain"))?;
        // SAFETY: `ctx` was just retained.
        unsafe { result::ctx::set_current(ctx) }.map_err(driver_err("cuCtxSetCurrent"))?;
        let stream =
            result::stream::create(result::stream::StreamKind::NonBlocking).map_err(driver_err("cuStreamCreate"))?;
        Ok(CudaDriver {
            info,
            driver_version,
            ctx,
            stream,
            cache: KernelCache::default_location(),
            loaded: Mutex::new(Loaded::default()),
        })
    }

    /// What the GPU is.
    pub fn info(&self) -> &GpuInfo {
        &self.info
    }

    /// Free and total device memory in bytes.
    pub fn memory(&self) -> Result<(usize, usize), CudaError> {
        self.bind()?;
        result::mem_get_info().map_err(driver_err("cuMemGetInfo"))
    }

    /// Makes this device's context current on the calling thread.
    fn bind(&self) -> Result<(), CudaError> {
        // SAFETY: the context is retained for the life of `self`.
        unsafe { result::ctx::set_current(self.ctx) }.map_err(driver_err("cuCtxSetCurrent"))
    }

    /// The function of `kernel`, compiling and loading its file on first use.
    fn function(&self, kernel: &Kernel) -> Result<sys::CUfunction, CudaError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(&f) = loaded.functions.get(kernel.name) {
            return Ok(f);
        }
        let module = match loaded.modules.get(kernel.file.name) {
            Some(&m) => m,
            None => {
                let source = kernels::source(kernel.file);
                let cubin = match &self.cache {
                    Some(c) => c.get_or_compile(&source, kernel.file.name, self.info.arch, self.driver_version)?.0,
                    None => crate::nvrtc::compile(&source, kernel.file.name, self.info.arch)?,
                };
                // SAFETY: a cubin NVRTC built for this device; the context is current.
                let m = unsafe { result::module::load_data(cubin.as_ptr() as *const c_void) }
                    .map_err(driver_err("cuModuleLoadData"))?;
                loaded.modules.insert(kernel.file.name, m);
                m
            }
        };
        let name = CString::new(kernel.name).map_err(|_| CudaError::Launch("kernel name with a NUL".into()))?;
        // SAFETY: `module` is loaded and never unloaded while `self` lives.
        let f = unsafe { result::module::get_function(module, name) }
            .map_err(driver_err(&format!("cuModuleGetFunction({})", kernel.name)))?;
        loaded.functions.insert(kernel.name, f);
        Ok(f)
    }
}

impl Driver for CudaDriver {
    fn name(&self) -> String {
        format!("cuda:{}", self.info.ordinal)
    }

    fn alloc(&self, bytes: usize) -> Result<DevicePtr, CudaError> {
        self.bind()?;
        // SAFETY: stream-ordered allocation on our live stream.
        unsafe { result::malloc_async(self.stream, bytes.max(1)) }.map_err(|e| {
            let (free, total) = result::mem_get_info().unwrap_or((0, 0));
            CudaError::OutOfMemory { requested: bytes, free, total, detail: format!("{:?}", e.0) }
        })
    }

    fn free(&self, ptr: DevicePtr) {
        if self.bind().is_ok() {
            // SAFETY: `ptr` came from `alloc` and is freed once, after the queued work.
            let _ = unsafe { result::free_async(ptr, self.stream) };
        }
    }

    fn zero(&self, ptr: DevicePtr, bytes: usize) -> Result<(), CudaError> {
        self.bind()?;
        // SAFETY: `ptr .. ptr + bytes` lies in an allocation of ours.
        unsafe { result::memset_d8_async(ptr, 0, bytes, self.stream) }.map_err(driver_err("cuMemsetD8Async"))
    }

    fn upload(&self, dst: DevicePtr, src: &[u8]) -> Result<(), CudaError> {
        if src.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: from pageable memory the driver stages `src` before returning, so the caller
        // may drop it right after; `dst` holds `src.len()` bytes.
        unsafe { result::memcpy_htod_async(dst, src, self.stream) }.map_err(driver_err("cuMemcpyHtoDAsync"))
    }

    fn download(&self, src: DevicePtr, dst: &mut [u8]) -> Result<(), CudaError> {
        if dst.is_empty() {
            return self.synchronize();
        }
        self.bind()?;
        // SAFETY: `dst` stays borrowed until the stream has finished the copy below.
        unsafe { result::memcpy_dtoh_async(dst, src, self.stream) }.map_err(driver_err("cuMemcpyDtoHAsync"))?;
        self.synchronize()
    }

    fn copy(&self, dst: DevicePtr, src: DevicePtr, bytes: usize) -> Result<(), CudaError> {
        self.bind()?;
        // SAFETY: both ranges lie in allocations of ours.
        unsafe { result::memcpy_dtod_async(dst, src, bytes, self.stream) }.map_err(driver_err("cuMemcpyDtoDAsync"))
    }

    fn launch(&self, kernel: &Kernel, dims: LaunchDims, params: &mut [*mut c_void]) -> Result<(), CudaError> {
        self.bind()?;
        let f = self.function(kernel)?;
        let [gx, gy, gz] = dims.grid;
        let [bx, by, bz] = dims.block;
        // SAFETY: `params` point at values of the kernel's parameter types (checked by the
        // emulator tests, which launch the same argument lists).
        unsafe { result::launch_kernel(f, (gx, gy, gz), (bx, by, bz), dims.shared_bytes, self.stream, params) }
            .map_err(driver_err(&format!("launching {}", kernel.name)))
    }

    fn synchronize(&self) -> Result<(), CudaError> {
        self.bind()?;
        // SAFETY: our live stream.
        unsafe { result::stream::synchronize(self.stream) }.map_err(driver_err("cuStreamSynchronize"))
    }
}
