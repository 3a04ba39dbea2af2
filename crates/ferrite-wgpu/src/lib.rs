//! ferrite-wgpu: the tensor core's [`Backend`] over wgpu (Vulkan, Metal, DX12), with WGSL
//! kernels in the workspace's `shaders/`.
//!
//! * [`context`]: adapter choice (`FERRITE_WGPU_ADAPTER`, index or part of a name) and the
//!   device, with `shader-f16` and subgroups enabled where offered.
//! * [`storage`]: one storage buffer per tensor storage.
//! * [`dispatch`]: compiled pipelines, and one command encoder that collects the kernels of a
//!   forward pass; it is submitted only when the host reads a result ([`Backend::download`],
//!   [`Backend::synchronize`]) or after [`dispatch::FLUSH_EVERY`] kernels, so ops never wait
//!   for each other on the host.
//! * `ops/*`: one file per op family, each a thin Rust side over its shader. Quantized
//!   weights (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K) stay in their GGUF blocks on the device;
//!   the matmul and embedding kernels decode them (`shaders/quant_blocks.wgsl`) and multiply
//!   f32 activations by the exact dequantized weights.
//!
//! `attention_full` and `attention_dense` (encoders; the diffusion pipeline's causal / score-bias
//! attention) share one kernel, `shaders/attention_dense.wgsl`, for heads up to 512 wide (wider
//! ones take a round trip through the CPU kernel).
//!
//! Ops not written for the GPU yet answer [`Error::UnsupportedDType`] or
//! [`Error::Backend`] naming the op, never a wrong result.

pub mod context;
pub mod dispatch;
mod ops;
pub mod storage;

use std::sync::Arc;

use ferrite_tensor::{
    Activation, AttentionParams, AttentionSeq, Backend, BackendStorage, Conv2dParams, DType, DenseAttention, Device,
    Error, Result, RopeConfig, RopeLayout, Tensor,
};

pub use context::{describe_adapters, Gpu, ADAPTER_ENV};
pub use storage::WgpuStorage;

/// `FERRITE_WGPU_SUBGROUPS=0` turns the subgroup kernel variants off (for comparisons).
pub const SUBGROUPS_ENV: &str = "FERRITE_WGPU_SUBGROUPS";

/// `FERRITE_WGPU_F16=0` turns the native-f16 kernel variants off (for comparisons).
pub const F16_ENV: &str = "FERRITE_WGPU_F16";

/// Why the WGPU backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum WgpuError {
    /// No adapter, or none matching the choice.
    #[error("no WGPU adapter: {0}")]
    NoAdapter(String),
    /// The adapter refused to open a device.
    #[error("opening the WGPU device: {0}")]
    Device(String),
}

impl From<WgpuError> for Error {
    fn from(e: WgpuError) -> Self {
        Error::Backend(e.to_string())
    }
}

/// The WGPU backend.
#[derive(Debug)]
pub struct WgpuBackend {
    pub(crate) gpu: Gpu,
    pub(crate) kernels: dispatch::Kernels,
    /// Kernels use subgroup operations (the adapter has them, at least 4 wide, and they were not
    /// turned off with [`WgpuBackend::without_subgroups`]).
    use_subgroups: bool,
    /// Kernels read f16 data as WGSL `f16` (the adapter has shader-f16, and it was not turned off
    /// with [`WgpuBackend::without_f16`]).
    use_f16: bool,
}

impl WgpuBackend {
    /// Opens the adapter `choice` names (see [`context::open`]).
    pub fn new(choice: Option<&str>) -> std::result::Result<Self, WgpuError> {
        let gpu = context::open(choice)?;
        let off = std::env::var(SUBGROUPS_ENV).is_ok_and(|v| v == "0");
        let use_subgroups = gpu.subgroups && gpu.info.subgroup_min_size >= 4 && !off;
        let use_f16 = gpu.shader_f16 && !std::env::var(F16_ENV).is_ok_and(|v| v == "0");
        Ok(WgpuBackend { kernels: dispatch::Kernels::default(), gpu, use_subgroups, use_f16 })
    }

    /// The same backend with the subgroup kernel variants turned off (their fallbacks run
    /// instead; tests compare the two).
    pub fn without_subgroups(mut self) -> Self {
        self.use_subgroups = false;
        self
    }

    /// The same backend with the f16 kernel variants turned off.
    pub fn without_f16(mut self) -> Self {
        self.use_f16 = false;
        self
    }

    /// Whether kernels read f16 data natively.
    pub fn f16(&self) -> bool {
        self.use_f16
    }

    /// Whether kernels use subgroup operations.
    pub fn subgroups(&self) -> bool {
        self.use_subgroups
    }

    /// What the device is (adapter info).
    pub fn adapter(&self) -> &wgpu::AdapterInfo {
        &self.gpu.info
    }

    /// Whether the adapter is a CPU (software) device such as lavapipe.
    pub fn is_software(&self) -> bool {
        self.gpu.info.device_type == wgpu::DeviceType::Cpu
    }
}

/// A [`Device`] on the adapter `choice` names (see [`context::open`]).
pub fn device(choice: Option<&str>) -> Result<Device> {
    Ok(Device::new(Arc::new(WgpuBackend::new(choice)?)))
}

/// The WGPU storage of `t`, or an error if `t` lives elsewhere.
pub(crate) fn buffer_of<'a>(t: &'a Tensor, op: &'static str) -> Result<&'a wgpu::Buffer> {
    t.storage().as_any().downcast_ref::<WgpuStorage>().map(|s| &s.buffer).ok_or_else(|| Error::DeviceMismatch {
        op,
        expected: "wgpu".into(),
        actual: t.device().name(),
    })
}

impl Backend for WgpuBackend {
    fn name(&self) -> String {
        format!("wgpu:{}", self.gpu.info.name)
    }

    fn zeros(&self, bytes: usize) -> Result<Arc<dyn BackendStorage>> {
        // wgpu hands out zero-initialised buffers.
        Ok(Arc::new(WgpuStorage::new(&self.gpu.device, bytes, "zeros")))
    }

    fn upload(&self, bytes: &[u8]) -> Result<Arc<dyn BackendStorage>> {
        // Buffers up to the adapter's largest buffer; those past its binding limit (Qwen2.5's
        // 145 MB output matrix under lavapipe's 128 MiB) are quantized weights that the matmul
        // and gather kernels bind a window of rows at a time, while any other kernel given one
        // refuses it with an error naming the limit.
        let limit = self.gpu.device.limits().max_buffer_size;
        if bytes.len() as u64 > limit {
            return Err(Error::Backend(format!(
                "wgpu: a tensor of {} bytes exceeds this adapter's largest buffer of {limit} bytes",
                bytes.len()
            )));
        }
        Ok(Arc::new(self.upload_storage(bytes, "upload")))
    }

    fn download(&self, t: &Tensor) -> Result<Vec<u8>> {
        self.read_back(buffer_of(t, "download")?, t.offset_bytes(), t.len_bytes())
    }

    fn synchronize(&self) -> Result<()> {
        self.flush();
        self.wait()
    }

    fn matmul(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        ops::matmul::matmul(self, x, w)
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
        ops::elementwise::binary(self, a, b, ops::elementwise::Binary::Add)
    }

    fn mul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        ops::elementwise::binary(self, a, b, ops::elementwise::Binary::Mul)
    }

    fn scale(&self, x: &Tensor, s: f32) -> Result<Tensor> {
        ops::elementwise::scale(self, x, s)
    }

    fn embedding(&self, table: &Tensor, ids: &[u32]) -> Result<Tensor> {
        ops::embedding::embedding(self, table, ids)
    }

    fn cast(&self, x: &Tensor, dtype: DType) -> Result<Tensor> {
        ops::embedding::cast(self, x, dtype)
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
}
