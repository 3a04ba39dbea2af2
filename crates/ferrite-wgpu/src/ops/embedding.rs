//! Embedding rows and float casts (`shaders/gather.wgsl`, `shaders/cast.wgsl`); rows of
//! block-quantized tables are decoded on the device (`shaders/gather_quant.wgsl` over
//! `shaders/quant_blocks.wgsl`).

use std::sync::Arc;

use ferrite_tensor::{DType, Error, Result, Tensor};

use super::quant;
use crate::dispatch::{groups, Bind, Params};
use crate::{buffer_of, shader, WgpuBackend, WgpuStorage};

/// Rows `ids` of `table [vocab, d]` as `[ids.len(), d]` f32 (f32, f16, bf16 and quantized tables).
pub fn embedding(be: &WgpuBackend, table: &Tensor, ids: &[u32]) -> Result<Tensor> {
    let [vocab, d] = match table.dims() {
        &[v, d] => [v, d],
        other => return Err(Error::shape("embedding", format!("table must be [vocab, d], got {other:?}"))),
    };
    if let Some(&bad) = ids.iter().find(|&&i| i as usize >= vocab) {
        return Err(Error::OutOfRange { op: "embedding", index: bad as usize, len: vocab });
    }
    if table.dtype().is_quantized() {
        return quantized(be, table, ids, d);
    }
    // (entry, table offset in elements, 16-bit kind: 0 f16, 1 bf16)
    let (entry, off, kind) = match table.dtype() {
        DType::F32 => ("gather_f32", table.offset_bytes() / 4, 0),
        DType::F16 => ("gather_half", table.offset_bytes() / 2, 0),
        DType::BF16 => ("gather_half", table.offset_bytes() / 2, 1),
        other => return Err(Error::UnsupportedDType { dtype: other, op: "embedding (wgpu)" }),
    };
    let n = ids.len() * d;
    let (out, storage) = be.output(table, [ids.len(), d])?;
    let params = Params::new().u(n)?.u(d.max(1))?.u(off)?.u(kind)?;
    let idb = be.u32_buffer(ids);
    be.run(
        shader!("gather"),
        entry,
        &params,
        &[buffer_of(table, "embedding")?, &idb, &storage.buffer],
        groups(n, 256),
    )?;
    Ok(out)
}

/// Rows `ids` of quantized `table [vocab, d]`, one thread per 8-weight unit.
fn quantized(be: &WgpuBackend, table: &Tensor, ids: &[u32], d: usize) -> Result<Tensor> {
    let rows = quant::rows(table, d, "embedding (wgpu)")?;
    let total = ids.len() * rows.units;
    let (out, storage) = be.output(table, [ids.len(), d])?;
    let idb = be.u32_buffer(ids);
    let buf = buffer_of(table, "embedding")?;
    let vocab = table.dims()[0];
    for win in quant::windows(be, buf, &rows, vocab)? {
        // Only windows holding an id do any work.
        if !ids.iter().any(|&i| (win.row0..win.row0 + win.rows).contains(&(i as usize))) {
            continue;
        }
        let params = Params::new()
            .u(total)?
            .u(rows.units.max(1))?
            .u(win.offset)?
            .u(rows.kind)?
            .u(rows.row_bytes)?
            .u(d)?
            .u(win.row0)?
            .u(win.rows)?;
        let binds = [Bind { buffer: buf, range: win.range }, Bind::whole(&idb), Bind::whole(&storage.buffer)];
        be.run_bound(shader!("gather_quant", "quant_blocks"), "gather_quant", &params, &binds, groups(total, 256))?;
    }
    Ok(out)
}

/// f32 <-> f16 (a same-dtype cast copies).
pub fn cast(be: &WgpuBackend, x: &Tensor, dtype: DType) -> Result<Tensor> {
    let n = x.numel();
    let src = buffer_of(x, "cast")?;
    let (entry, words, off) = match (x.dtype(), dtype) {
        (DType::F32, DType::F16) => ("f32_to_f16", n.div_ceil(2), x.offset_bytes() / 4),
        (DType::F16, DType::F32) => ("f16_to_f32", n, x.offset_bytes() / 2),
        (a, b) if a == b => {
            let bytes = be.read_back(src, x.offset_bytes(), x.len_bytes())?;
            let s = Arc::new(be.upload_storage(&bytes, "cast copy"));
            return Tensor::from_storage(s, x.device().clone(), dtype, x.shape().clone(), 0);
        }
        (a, _) => return Err(Error::UnsupportedDType { dtype: a, op: "cast (wgpu: f32 <-> f16)" }),
    };
    let bytes = dtype.bytes_for(n).unwrap_or(n * 4);
    let storage = Arc::new(WgpuStorage::new(&be.gpu.device, bytes, "cast"));
    let params = Params::new().u(words)?.u(off)?.u(n)?.u(0)?;
    be.run(shader!("cast"), entry, &params, &[src, &storage.buffer], groups(words, 256))?;
    Tensor::from_storage(storage, x.device().clone(), dtype, x.shape().clone(), 0)
}
