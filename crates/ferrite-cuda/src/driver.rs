//! What the backend needs from a device: memory, copies and kernel launches by name.
//!
//! Two drivers implement it: [`crate::cuda_driver::CudaDriver`] (an NVIDIA GPU through the CUDA
//! driver API, one stream) and [`crate::emu::EmuDriver`] (the kernels compiled as host C++ and
//! run by `kernels/emu/`, so the backend and its kernels are tested on machines without a GPU).
//! Device addresses are plain `u64`s; the backend adds tensor offsets to them itself.

use std::ffi::c_void;
use std::fmt::Debug;

use crate::kernels::Kernel;
use crate::CudaError;

/// A device address.
pub type DevicePtr = u64;

/// Grid and block sizes of one launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchDims {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    /// Bytes of dynamic shared memory.
    pub shared_bytes: u32,
}

/// Memory and launches in stream order: each call is ordered after the previous ones; only
/// [`Driver::download`] and [`Driver::synchronize`] wait for the device.
pub trait Driver: Send + Sync + Debug {
    /// A short name such as `cuda:0` or `cuda-emu`.
    fn name(&self) -> String;
    /// `bytes` bytes of device memory (contents undefined).
    fn alloc(&self, bytes: usize) -> Result<DevicePtr, CudaError>;
    /// Frees memory from [`Driver::alloc`] once the work queued so far is done with it.
    fn free(&self, ptr: DevicePtr);
    /// Sets `bytes` bytes at `ptr` to zero.
    fn zero(&self, ptr: DevicePtr, bytes: usize) -> Result<(), CudaError>;
    /// Copies `src` to the device at `dst`; `src` may be dropped as soon as this returns.
    fn upload(&self, dst: DevicePtr, src: &[u8]) -> Result<(), CudaError>;
    /// Copies device bytes into `dst` after all queued work.
    fn download(&self, src: DevicePtr, dst: &mut [u8]) -> Result<(), CudaError>;
    /// Device-to-device copy.
    fn copy(&self, dst: DevicePtr, src: DevicePtr, bytes: usize) -> Result<(), CudaError>;
    /// Queues `kernel` with `params` (pointers to each argument's value, as `cuLaunchKernel`).
    fn launch(&self, kernel: &Kernel, dims: LaunchDims, params: &mut [*mut c_void]) -> Result<(), CudaError>;
    /// Waits for all queued work.
    fn synchronize(&self) -> Result<(), CudaError>;
}

/// Kernel arguments by value, each in its own 8-byte slot; [`Args::pointers`] gives the
/// `void**` array a launch takes.
#[derive(Debug, Default)]
pub struct Args(Vec<u64>);

impl Args {
    pub fn new() -> Self {
        Args(Vec::with_capacity(12))
    }

    /// A device pointer.
    pub fn ptr(mut self, p: DevicePtr) -> Self {
        self.0.push(p);
        self
    }

    /// An `unsigned int` argument, checked to fit.
    pub fn u(mut self, v: usize) -> Result<Self, CudaError> {
        let v =
            u32::try_from(v).map_err(|_| CudaError::Launch(format!("{v} does not fit a 32-bit kernel argument")))?;
        self.0.push(u64::from(v));
        Ok(self)
    }

    /// A `float` argument.
    pub fn f(mut self, v: f32) -> Self {
        self.0.push(u64::from(v.to_bits()));
        self
    }

    /// Pointers to each slot. A 4-byte argument is read from the low half of its slot, which is
    /// its first 4 bytes on little-endian machines (all CUDA hosts).
    pub fn pointers(&mut self) -> Vec<*mut c_void> {
        self.0.iter_mut().map(|v| v as *mut u64 as *mut c_void).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_sit_at_the_start_of_their_slots() {
        let mut a = Args::new().ptr(0x1234_5678_9abc).u(7).expect("fits").f(1.5);
        let p = a.pointers();
        assert_eq!(p.len(), 3);
        // SAFETY: each pointer points into `a`'s live vector of u64 slots.
        unsafe {
            assert_eq!(*(p[0] as *const u64), 0x1234_5678_9abc);
            assert_eq!(*(p[1] as *const u32), 7);
            assert_eq!(*(p[2] as *const f32), 1.5);
        }
        assert!(Args::new().u(1 << 33).is_err());
    }
}
