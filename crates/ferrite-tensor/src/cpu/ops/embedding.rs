//! Embedding gather: rows of a table of any dtype (quantized tables are decoded row by row).

use rayon::prelude::*;

use crate::cpu::{f32_tensor, TensorRead};
use crate::{Error, Result, Tensor};

pub fn embedding(table: &Tensor, ids: &[u32]) -> Result<Tensor> {
    let [vocab, d] = match table.dims() {
        &[v, d] => [v, d],
        other => return Err(Error::shape("embedding", format!("table must be 2-D, got {other:?}"))),
    };
    if let Some(&bad) = ids.iter().find(|&&i| i as usize >= vocab) {
        return Err(Error::OutOfRange { op: "embedding", index: bad as usize, len: vocab });
    }
    let row_bytes = table.len_bytes() / vocab.max(1);
    let mut out = crate::cpu::buffers::zeroed(ids.len() * d);
    {
        let tr = TensorRead::new(table, "embedding")?;
        let bytes = tr.bytes();
        out.par_chunks_mut(d.max(1)).zip(ids.par_iter()).try_for_each(|(o, &id)| {
            let start = id as usize * row_bytes;
            crate::quant::dequantize(table.dtype(), &bytes[start..start + row_bytes], o)
        })?;
    }
    // A table that is also a packed output matrix is read here only: its file pages go back.
    let base = table.offset_bytes();
    let rows: Vec<usize> = ids.iter().map(|&id| base + id as usize * row_bytes).collect();
    crate::cpu::cpu_storage(table, "embedding")?.release_after_read((base, table.len_bytes()), &rows);
    f32_tensor(out, [ids.len(), d], table.device())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

    #[test]
    fn gathers_rows() {
        let t = rand_vec(5 * 8, 41);
        let table = tensor(&t, &[5, 8]);
        let got = table.embedding(&[4, 0, 4]).unwrap();
        assert_eq!(got.dims(), &[3, 8]);
        let want: Vec<f64> =
            [4usize, 0, 4].iter().flat_map(|&r| t[r * 8..r * 8 + 8].iter().map(|&v| v as f64)).collect();
        assert_close(&got.to_vec_f32().unwrap(), &want, 0.0, 0.0);
        assert!(table.embedding(&[5]).is_err());
    }
}
