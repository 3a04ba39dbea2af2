//! ferrite-cuda: the tensor core's [`Backend`] on NVIDIA GPUs, over cudarc, with CUDA C
//! kernels in the workspace's `kernels/`.
//!
//! * [`libs`]: the CUDA driver and NVRTC libraries are opened at run time, so this crate builds
//!   and its host-side tests run on machines without CUDA; without a driver, opening a device
//!   is a clear [`CudaError`], never a panic.
//! * [`nvrtc`]: each kernel file is compiled by NVRTC for the device's own architecture at first
//!   use and the cubin cached on disk (key: source hash, architecture, driver and NVRTC versions).
//! * [`driver`]: what the backend needs from a device (memory, copies, launches by name), with
//!   two implementations: [`cuda_driver::CudaDriver`] (a GPU: one stream, stream-ordered
//!   allocation, nothing read back but what the host asks for) and [`emu::EmuDriver`] (the same
//!   kernels compiled as host C++ by `kernels/emu/`, which is how CI tests them without a GPU).
//! * `ops/*`: one file per op family, each a thin Rust side over its kernel. Quantized weights
//!   (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K) stay in their GGUF blocks on the device; the
//!   quantized matmul rounds activations to 8-bit `q8_1` blocks and takes integer dot products
//!   with `dp4a`, as llama.cpp's CUDA backend does: one warp per weight row for up to 8
//!   activation rows, 64 x 64 output tiles through shared memory for more (prefill).
//! * Paged attention takes three shapes ([`launch::paged_plan`]): prefill runs in tiles of query
//!   rows x the q heads of one KV head, each key/value chunk loaded into shared memory once per
//!   tile; long rows with few blocks split their keys over several blocks and merge the partial
//!   softmaxes (flash-decoding); the rest one block per query row and head.
//! * The diffusion ops (`conv2d` as an implicit GEMM, `group_norm`, `upsample_nearest`,
//!   `rotary`, `concat`, `narrow`, `modulate`, `gated_add`, and `attention_dense` behind
//!   `attention_full`) run on the device; only heads wider than 512 values take the CPU kernel.
//!
//! Not done yet: cuBLAS for large float GEMMs (and conv2d), CUDA graphs of the decode step, GPU
//! sampling beyond greedy ([`CudaBackend::argmax`]), a tiled (flash) kernel for long dense
//! attention (today one block per query token and head reads every key).

pub mod cuda_driver;
pub mod driver;
pub mod emu;
pub mod kernels;
pub mod launch;
pub mod libs;
pub mod nvrtc;
mod ops;
pub mod storage;

use std::sync::Arc;

use ferrite_tensor::{
    Activation, AttentionParams, AttentionSeq, Backend, BackendStorage, Conv2dParams, DType, DenseAttention, Device,
    Error, Result, RopeConfig, RopeLayout, Shape, Tensor,
};

pub use cuda_driver::{gpus, CudaDriver, GpuInfo};
pub use driver::{Args, DevicePtr, Driver, LaunchDims};
pub use emu::EmuDriver;
pub use storage::CudaStorage;

/// Why the CUDA backend could not do something.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CudaError {
    /// `libcuda` is not on this machine.
    #[error("no CUDA driver: libcuda could not be loaded (an NVIDIA GPU driver is needed for --device cuda)")]
    NoDriver,
    /// The driver works but the requested GPU does not exist or cannot run the kernels.
    #[error("no usable CUDA device: {0}")]
    NoDevice(String),
    /// NVRTC, which compiles the kernels, could not be loaded.
    #[error("{0}")]
    NoNvrtc(String),
    /// A driver call failed.
    #[error("CUDA driver: {0}")]
    Driver(String),
    /// A kernel did not compile.
    #[error("NVRTC: {0}")]
    Nvrtc(String),
    /// The device has too little free memory.
    #[error("out of GPU memory: {requested} bytes requested, {free} of {total} bytes free ({detail})")]
    OutOfMemory { requested: usize, free: usize, total: usize, detail: String },
    /// A launch was refused (shape past the limits, bad arguments).
    #[error("kernel launch: {0}")]
    Launch(String),
    /// The CUDA emulator failed to build, load or run.
    #[error("CUDA emulator: {0}")]
    Emulator(String),
}

impl From<CudaError> for Error {
    fn from(e: CudaError) -> Self {
        Error::Backend(e.to_string())
    }
}

/// The CUDA backend over a [`Driver`].
#[derive(Debug)]
pub struct CudaBackend {
    pub(crate) driver: Arc<dyn Driver>,
}

impl CudaBackend {
    /// The backend over any driver.
    pub fn new(driver: Arc<dyn Driver>) -> Self {
        CudaBackend { driver }
    }

    /// GPU `ordinal`.
    pub fn open(ordinal: usize) -> std::result::Result<Self, CudaError> {
        Ok(CudaBackend::new(Arc::new(CudaDriver::open(ordinal)?)))
    }

    /// The driver.
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    /// The index of the largest value of each row of `x [.., d]` (f32), computed on the device;
    /// only the indices are read back (greedy sampling).
    pub fn argmax(&self, x: &Tensor) -> Result<Vec<u32>> {
        ops::argmax(self, x)
    }
}

/// A [`Device`] on GPU `choice` (`None` or `"N"`: ordinal N, default 0).
pub fn device(choice: Option<&str>) -> Result<Device> {
    let ordinal = match choice {
        None | Some("") => 0,
        Some(c) => c.parse::<usize>().map_err(|_| {
            Error::Backend(format!("cuda:{c}: the CUDA device is chosen by its ordinal (cuda:0, cuda:1, ...)"))
        })?,
    };
    Ok(Device::new(Arc::new(CudaBackend::open(ordinal)?)))
}

/// A [`Device`] on the CUDA emulator library at `path` (see [`emu::build`]).
pub fn emulated_device(path: &std::path::Path) -> Result<Device> {
    Ok(Device::new(Arc::new(CudaBackend::new(Arc::new(EmuDriver::load(path)?)))))
}

/// One line per GPU the driver sees (`cuda:N name, sm_XY, memory`), or why there are none.
pub fn describe_devices() -> std::result::Result<Vec<String>, CudaError> {
    Ok(gpus()?
        .iter()
        .map(|g| {
            format!(
                "cuda:{}  {}  {}  {:.1} GiB",
                g.ordinal,
                g.name,
                g.arch.name(),
                g.total_memory as f64 / (1u64 << 30) as f64
            )
        })
        .collect())
}

/// The device address of `t`'s first byte, or an error if `t` lives elsewhere.
pub(crate) fn ptr_of(t: &Tensor, op: &'static str) -> Result<DevicePtr> {
    let s = t.storage().as_any().downcast_ref::<CudaStorage>().ok_or_else(|| Error::DeviceMismatch {
        op,
        expected: "cuda".into(),
        actual: t.device().name(),
    })?;
    Ok(s.ptr + t.offset_bytes() as u64)
}

/// Device memory for one launch's small host arguments (ids, positions, block tables), freed in
/// stream order when dropped.
pub(crate) struct Temp<'a> {
    pub ptr: DevicePtr,
    driver: &'a dyn Driver,
}

impl Drop for Temp<'_> {
    fn drop(&mut self) {
        self.driver.free(self.ptr);
    }
}

impl CudaBackend {
    /// New f32 output storage for `shape` on `like`'s device.
    pub(crate) fn output(&self, like: &Tensor, shape: impl Into<Shape>) -> Result<(Tensor, DevicePtr)> {
        let shape = shape.into();
        let storage = Arc::new(CudaStorage::new(self.driver.clone(), shape.numel() * 4)?);
        let ptr = storage.ptr;
        Ok((Tensor::from_storage(storage, like.device().clone(), DType::F32, shape, 0)?, ptr))
    }

    /// `values` copied to the device for one launch.
    pub(crate) fn temp_u32(&self, values: &[u32]) -> Result<Temp<'_>> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let ptr = self.driver.alloc(bytes.len().max(4))?;
        let t = Temp { ptr, driver: self.driver.as_ref() };
        self.driver.upload(ptr, &bytes)?;
        Ok(t)
    }

    /// Scratch device memory for one launch.
    pub(crate) fn temp_bytes(&self, bytes: usize) -> Result<Temp<'_>> {
        let ptr = self.driver.alloc(bytes.max(4))?;
        Ok(Temp { ptr, driver: self.driver.as_ref() })
    }

    pub(crate) fn launch(&self, kernel: &kernels::Kernel, dims: LaunchDims, mut args: Args) -> Result<()> {
        let mut p = args.pointers();
        self.driver.launch(kernel, dims, &mut p)?;
        Ok(())
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> String {
        self.driver.name()
    }

    fn zeros(&self, bytes: usize) -> Result<Arc<dyn BackendStorage>> {
        let s = CudaStorage::new(self.driver.clone(), bytes)?;
        self.driver.zero(s.ptr, bytes)?;
        Ok(Arc::new(s))
    }

    fn upload(&self, bytes: &[u8]) -> Result<Arc<dyn BackendStorage>> {
        let s = CudaStorage::new(self.driver.clone(), bytes.len())?;
        self.driver.upload(s.ptr, bytes)?;
        Ok(Arc::new(s))
    }

    fn download(&self, t: &Tensor) -> Result<Vec<u8>> {
        let mut out = vec![0u8; t.len_bytes()];
        self.driver.download(ptr_of(t, "download")?, &mut out)?;
        Ok(out)
    }

    fn synchronize(&self) -> Result<()> {
        Ok(self.driver.synchronize()?)
    }

    fn matmul(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        ops::matmul::matmul_many(self, x, &[w]).map(|mut v| v.remove(0))
    }

    fn matmul_many(&self, x: &Tensor, ws: &[&Tensor]) -> Result<Vec<Tensor>> {
        ops::matmul::matmul_many(self, x, ws)
    }

    fn rms_norm(&self, x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
        ops::norm::rms_norm(self, x, w, eps)
    }

    fn layer_norm(&self, x: &Tensor, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
        ops::norm::layer_norm(self, x, w, b, eps)
    }

    fn rope(&self, x: &Tensor, positions: &[u32], cfg: &RopeConfig) -> Result<Tensor> {
        ops::rope::rope(self, x, positions, cfg)
    }

    fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        ops::norm::softmax(self, x)
    }

    fn activation(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        ops::elementwise::activation(self, x, act)
    }

    fn gated_activation(&self, gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor> {
        ops::elementwise::gated(self, gate, up, act)
    }

    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        ops::elementwise::binary(self, a, b, &kernels::ADD, "add")
    }

    fn mul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        ops::elementwise::binary(self, a, b, &kernels::MUL, "mul")
    }

    fn scale(&self, x: &Tensor, s: f32) -> Result<Tensor> {
        ops::elementwise::scale(self, x, s)
    }

    fn embedding(&self, table: &Tensor, ids: &[u32]) -> Result<Tensor> {
        ops::embedding::embedding(self, table, ids)
    }

    fn cast(&self, x: &Tensor, dtype: DType) -> Result<Tensor> {
        ops::elementwise::cast(self, x, dtype)
    }

    fn write_kv(&self, cache: &Tensor, x: &Tensor, slots: &[u32]) -> Result<()> {
        ops::attention::write_kv(self, cache, x, slots)
    }

    fn attention(
        &self,
        q: &Tensor,
        k_cache: &Tensor,
        v_cache: &Tensor,
        seqs: &[AttentionSeq],
        params: &AttentionParams,
    ) -> Result<Tensor> {
        ops::attention::attention(self, q, k_cache, v_cache, seqs, params)
    }

    fn attention_dense(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        seq_lens: &[usize],
        opts: &DenseAttention,
    ) -> Result<Tensor> {
        ops::attention_dense::attention_dense(self, q, k, v, seq_lens, opts)
    }

    fn conv2d(&self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: &Conv2dParams) -> Result<Tensor> {
        ops::conv::conv2d(self, x, w, bias, p)
    }

    fn group_norm(&self, x: &Tensor, groups: usize, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
        ops::group_norm::group_norm(self, x, groups, w, b, eps)
    }

    fn upsample_nearest(&self, x: &Tensor, factor: usize) -> Result<Tensor> {
        ops::resample::upsample_nearest(self, x, factor)
    }

    fn rotary(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, layout: RopeLayout) -> Result<Tensor> {
        ops::rotary::rotary(self, x, cos, sin, layout)
    }

    fn concat(&self, xs: &[&Tensor], axis: usize) -> Result<Tensor> {
        ops::layout::concat(self, xs, axis)
    }

    fn narrow(&self, x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        ops::layout::narrow(self, x, axis, start, len)
    }

    fn modulate(&self, x: &Tensor, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
        ops::modulate::modulate(self, x, scale, shift)
    }

    fn gated_add(&self, x: &Tensor, gate: &Tensor, y: &Tensor) -> Result<Tensor> {
        ops::modulate::gated_add(self, x, gate, y)
    }
}
