//! Embedding rows of f32/f16/bf16 or GGUF-quantized tables (`kernels/gather.cu`), decoded on
//! the device.

use ferrite_tensor::{DType, Error, Result, Tensor};

use super::matmul::quant_kind;
use crate::{kernels, launch, ptr_of, Args, CudaBackend};

/// Rows `ids` of `table [vocab, d]` as `[ids.len(), d]` f32.
pub fn embedding(be: &CudaBackend, table: &Tensor, ids: &[u32]) -> Result<Tensor> {
    let [vocab, d] = match table.dims() {
        &[v, d] => [v, d],
        other => return Err(Error::shape("embedding", format!("table must be [vocab, d], got {other:?}"))),
    };
    if let Some(&bad) = ids.iter().find(|&&i| i as usize >= vocab) {
        return Err(Error::OutOfRange { op: "embedding", index: bad as usize, len: vocab });
    }
    let dtype = table.dtype();
    let kind = match dtype {
        DType::F32 => 100,
        DType::F16 => 101,
        DType::BF16 => 102,
        q => quant_kind(q).ok_or(Error::UnsupportedDType { dtype: q, op: "embedding (cuda)" })?,
    };
    let row_bytes = dtype.bytes_for(d).ok_or(Error::NotBlockAligned { dtype, numel: d, block: dtype.block_size() })?;
    let (out, po) = be.output(table, [ids.len(), d])?;
    if ids.is_empty() || d == 0 {
        return Ok(out);
    }
    let pt = ptr_of(table, "embedding")?;
    let idb = be.temp_u32(ids)?;
    let args = Args::new().ptr(pt).ptr(po).ptr(idb.ptr).u(d)?.u(row_bytes)?.u(kind)?;
    be.launch(&kernels::EMBEDDING, launch::per_row(ids.len(), 256)?, args)?;
    Ok(out)
}
