//! `Tensor`: shape + dtype + a view into shared, backend-owned storage.

use std::sync::Arc;

use half::{bf16, f16};

use crate::backend::{Activation, AttentionParams, AttentionSeq, BackendStorage, RopeConfig};
use crate::{DType, Device, Error, Result, Shape};

/// A contiguous, row-major view of `shape` elements of `dtype`, starting `offset` bytes into
/// `storage`. Cloning is cheap (the storage is shared). Quantized tensors are viewed as rows of
/// whole blocks: their last dimension must be a multiple of the block size.
#[derive(Clone)]
pub struct Tensor {
    storage: Arc<dyn BackendStorage>,
    device: Device,
    dtype: DType,
    shape: Shape,
    offset: usize,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {:?}, {})", self.shape, self.dtype, self.device.name())
    }
}

fn byte_len(dtype: DType, shape: &Shape) -> Result<usize> {
    let numel = shape.checked_numel().ok_or_else(|| Error::shape("tensor", format!("{shape:?} overflows")))?;
    if !shape.last().is_multiple_of(dtype.block_size()) {
        return Err(Error::NotBlockAligned { dtype, numel, block: dtype.block_size() });
    }
    dtype.bytes_for(numel).ok_or(Error::NotBlockAligned { dtype, numel, block: dtype.block_size() })
}

impl Tensor {
    /// Wraps existing storage. Fails when the view does not fit in it.
    pub fn from_storage(
        storage: Arc<dyn BackendStorage>,
        device: Device,
        dtype: DType,
        shape: impl Into<Shape>,
        offset: usize,
    ) -> Result<Tensor> {
        let shape = shape.into();
        let len = byte_len(dtype, &shape)?;
        let end = offset.checked_add(len).ok_or_else(|| Error::shape("tensor", "offset overflow"))?;
        if end > storage.len_bytes() {
            return Err(Error::shape(
                "tensor",
                format!("view {offset}..{end} exceeds storage of {} bytes", storage.len_bytes()),
            ));
        }
        Ok(Tensor { storage, device, dtype, shape, offset })
    }

    /// Uploads raw bytes (`dtype` layout) to `device`.
    pub fn from_bytes(bytes: &[u8], dtype: DType, shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        let len = byte_len(dtype, &shape)?;
        if len != bytes.len() {
            return Err(Error::shape(
                "from_bytes",
                format!("{shape:?} {dtype:?} needs {len} bytes, got {}", bytes.len()),
            ));
        }
        let storage = device.backend().upload(bytes)?;
        Tensor::from_storage(storage, device.clone(), dtype, shape, 0)
    }

    pub fn from_f32(data: &[f32], shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        Tensor::from_bytes(bytemuck::cast_slice(data), DType::F32, shape, device)
    }

    pub fn from_f16(data: &[f16], shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        Tensor::from_bytes(bytemuck::cast_slice(data), DType::F16, shape, device)
    }

    pub fn from_bf16(data: &[bf16], shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        Tensor::from_bytes(bytemuck::cast_slice(data), DType::BF16, shape, device)
    }

    /// A zero-filled tensor.
    pub fn zeros(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        let len = byte_len(dtype, &shape)?;
        let storage = device.backend().zeros(len)?;
        Tensor::from_storage(storage, device.clone(), dtype, shape, 0)
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn device(&self) -> &Device {
        &self.device
    }
    pub fn storage(&self) -> &Arc<dyn BackendStorage> {
        &self.storage
    }
    /// Byte offset of this view in its storage.
    pub fn offset_bytes(&self) -> usize {
        self.offset
    }
    /// Bytes covered by this view.
    pub fn len_bytes(&self) -> usize {
        byte_len(self.dtype, &self.shape).unwrap_or(0)
    }
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }

    /// The same data under another shape with the same number of elements.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if shape.checked_numel() != Some(self.numel()) {
            return Err(Error::shape("reshape", format!("{:?} -> {shape:?}", self.shape)));
        }
        byte_len(self.dtype, &shape)?;
        Ok(Tensor { shape, ..self.clone() })
    }

    /// Rows `start .. start + len` of the outermost dimension, without copying.
    pub fn narrow_rows(&self, start: usize, len: usize) -> Result<Tensor> {
        let dims = self.shape.dims();
        let Some(&outer) = dims.first() else {
            return Err(Error::shape("narrow_rows", "scalar tensor"));
        };
        if start.checked_add(len).is_none_or(|e| e > outer) {
            return Err(Error::OutOfRange { op: "narrow_rows", index: start.saturating_add(len), len: outer });
        }
        let row_bytes = self.len_bytes().checked_div(outer).unwrap_or(0);
        let mut nd = dims.to_vec();
        nd[0] = len;
        Ok(Tensor { shape: Shape::new(nd), offset: self.offset + start * row_bytes, ..self.clone() })
    }

    /// The raw bytes of this view, copied to the host.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.device.backend().download(self)
    }

    /// The elements as f32, copied to the host (quantized tensors are dequantized).
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        let bytes = self.to_bytes()?;
        let mut out = vec![0f32; self.numel()];
        crate::quant::dequantize(self.dtype, &bytes, &mut out)?;
        Ok(out)
    }

    /// This tensor on `device` (a cheap clone when it is already there).
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        if self.device.same_as(device) {
            return Ok(self.clone());
        }
        // Mapped (read-only) CPU bytes to another CPU device (another thread pool): shared, which
        // no one can tell from a copy. A mapped weight stays mapped, and keeps the layouts
        // prepared for it, instead of becoming an owned copy of the file.
        let mapped = matches!(self.storage.as_any().downcast_ref(), Some(crate::cpu::CpuStorage::Mapped { .. }));
        if mapped && self.device.is_cpu() && device.is_cpu() {
            return Ok(Tensor { device: device.clone(), ..self.clone() });
        }
        Tensor::from_bytes(&self.to_bytes()?, self.dtype, self.shape.clone(), device)
    }

    fn same_device(&self, other: &Tensor, op: &'static str) -> Result<()> {
        if self.device.same_as(&other.device) {
            Ok(())
        } else {
            Err(Error::DeviceMismatch { op, expected: self.device.name(), actual: other.device.name() })
        }
    }

    // ---- ops: thin forwards to the backend ----

    /// `self [.., k]` times `w [n, k]` transposed: `[.., n]`.
    pub fn matmul(&self, w: &Tensor) -> Result<Tensor> {
        self.same_device(w, "matmul")?;
        self.device.backend().matmul(self, w)
    }
    /// `self` times each of `ws` (see [`crate::Backend::matmul_many`]).
    pub fn matmul_many(&self, ws: &[&Tensor]) -> Result<Vec<Tensor>> {
        for w in ws {
            self.same_device(w, "matmul_many")?;
        }
        self.device.backend().matmul_many(self, ws)
    }
    pub fn rms_norm(&self, w: &Tensor, eps: f32) -> Result<Tensor> {
        self.same_device(w, "rms_norm")?;
        self.device.backend().rms_norm(self, w, eps)
    }
    pub fn layer_norm(&self, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
        self.same_device(w, "layer_norm")?;
        self.same_device(b, "layer_norm")?;
        self.device.backend().layer_norm(self, w, b, eps)
    }
    pub fn rope(&self, positions: &[u32], cfg: &RopeConfig) -> Result<Tensor> {
        self.device.backend().rope(self, positions, cfg)
    }
    pub fn softmax(&self) -> Result<Tensor> {
        self.device.backend().softmax(self)
    }
    pub fn activation(&self, act: Activation) -> Result<Tensor> {
        self.device.backend().activation(self, act)
    }
    /// `act(self) * up`.
    pub fn gated_activation(&self, up: &Tensor, act: Activation) -> Result<Tensor> {
        self.same_device(up, "gated_activation")?;
        self.device.backend().gated_activation(self, up, act)
    }
    /// `silu(self) * up` (SwiGLU).
    pub fn silu_mul(&self, up: &Tensor) -> Result<Tensor> {
        self.gated_activation(up, Activation::Silu)
    }
    pub fn add(&self, b: &Tensor) -> Result<Tensor> {
        self.same_device(b, "add")?;
        self.device.backend().add(self, b)
    }
    pub fn mul(&self, b: &Tensor) -> Result<Tensor> {
        self.same_device(b, "mul")?;
        self.device.backend().mul(self, b)
    }
    pub fn scale(&self, s: f32) -> Result<Tensor> {
        self.device.backend().scale(self, s)
    }
    /// Gathers rows `ids` of this `[vocab, d]` table.
    pub fn embedding(&self, ids: &[u32]) -> Result<Tensor> {
        self.device.backend().embedding(self, ids)
    }
    pub fn cast(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype {
            return Ok(self.clone());
        }
        self.device.backend().cast(self, dtype)
    }
    /// Writes `x [tokens, kv_heads, head_dim]` into this cache at `slots`.
    pub fn write_kv(&self, x: &Tensor, slots: &[u32]) -> Result<()> {
        self.same_device(x, "write_kv")?;
        self.device.backend().write_kv(self, x, slots)
    }
    /// Attention of these queries over a paged KV cache (see [`AttentionSeq`]).
    pub fn attention(
        &self,
        k_cache: &Tensor,
        v_cache: &Tensor,
        seqs: &[AttentionSeq],
        params: &AttentionParams,
    ) -> Result<Tensor> {
        self.same_device(k_cache, "attention")?;
        self.same_device(v_cache, "attention")?;
        self.device.backend().attention(self, k_cache, v_cache, seqs, params)
    }
    /// Bidirectional attention of these packed queries over `k`/`v` of the same tokens, each
    /// query within its own sequence of `seq_lens` (see [`crate::Backend::attention_full`]).
    pub fn attention_full(&self, k: &Tensor, v: &Tensor, seq_lens: &[usize], scale: f32) -> Result<Tensor> {
        self.same_device(k, "attention_full")?;
        self.same_device(v, "attention_full")?;
        self.device.backend().attention_full(self, k, v, seq_lens, scale)
    }

    /// [`Tensor::attention_full`] with a causal mask and/or a score bias (see
    /// [`crate::DenseAttention`]).
    pub fn attention_dense(
        &self,
        k: &Tensor,
        v: &Tensor,
        seq_lens: &[usize],
        opts: &crate::DenseAttention,
    ) -> Result<Tensor> {
        self.same_device(k, "attention_dense")?;
        self.same_device(v, "attention_dense")?;
        if let Some(b) = opts.bias {
            self.same_device(b, "attention_dense")?;
        }
        self.device.backend().attention_dense(self, k, v, seq_lens, opts)
    }
    /// 2-D convolution of this NHWC tensor (see [`crate::Backend::conv2d`]).
    pub fn conv2d(&self, w: &Tensor, bias: Option<&Tensor>, p: &crate::Conv2dParams) -> Result<Tensor> {
        self.same_device(w, "conv2d")?;
        if let Some(b) = bias {
            self.same_device(b, "conv2d")?;
        }
        self.device.backend().conv2d(self, w, bias, p)
    }
    /// Group normalisation over the last (channel) dimension's `groups` groups.
    pub fn group_norm(&self, groups: usize, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
        self.same_device(w, "group_norm")?;
        self.same_device(b, "group_norm")?;
        self.device.backend().group_norm(self, groups, w, b, eps)
    }
    /// Nearest-neighbour upsampling of this NHWC tensor by `factor`.
    pub fn upsample_nearest(&self, factor: usize) -> Result<Tensor> {
        self.device.backend().upsample_nearest(self, factor)
    }
    /// Rotary embedding from angle tables (see [`crate::Backend::rotary`]).
    pub fn rotary(&self, cos: &Tensor, sin: &Tensor, layout: crate::RopeLayout) -> Result<Tensor> {
        self.same_device(cos, "rotary")?;
        self.same_device(sin, "rotary")?;
        self.device.backend().rotary(self, cos, sin, layout)
    }
    /// Concatenates `xs` along `axis` (on the device of the first).
    pub fn concat(xs: &[&Tensor], axis: usize) -> Result<Tensor> {
        let first = xs.first().ok_or_else(|| Error::shape("concat", "no tensors"))?;
        for x in &xs[1..] {
            first.same_device(x, "concat")?;
        }
        first.device.backend().concat(xs, axis)
    }
    /// A contiguous copy of `start .. start + len` along `axis`.
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        self.device.backend().narrow(self, axis, start, len)
    }
    /// `self * (1 + scale) + shift`, one `scale`/`shift` row per sample.
    pub fn modulate(&self, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
        self.same_device(scale, "modulate")?;
        self.same_device(shift, "modulate")?;
        self.device.backend().modulate(self, scale, shift)
    }
    /// `self + gate * y`, one `gate` row per sample.
    pub fn gated_add(&self, gate: &Tensor, y: &Tensor) -> Result<Tensor> {
        self.same_device(gate, "gated_add")?;
        self.same_device(y, "gated_add")?;
        self.device.backend().gated_add(self, gate, y)
    }
}
