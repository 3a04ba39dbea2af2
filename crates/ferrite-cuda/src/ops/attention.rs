//! The KV cache and paged attention (`kernels/gather.cu`'s `write_kv`, `kernels/attention.cu`).

use ferrite_tensor::{
    attention_rows, check_attention, check_write_kv, concat_block_tables, AttentionParams, AttentionSeq, DType, Error,
    Result, Tensor,
};

use super::f32_ptr;
use crate::launch::RowPath;
use crate::{kernels, launch, ptr_of, Args, CudaBackend};

/// The kernels' cache code: 0 f32, 1 f16.
fn cache_code(cache: &Tensor, op: &'static str) -> Result<usize> {
    match cache.dtype() {
        DType::F32 => Ok(0),
        DType::F16 => Ok(1),
        other => Err(Error::UnsupportedDType { dtype: other, op }),
    }
}

/// Writes rows of `x [tokens, kv_heads, head_dim]` into `cache` at `slots`.
pub fn write_kv(be: &CudaBackend, cache: &Tensor, x: &Tensor, slots: &[u32]) -> Result<()> {
    let px = f32_ptr(x, "write_kv")?;
    let [_, h, d] = check_write_kv(cache, x, slots)?;
    let row = h * d;
    let code = cache_code(cache, "write_kv")?;
    if slots.is_empty() || row == 0 {
        return Ok(());
    }
    let sb = be.temp_u32(slots)?;
    let args = Args::new().ptr(px).ptr(ptr_of(cache, "write_kv")?).ptr(sb.ptr).u(row)?.u(code)?;
    be.launch(&kernels::WRITE_KV, launch::per_row(slots.len(), 256)?, args)
}

/// Per query token: (first visible key position, its own position, block-table offset), and
/// the concatenated block tables, after [`attention_rows`]' checks. A row of no sequence gets
/// the empty range (1, 0): the kernel writes zeros there, as the CPU backend does.
pub(crate) fn token_info(
    seqs: &[AttentionSeq],
    params: &AttentionParams,
    tokens: usize,
    slots: usize,
) -> Result<(Vec<u32>, Vec<u32>)> {
    let rows = attention_rows(seqs, tokens, slots, params)?;
    let (offsets, tables) = concat_block_tables(seqs)?;
    let mut info = Vec::with_capacity(tokens * 3);
    for row in rows {
        info.extend_from_slice(&match row {
            Some((si, pos)) => [params.first_visible(pos) as u32, pos as u32, offsets[si]],
            None => [1, 0, 0],
        });
    }
    Ok((info, tables))
}

/// Causal attention of `q [tokens, q_heads, head_dim]` over the paged caches: prefill runs in
/// tiles (`attention_paged_tiled`), the other rows one block per (row, head), their keys split
/// over several blocks and merged when there are few of them (`attention_paged_split` and
/// `attention_paged_merge`); [`launch::paged_plan`] has the rule.
pub fn attention(
    be: &CudaBackend,
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    seqs: &[AttentionSeq],
    params: &AttentionParams,
) -> Result<Tensor> {
    let pq = f32_ptr(q, "attention")?;
    let dims = check_attention(q, k_cache, v_cache, params)?;
    let (tokens, hq, hk, d, slots) = (dims.tokens, dims.q_heads, dims.kv_heads, dims.head_dim, dims.slots);
    let code = cache_code(k_cache, "attention")?;
    let (info, tables) = token_info(seqs, params, tokens, slots)?;
    let (out, po) = be.output(q, q.shape().clone())?;
    if tokens == 0 || hq == 0 {
        return Ok(out);
    }
    let key_lens: Vec<usize> =
        info.chunks_exact(3).map(|r| if r[0] <= r[1] { (r[1] - r[0]) as usize + 1 } else { 0 }).collect();
    let runs: Vec<(usize, usize)> = seqs.iter().map(|s| (s.q_start, s.q_len)).collect();
    let plan = launch::paged_plan(&runs, &key_lens, hq, hk, d);
    let (ib, tb) = (be.temp_u32(&info)?, be.temp_u32(&tables)?);
    let (pk, pv) = (ptr_of(k_cache, "attention")?, ptr_of(v_cache, "attention")?);
    // (q, k, v, out), the kernel's own pointers, the shared arguments, its own integers.
    let args = |own: &[u64], tail: &[usize]| -> Result<Args> {
        let mut a = Args::new().ptr(pq).ptr(pk).ptr(pv).ptr(po);
        for &p in own {
            a = a.ptr(p);
        }
        a = a
            .ptr(ib.ptr)
            .ptr(tb.ptr)
            .u(hq)?
            .u(hk)?
            .u(d)?
            .u(params.block_size.max(1))?
            .u(code)?
            .f(params.scale)
            .f(params.softcap.unwrap_or(0.0));
        for &v in tail {
            a = a.u(v)?;
        }
        Ok(a)
    };
    if let Some(shape) = plan.tile {
        let tiles = be.temp_u32(&plan.tiles)?;
        let dims = launch::attention_tiled(plan.tiles.len() / 2, hk, &shape)?;
        be.launch(&kernels::ATTENTION_PAGED_TILED, dims, args(&[tiles.ptr], &[shape.tokens, shape.heads])?)?;
    }
    let n = plan.rows.len();
    match plan.row_path {
        RowPath::None => {}
        RowPath::All => be.launch(&kernels::ATTENTION_PAGED, launch::attention(tokens, hq, d)?, args(&[], &[])?)?,
        RowPath::Rows => {
            let rows = be.temp_u32(&plan.rows)?;
            // `part` is unused with one split.
            let dims = launch::attention_split(n, hq, 1, d)?;
            be.launch(&kernels::ATTENTION_PAGED_SPLIT, dims, args(&[po, rows.ptr], &[1])?)?;
        }
        RowPath::Split { splits, keys } => {
            let rows = be.temp_u32(&plan.rows)?;
            let part = be.temp_bytes(n * hq * splits * (d + 2) * 4)?;
            let dims = launch::attention_split(n, hq, splits, d)?;
            be.launch(&kernels::ATTENTION_PAGED_SPLIT, dims, args(&[part.ptr, rows.ptr], &[keys])?)?;
            let margs = Args::new().ptr(part.ptr).ptr(po).ptr(rows.ptr).ptr(ib.ptr).u(hq)?.u(d)?.u(splits)?.u(keys)?;
            be.launch(&kernels::ATTENTION_PAGED_MERGE, launch::attention_merge(n, hq)?, margs)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(window: Option<usize>) -> AttentionParams {
        AttentionParams { scale: 1.0, block_size: 4, sliding_window: window, softcap: None }
    }

    #[test]
    fn token_info_places_each_query_and_its_table() {
        let seqs = [
            AttentionSeq { q_start: 0, q_len: 2, kv_len: 5, block_table: vec![3, 1] },
            AttentionSeq { q_start: 2, q_len: 1, kv_len: 1, block_table: vec![0] },
        ];
        let (info, tables) = token_info(&seqs, &params(None), 3, 16).expect("valid");
        assert_eq!(tables, vec![3, 1, 0]);
        assert_eq!(info, vec![0, 3, 0, 0, 4, 0, 0, 0, 2]);
        let (info, _) = token_info(&seqs, &params(Some(2)), 3, 16).expect("valid");
        assert_eq!(&info[..6], &[2, 3, 0, 3, 4, 0]);
    }

    #[test]
    fn token_info_refuses_bad_batches() {
        let one = |q_start, q_len, kv_len, table: Vec<u32>| AttentionSeq { q_start, q_len, kv_len, block_table: table };
        // A block past the cache, a table too short, a row claimed twice.
        assert!(token_info(&[one(0, 1, 1, vec![4])], &params(None), 1, 16).is_err());
        assert!(token_info(&[one(0, 1, 5, vec![0])], &params(None), 1, 16).is_err());
        // A row of no sequence gets the empty key range.
        let (info, _) = token_info(&[one(0, 1, 1, vec![0])], &params(None), 2, 16).expect("valid");
        assert_eq!(&info[3..], &[1, 0, 0]);
        assert!(token_info(&[one(0, 1, 1, vec![0]), one(0, 1, 1, vec![1])], &params(None), 1, 16).is_err());
    }
}
