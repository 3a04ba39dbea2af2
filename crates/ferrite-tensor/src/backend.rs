//! The `Backend` trait: the fused op set every device implements (CPU here; CUDA and WGPU in
//! their own crates).
//!
//! Design rules, so that device backends fit without changes here:
//! * Storage is opaque ([`BackendStorage`]); only the owning backend looks inside it. Callers
//!   never get a host pointer. Host data enters through [`Backend::upload`] and leaves through
//!   [`Backend::download`], which is the one point where a caller waits for queued work.
//! * Ops may run asynchronously: an op returns a tensor whose contents are valid by the time a
//!   later op on the same device or a download reads them (stream order on GPUs, eager on CPU).
//! * Small host-side arguments (token ids, positions, block tables) are passed as slices; the
//!   backend copies them to the device as part of the op.
//! * Activations are f32. Weights may be f32/f16/bf16 or GGUF blocks; the matmul reads
//!   quantized blocks directly. KV caches may be f32 or f16.

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;

use crate::{DType, Result, Tensor};

/// Device memory owned by a backend. Only the backend that made it knows what is inside.
pub trait BackendStorage: Send + Sync + Debug + Any {
    /// Size in bytes.
    fn len_bytes(&self) -> usize;
    /// For the owning backend to downcast to its concrete storage type.
    fn as_any(&self) -> &dyn Any;
}

/// Layout of rotary position embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// Rotate adjacent pairs `(x[2i], x[2i+1])` (llama.cpp "normal" rope; GGUF llama models,
    /// whose Q/K weights the converter permuted for it).
    Interleaved,
    /// Rotate the halves `(x[i], x[i + d/2])` (GPT-NeoX style; Qwen2, Gemma, Hugging Face llama).
    NeoX,
}

/// Rotary embedding parameters. `dim` rotated dimensions at the start of each head
/// (`dim <= head_dim`); frequency `i` is `theta^(-2i/dim)`, positions are multiplied by
/// `freq_scale` (linear rope scaling; 1.0 for none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeConfig {
    pub theta: f32,
    pub dim: usize,
    pub layout: RopeLayout,
    pub freq_scale: f32,
}

impl RopeConfig {
    /// Checks a rope call on `x` of shape `dims` with `positions` positions: `x` must be
    /// `[tokens, heads, head_dim]` with one position per token, and the rotated dims an even
    /// number in `1..=head_dim`. Returns `[tokens, heads, head_dim]`. Every backend's rope uses it.
    pub fn check(&self, dims: &[usize], positions: usize) -> crate::Result<[usize; 3]> {
        let [t, h, d] = match dims {
            &[t, h, d] => [t, h, d],
            other => {
                return Err(crate::Error::shape("rope", format!("x must be [tokens, heads, head_dim], got {other:?}")))
            }
        };
        if positions != t {
            return Err(crate::Error::shape("rope", format!("{t} tokens but {positions} positions")));
        }
        if self.dim > d || !self.dim.is_multiple_of(2) || self.dim == 0 {
            return Err(crate::Error::shape("rope", format!("rotary dim {} with head_dim {d}", self.dim)));
        }
        Ok([t, h, d])
    }

    /// The ratio between successive pair frequencies, `theta^(-2/dim)`: each backend builds
    /// pair `i`'s angle as `pos · freq_scale · step^i` by repeated f32 multiplication (as ggml).
    pub fn step(&self) -> f32 {
        self.theta.powf(-2.0 / self.dim as f32)
    }
}

/// Elementwise activation functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// x * sigmoid(x)
    Silu,
    /// Exact GELU: 0.5 x (1 + erf(x / sqrt 2)) (BERT).
    Gelu,
    /// Tanh-approximated GELU (Gemma's `gelu_pytorch_tanh`).
    GeluTanh,
    /// `x * sigmoid(1.702 x)` (CLIP's `quick_gelu`).
    QuickGelu,
}

/// Parameters of [`Backend::conv2d`]: the same stride and zero padding on both spatial axes
/// (dilation 1, one group), as every convolution of a diffusion VAE uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: usize,
    pub padding: usize,
}

/// Options of [`Backend::attention_dense`].
#[derive(Debug, Clone, Copy)]
pub struct DenseAttention<'a> {
    /// Multiplier of q·k (T5 uses 1.0, most others `1/sqrt(head_dim)`).
    pub scale: f32,
    /// When set, query `i` of a sequence sees only keys `<= i` (CLIP's text encoder).
    pub causal: bool,
    /// An additive score bias `[heads, L, L]` (T5's relative position bias): sequence tokens
    /// `i, j` of every sequence add `bias[h, i, j]`, so `L` must be at least the longest
    /// sequence (`q_heads` heads).
    pub bias: Option<&'a Tensor>,
}

/// One sequence of a (possibly batched) attention call over a paged KV cache.
///
/// The sequence's queries are rows `q_start .. q_start + q_len` of the query tensor; they are
/// the last `q_len` of its `kv_len` positions, so query `i` sits at position
/// `kv_len - q_len + i` and sees keys at positions `<=` its own (causal). Position `p` lives in
/// cache slot `block_table[p / block_size] * block_size + p % block_size`. A contiguous cache is
/// the block table `[0, 1, 2, ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttentionSeq {
    pub q_start: usize,
    pub q_len: usize,
    pub kv_len: usize,
    pub block_table: Vec<u32>,
}

impl AttentionSeq {
    /// The cache slot of position `pos`.
    #[inline]
    pub fn slot(&self, pos: usize, block_size: usize) -> usize {
        self.block_table[pos / block_size] as usize * block_size + pos % block_size
    }
}

/// Parameters shared by all sequences of one attention call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionParams {
    /// Multiplier of q·k, usually `1/sqrt(head_dim)`.
    pub scale: f32,
    /// Tokens per KV-cache block.
    pub block_size: usize,
    /// When set, a query at position `p` sees only keys at positions `> p - window`.
    pub sliding_window: Option<usize>,
    /// When set, scores become `cap * tanh(score / cap)` before the softmax.
    pub softcap: Option<f32>,
}

impl AttentionParams {
    /// The first key position a query at `pos` sees (0 without a sliding window).
    #[inline]
    pub fn first_visible(&self, pos: usize) -> usize {
        self.sliding_window.map_or(0, |w| (pos + 1).saturating_sub(w))
    }
}

/// Checks the operands of [`Backend::write_kv`] (every backend calls it): `cache [slots,
/// kv_heads, head_dim]`, `x [tokens, kv_heads, head_dim]` with one slot per token, each slot inside
/// the cache. Returns `[slots, kv_heads, head_dim]` of the cache.
pub fn check_write_kv(cache: &Tensor, x: &Tensor, slots: &[u32]) -> Result<[usize; 3]> {
    let three = |t: &Tensor| match t.dims() {
        &[a, b, c] => Ok([a, b, c]),
        other => Err(crate::Error::shape("write_kv", format!("expected [rows, heads, head_dim], got {other:?}"))),
    };
    let [n_slots, h, d] = three(cache)?;
    let [t, xh, xd] = three(x)?;
    if (xh, xd) != (h, d) || slots.len() != t {
        return Err(crate::Error::shape(
            "write_kv",
            format!("cache {:?}, x {:?}, {} slots", cache.dims(), x.dims(), slots.len()),
        ));
    }
    if let Some(&bad) = slots.iter().find(|&&s| s as usize >= n_slots) {
        return Err(crate::Error::OutOfRange { op: "write_kv", index: bad as usize, len: n_slots });
    }
    Ok([n_slots, h, d])
}

/// The sizes of a checked [`Backend::attention`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionDims {
    pub tokens: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Cache slots (a whole number of blocks).
    pub slots: usize,
}

/// Checks the operands of [`Backend::attention`] (every backend calls it): `q [tokens, q_heads,
/// head_dim]` and the caches `[slots, kv_heads, head_dim]` of one shape and dtype, `q_heads` a
/// multiple of `kv_heads`, and the slots a whole number of blocks.
pub fn check_attention(q: &Tensor, k_cache: &Tensor, v_cache: &Tensor, p: &AttentionParams) -> Result<AttentionDims> {
    let three = |t: &Tensor| match t.dims() {
        &[a, b, c] => Ok([a, b, c]),
        other => Err(crate::Error::shape("attention", format!("expected [rows, heads, head_dim], got {other:?}"))),
    };
    let [tokens, q_heads, head_dim] = three(q)?;
    let [slots, kv_heads, kd] = three(k_cache)?;
    if k_cache.dims() != v_cache.dims()
        || k_cache.dtype() != v_cache.dtype()
        || kd != head_dim
        || kv_heads == 0
        || q_heads % kv_heads != 0
    {
        return Err(crate::Error::shape(
            "attention",
            format!("q {:?}, k {:?}, v {:?}", q.dims(), k_cache.dims(), v_cache.dims()),
        ));
    }
    if p.block_size == 0 || slots % p.block_size != 0 {
        return Err(crate::Error::shape("attention", format!("{slots} slots in blocks of {}", p.block_size)));
    }
    Ok(AttentionDims { tokens, q_heads, kv_heads, head_dim, slots })
}

/// For each of `tokens` query rows, its sequence (an index into `seqs`) and position, or `None`
/// for a row of no sequence (every backend outputs zeros there); checks that each sequence fits
/// the rows, has blocks for all its positions inside a cache of `slots` slots, and that no row
/// belongs to two sequences.
pub fn attention_rows(
    seqs: &[AttentionSeq],
    tokens: usize,
    slots: usize,
    p: &AttentionParams,
) -> Result<Vec<Option<(usize, usize)>>> {
    let mut at = vec![None; tokens];
    for (si, s) in seqs.iter().enumerate() {
        if s.q_len > s.kv_len || s.q_start.checked_add(s.q_len).is_none_or(|e| e > tokens) {
            return Err(crate::Error::shape("attention", format!("sequence {si}: {s:?} with {tokens} query tokens")));
        }
        let blocks = s.kv_len.div_ceil(p.block_size.max(1));
        if s.block_table.len() < blocks {
            return Err(crate::Error::shape(
                "attention",
                format!("sequence {si}: {} blocks for {} positions", s.block_table.len(), s.kv_len),
            ));
        }
        if let Some(&b) = s.block_table[..blocks].iter().find(|&&b| (b as usize + 1) * p.block_size > slots) {
            return Err(crate::Error::OutOfRange {
                op: "attention (block table)",
                index: b as usize,
                len: slots / p.block_size.max(1),
            });
        }
        for i in 0..s.q_len {
            let row = &mut at[s.q_start + i];
            if row.is_some() {
                return Err(crate::Error::shape("attention", format!("query row {} claimed twice", s.q_start + i)));
            }
            *row = Some((si, s.kv_len - s.q_len + i));
        }
    }
    Ok(at)
}

/// The block tables of `seqs` end to end, as GPU kernels take them, and the offset of each
/// sequence's table in it.
pub fn concat_block_tables(seqs: &[AttentionSeq]) -> Result<(Vec<u32>, Vec<u32>)> {
    let mut offsets = Vec::with_capacity(seqs.len());
    let mut tables = Vec::new();
    for s in seqs {
        offsets
            .push(u32::try_from(tables.len()).map_err(|_| crate::Error::shape("attention", "block tables too long"))?);
        tables.extend_from_slice(&s.block_table);
    }
    Ok((offsets, tables))
}

/// A compute device: memory management plus the fused op set.
///
/// Shapes below are row-major, outermost first. "Rows" means all but the last dimension.
pub trait Backend: Send + Sync + Debug {
    /// A short name such as `cpu` or `cuda:0`.
    fn name(&self) -> String;

    /// Zero-initialised storage of `bytes` bytes.
    fn zeros(&self, bytes: usize) -> Result<Arc<dyn BackendStorage>>;
    /// Copies host bytes into new device storage.
    fn upload(&self, bytes: &[u8]) -> Result<Arc<dyn BackendStorage>>;
    /// Copies the bytes of `t`'s view back to the host, waiting for the work that produces them.
    fn download(&self, t: &Tensor) -> Result<Vec<u8>>;
    /// Waits for all queued work.
    fn synchronize(&self) -> Result<()>;
    /// Runs `f`, which issues ops on this backend, in the backend's execution context. The CPU
    /// backend runs it inside its thread pool, so that the many small ops of a forward pass do
    /// not each pay a hand-off between threads. Others simply call `f`.
    fn execute(&self, f: &mut (dyn FnMut() + Send)) {
        f()
    }

    /// `x [.., k]` (f32) times the transpose of `w [n, k]` (any dtype) gives `[.., n]` f32.
    fn matmul(&self, x: &Tensor, w: &Tensor) -> Result<Tensor>;
    /// `x` times each of `ws` (e.g. the Q, K and V projections, or gate and up), in one call so
    /// a backend can prepare `x` once (the CPU quantizes it once per activation format) and run
    /// all products in one parallel region. Same result as calling [`Backend::matmul`] per weight.
    fn matmul_many(&self, x: &Tensor, ws: &[&Tensor]) -> Result<Vec<Tensor>> {
        ws.iter().map(|w| self.matmul(x, w)).collect()
    }
    /// Row-wise `x / rms(x) * w`, with `w [d]` f32.
    fn rms_norm(&self, x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor>;
    /// Row-wise `(x - mean) / std * w + b`.
    fn layer_norm(&self, x: &Tensor, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor>;
    /// Rotates `x [tokens, heads, head_dim]`; `positions` has one entry per token.
    fn rope(&self, x: &Tensor, positions: &[u32], cfg: &RopeConfig) -> Result<Tensor>;
    /// Softmax over the last dimension.
    fn softmax(&self, x: &Tensor) -> Result<Tensor>;
    /// `act(x)` elementwise.
    fn activation(&self, x: &Tensor, act: Activation) -> Result<Tensor>;
    /// `act(gate) * up` elementwise (SwiGLU with `Silu`, GeGLU with `GeluTanh`).
    fn gated_activation(&self, gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor>;
    /// `a + b`, where `b` has `a`'s shape or is one row broadcast over all rows of `a` (a bias).
    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor>;
    /// `a * b`, broadcast as in [`Backend::add`].
    fn mul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor>;
    /// `x * s`.
    fn scale(&self, x: &Tensor, s: f32) -> Result<Tensor>;
    /// Gathers rows `ids` of `table [vocab, d]` (any dtype) into `[ids.len(), d]` f32.
    fn embedding(&self, table: &Tensor, ids: &[u32]) -> Result<Tensor>;
    /// Converts a float tensor to another float dtype.
    fn cast(&self, x: &Tensor, dtype: DType) -> Result<Tensor>;
    /// Writes rows of `x [tokens, kv_heads, head_dim]` into `cache [slots, kv_heads, head_dim]`
    /// at `slots[i]` (converting to the cache dtype). The cache is updated in place.
    fn write_kv(&self, cache: &Tensor, x: &Tensor, slots: &[u32]) -> Result<()>;
    /// Causal (optionally sliding-window) attention of `q [tokens, q_heads, head_dim]` over
    /// `k_cache`/`v_cache [slots, kv_heads, head_dim]` for a batch of sequences, grouped-query
    /// when `q_heads` is a multiple of `kv_heads`. Returns `[tokens, q_heads, head_dim]` f32.
    fn attention(
        &self,
        q: &Tensor,
        k_cache: &Tensor,
        v_cache: &Tensor,
        seqs: &[AttentionSeq],
        params: &AttentionParams,
    ) -> Result<Tensor>;
    /// Bidirectional attention of packed sequences (encoders): `q [tokens, q_heads, head_dim]`,
    /// `k`/`v [tokens, kv_heads, head_dim]`; `seq_lens` splits the tokens into sequences and
    /// each query sees every key of its own sequence (no cache, no padding, so no mask).
    /// Returns `[tokens, q_heads, head_dim]` f32. It is [`Backend::attention_dense`] without a
    /// mask or bias.
    fn attention_full(&self, q: &Tensor, k: &Tensor, v: &Tensor, seq_lens: &[usize], scale: f32) -> Result<Tensor> {
        self.attention_dense(q, k, v, seq_lens, &DenseAttention { scale, causal: false, bias: None })
    }

    // ---- ops of the diffusion pipeline (image tensors are NHWC: [n, h, w, c]) ----

    /// [`Backend::attention_full`] with a causal mask and/or an additive bias (see
    /// [`DenseAttention`]). The default copies to the host and runs the CPU kernel, so a backend
    /// without its own kernel still works.
    fn attention_dense(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        seq_lens: &[usize],
        opts: &DenseAttention,
    ) -> Result<Tensor> {
        let cpu = crate::Device::cpu();
        let (hq, hk, hv) = (q.to_device(&cpu)?, k.to_device(&cpu)?, v.to_device(&cpu)?);
        let bias = opts.bias.map(|b| b.to_device(&cpu)).transpose()?;
        let host = DenseAttention { bias: bias.as_ref(), ..*opts };
        crate::cpu::ops::attention_full::attention_dense(&hq, &hk, &hv, seq_lens, &host)?.to_device(q.device())
    }
    /// 2-D convolution of `x [n, h, w, c_in]` (f32) with `w [c_out, kh, kw, c_in]` (f32/f16/bf16)
    /// and an optional `bias [c_out]` (f32). Returns `[n, h_out, w_out, c_out]` f32 with
    /// `h_out = (h + 2 padding - kh) / stride + 1` (same for w).
    fn conv2d(&self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: &Conv2dParams) -> Result<Tensor> {
        let _ = (x, w, bias, p);
        Err(crate::Error::Backend(format!("{} has no conv2d", self.name())))
    }
    /// Group normalisation of `x [n, .., c]`: the channels split into `groups` equal groups, and
    /// each (sample, group) is normalised over all its positions and channels, then scaled by
    /// `w [c]` and shifted by `b [c]`.
    fn group_norm(&self, x: &Tensor, groups: usize, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
        let _ = (x, groups, w, b, eps);
        Err(crate::Error::Backend(format!("{} has no group_norm", self.name())))
    }
    /// Nearest-neighbour upsampling of `x [n, h, w, c]` by an integer `factor`:
    /// `[n, h factor, w factor, c]`.
    fn upsample_nearest(&self, x: &Tensor, factor: usize) -> Result<Tensor> {
        let _ = (x, factor);
        Err(crate::Error::Backend(format!("{} has no upsample_nearest", self.name())))
    }
    /// Rotary embedding of `x [tokens, heads, head_dim]` from given angle tables
    /// `cos`/`sin [tokens, head_dim / 2]` (f32): pair `i` of every head of token `t` is rotated by
    /// `(cos[t, i], sin[t, i])`; pairs are laid out as `layout` says. FLUX's 3-axis rope builds its
    /// tables on the host.
    fn rotary(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, layout: RopeLayout) -> Result<Tensor> {
        let _ = (x, cos, sin, layout);
        Err(crate::Error::Backend(format!("{} has no rotary", self.name())))
    }
    /// Concatenates f32 tensors along `axis`; all other dimensions must agree.
    fn concat(&self, xs: &[&Tensor], axis: usize) -> Result<Tensor> {
        let _ = (xs, axis);
        Err(crate::Error::Backend(format!("{} has no concat", self.name())))
    }
    /// A contiguous copy of `x` (f32) restricted to `start .. start + len` along `axis`.
    fn narrow(&self, x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        let _ = (x, axis, start, len);
        Err(crate::Error::Backend(format!("{} has no narrow", self.name())))
    }
    /// AdaLN modulation `x * (1 + scale) + shift` of `x [n, t, d]` with one `scale`/`shift`
    /// row per sample (`[n, d]`).
    fn modulate(&self, x: &Tensor, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
        let _ = (x, scale, shift);
        Err(crate::Error::Backend(format!("{} has no modulate", self.name())))
    }
    /// Gated residual `x + gate * y` of `x`, `y [n, t, d]` with one `gate` row per sample
    /// (`[n, d]`).
    fn gated_add(&self, x: &Tensor, gate: &Tensor, y: &Tensor) -> Result<Tensor> {
        let _ = (x, gate, y);
        Err(crate::Error::Backend(format!("{} has no gated_add", self.name())))
    }
}
