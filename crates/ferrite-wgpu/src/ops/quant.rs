//! GGUF block formats on the GPU (`shaders/quant_blocks.wgsl`): the format codes and the row
//! geometry that the quantized matmul and gather kernels take. Rows are decoded in units of
//! 8 weights (4 per 32-weight block, 32 per 256-weight K-quant block), so a row of `width`
//! weights has `width / 8` units whatever its format.

use ferrite_tensor::{DType, Error, Result, Tensor};

use crate::WgpuBackend;

/// Weights one thread decodes at a time.
const UNIT: usize = 8;

/// How a kernel finds the rows of a quantized tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QuantRows {
    /// The format code of `quant_blocks.wgsl`.
    pub kind: usize,
    /// Byte offset of the first row in the buffer.
    pub offset: usize,
    /// Bytes per row.
    pub row_bytes: usize,
    /// 8-weight units per row.
    pub units: usize,
}

/// Rows `row0 .. row0 + rows` of a quantized tensor, bound as `range` of its buffer (`None`:
/// the whole buffer), the first of them at byte `offset` of the binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub row0: usize,
    pub rows: usize,
    pub range: Option<(u64, u64)>,
    pub offset: usize,
}

/// The windows through which the kernels see the `rows` rows of `q` in `buffer`: the whole
/// buffer when it fits the adapter's storage binding limit, else runs of rows bound as ranges
/// (Qwen2.5's 145 MB and Gemma 3's 178 MB Q8_0 matrices under lavapipe's 128 MiB).
pub(crate) fn windows(be: &WgpuBackend, buffer: &wgpu::Buffer, q: &QuantRows, rows: usize) -> Result<Vec<Window>> {
    let limits = be.gpu.device.limits();
    if buffer.size() <= limits.max_storage_buffer_binding_size {
        return Ok(vec![Window { row0: 0, rows, range: None, offset: q.offset }]);
    }
    let align = u64::from(limits.min_storage_buffer_offset_alignment).max(4);
    let w = crate::dispatch::row_windows(
        q.offset as u64,
        rows as u64,
        q.row_bytes as u64,
        buffer.size(),
        limits.max_storage_buffer_binding_size,
        align,
    )?;
    Ok(w.into_iter()
        .map(|r| Window {
            row0: r.row0 as usize,
            rows: r.rows as usize,
            range: Some((r.at, r.size)),
            offset: r.offset as usize,
        })
        .collect())
}

/// The format code `quant_blocks.wgsl` gives `dtype`, if it decodes it.
pub(crate) fn kind(dtype: DType) -> Option<usize> {
    dtype.block_code()
}

/// The row geometry of quantized `t [rows, width]`, checked so that every byte address the
/// kernel forms fits in 32 bits and f16 scales sit at even addresses.
pub(crate) fn rows(t: &Tensor, width: usize, op: &'static str) -> Result<QuantRows> {
    let dtype = t.dtype();
    let kind = kind(dtype).ok_or(Error::UnsupportedDType { dtype, op })?;
    let row_bytes =
        dtype.bytes_for(width).ok_or(Error::NotBlockAligned { dtype, numel: width, block: dtype.block_size() })?;
    let offset = t.offset_bytes();
    if !offset.is_multiple_of(2) {
        return Err(Error::Backend(format!("wgpu: {op}: {dtype:?} data at odd byte offset {offset}")));
    }
    let end = offset.checked_add(t.len_bytes());
    if end.is_none_or(|e| e > u32::MAX as usize) {
        return Err(Error::Backend(format!("wgpu: {op}: {dtype:?} tensor ends past 4 GiB of its buffer")));
    }
    Ok(QuantRows { kind, offset, row_bytes, units: width / UNIT })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_holds_whole_units() {
        for dtype in DType::ALL {
            match kind(dtype) {
                Some(_) => assert_eq!(dtype.block_size() % UNIT, 0, "{dtype:?}"),
                None => assert!(dtype.is_float(), "{dtype:?}"),
            }
        }
        let codes: Vec<_> = DType::ALL.iter().filter_map(|&d| kind(d)).collect();
        assert_eq!(codes, (0..7).collect::<Vec<_>>(), "codes follow quant_blocks.wgsl's constants");
    }
}
