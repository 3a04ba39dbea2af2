//! The KV cache and paged attention (`shaders/write_kv.wgsl`, `shaders/attention.wgsl`).

use ferrite_tensor::{
    attention_rows, check_attention, check_write_kv, concat_block_tables, AttentionParams, AttentionSeq, DType, Error,
    Result, Tensor,
};

use super::f32_offset;
use crate::dispatch::{groups, Params};
use crate::{buffer_of, shader, WgpuBackend};

/// The element offset of a cache (f32 or f16).
fn cache_offset(cache: &Tensor, op: &'static str) -> Result<usize> {
    match cache.dtype() {
        DType::F32 => Ok(cache.offset_bytes() / 4),
        DType::F16 => Ok(cache.offset_bytes() / 2),
        other => Err(Error::UnsupportedDType { dtype: other, op }),
    }
}

/// Writes rows of `x [tokens, kv_heads, head_dim]` into `cache` at `slots`.
pub fn write_kv(be: &WgpuBackend, cache: &Tensor, x: &Tensor, slots: &[u32]) -> Result<()> {
    let x_off = f32_offset(x, "write_kv")?;
    let [_, h, d] = check_write_kv(cache, x, slots)?;
    let row = h * d;
    let cache_off = cache_offset(cache, "write_kv")?;
    let (entry, threads) = match cache.dtype() {
        DType::F16 if row % 2 == 0 && cache_off % 2 == 0 => ("write_f16", x.numel() / 2),
        DType::F32 => ("write_f32", x.numel()),
        other => return Err(Error::UnsupportedDType { dtype: other, op: "write_kv (wgpu: odd f16 rows)" }),
    };
    let params = Params::new().u(threads)?.u(row)?.u(x_off)?.u(cache_off)?;
    let slot_buf = be.u32_buffer(slots);
    let bufs = [buffer_of(x, "write_kv")?, &slot_buf, buffer_of(cache, "write_kv")?];
    be.run(shader!("write_kv"), entry, &params, &bufs, groups(threads, 256))
}

/// Causal attention of `q [tokens, q_heads, head_dim]` over the paged caches.
pub fn attention(
    be: &WgpuBackend,
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    seqs: &[AttentionSeq],
    params: &AttentionParams,
) -> Result<Tensor> {
    let q_off = f32_offset(q, "attention")?;
    let dims = check_attention(q, k_cache, v_cache, params)?;
    let (tokens, hq, hk, d) = (dims.tokens, dims.q_heads, dims.kv_heads, dims.head_dim);
    let rows = attention_rows(seqs, tokens, dims.slots, params)?;
    let (offsets, tables) = concat_block_tables(seqs)?;
    // Per query token: (position, first visible position, block-table offset, unused); a row of
    // no sequence gets the empty range (0, 1): zeros.
    let mut info = vec![0u32; tokens * 4];
    let mut max_kv = 1;
    for (t, row) in rows.iter().enumerate() {
        info[4 * t..4 * t + 3].copy_from_slice(&match *row {
            Some((si, pos)) => {
                let first = params.first_visible(pos);
                max_kv = max_kv.max(pos + 1 - first);
                [pos as u32, first as u32, offsets[si]]
            }
            None => [0, 1, 0],
        });
    }
    let bs = params.block_size;
    let entry = if k_cache.dtype() == DType::F16 { "attention_f16" } else { "attention_f32" };
    let p = Params::new()
        .u(tokens)?
        .u(hq)?
        .u(hk)?
        .u(d)?
        .u(q_off)?
        .u(bs)?
        .u(max_kv)?
        .u(cache_offset(k_cache, "attention")?)?
        .u(cache_offset(v_cache, "attention")?)?
        .f(params.scale)
        .f(params.softcap.unwrap_or(0.0));
    let scratch = be.scratch(tokens * hq * max_kv * 4)?;
    let (out, storage) = be.output(q, q.shape().clone())?;
    let (info_buf, table_buf) = (be.u32_buffer(&info), be.u32_buffer(&tables));
    let bufs = [
        buffer_of(q, "attention")?,
        buffer_of(k_cache, "attention")?,
        buffer_of(v_cache, "attention")?,
        &info_buf,
        &table_buf,
        &scratch,
        &storage.buffer,
    ];
    be.run(shader!("attention"), entry, &p, &bufs, tokens * hq)?;
    Ok(out)
}
