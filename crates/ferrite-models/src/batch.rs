//! The input of one forward step: a flat list of tokens from one or more sequences.

use ferrite_tensor::AttentionSeq;

/// One sequence's share of a batch: tokens `start .. start + len` of the batch are its newest
/// `len` tokens, at positions `past .. past + len`; its KV cache lives in `block_table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceSlice {
    pub start: usize,
    pub len: usize,
    pub past: usize,
    pub block_table: Vec<u32>,
}

/// A forward step over several sequences (prefill chunks and decode tokens alike).
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub tokens: Vec<u32>,
    pub seqs: Vec<SequenceSlice>,
    /// Batch rows whose logits are wanted (usually each sequence's last token).
    pub logits_rows: Vec<usize>,
}

impl Batch {
    /// A batch of one sequence appending `tokens` after `past` cached positions, with logits
    /// for its last token.
    pub fn single(tokens: &[u32], past: usize, block_table: Vec<u32>) -> Batch {
        Batch {
            tokens: tokens.to_vec(),
            seqs: vec![SequenceSlice { start: 0, len: tokens.len(), past, block_table }],
            logits_rows: tokens.len().checked_sub(1).into_iter().collect(),
        }
    }

    /// Per-token positions and KV-cache slots, and the attention description, checked.
    pub(crate) fn layout(
        &self,
        block_size: usize,
        num_blocks: usize,
    ) -> crate::Result<(Vec<u32>, Vec<u32>, Vec<AttentionSeq>)> {
        let n = self.tokens.len();
        let mut positions = vec![u32::MAX; n];
        let mut slots = vec![0u32; n];
        let mut attn = Vec::with_capacity(self.seqs.len());
        for s in &self.seqs {
            let end = s.start.checked_add(s.len).filter(|&e| e <= n);
            let kv_len = s.past + s.len;
            if end.is_none() || kv_len.div_ceil(block_size) > s.block_table.len() {
                return Err(crate::Error::Batch(format!("sequence {s:?} does not fit {n} tokens / its block table")));
            }
            for i in 0..s.len {
                let p = s.past + i;
                let block = s.block_table[p / block_size] as usize;
                if block >= num_blocks {
                    return Err(crate::Error::Batch(format!("block {block} outside the cache of {num_blocks}")));
                }
                if positions[s.start + i] != u32::MAX {
                    return Err(crate::Error::Batch(format!("token {} in two sequences", s.start + i)));
                }
                positions[s.start + i] = p as u32;
                slots[s.start + i] = (block * block_size + p % block_size) as u32;
            }
            attn.push(AttentionSeq { q_start: s.start, q_len: s.len, kv_len, block_table: s.block_table.clone() });
        }
        if positions.contains(&u32::MAX) {
            return Err(crate::Error::Batch("a token belongs to no sequence".into()));
        }
        if let Some(&r) = self.logits_rows.iter().find(|&&r| r >= n) {
            return Err(crate::Error::Batch(format!("logits row {r} of {n} tokens")));
        }
        Ok((positions, slots, attn))
    }
}
