//! Per-sequence block tables over the [`BlockPool`]: admission, growth, prefix reuse, freeing.

use std::collections::HashMap;

use crate::block_pool::{BlockHash, BlockId, BlockPool};

/// Identifies a sequence (one choice of one request).
pub type SeqId = u64;

/// Full blocks of a prompt already in the prefix cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComputedBlocks {
    pub blocks: Vec<BlockId>,
    pub hashes: Vec<BlockHash>,
}

impl ComputedBlocks {
    pub fn num_tokens(&self, block_size: usize) -> usize {
        self.blocks.len() * block_size
    }
}

#[derive(Debug, Default)]
struct SeqBlocks {
    blocks: Vec<BlockId>,
    /// Hashes of the leading blocks already registered in the prefix cache.
    hashes: Vec<BlockHash>,
}

/// Owns which blocks each sequence holds. Every method leaves the pool consistent: a refused
/// admission or growth changes nothing.
#[derive(Debug)]
pub struct KvCacheManager {
    pool: BlockPool,
    block_size: usize,
    prefix_caching: bool,
    seqs: HashMap<SeqId, SeqBlocks>,
}

impl KvCacheManager {
    pub fn new(num_blocks: usize, block_size: usize, prefix_caching: bool) -> Self {
        KvCacheManager {
            pool: BlockPool::new(num_blocks),
            block_size: block_size.max(1),
            prefix_caching,
            seqs: HashMap::new(),
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    pub fn num_free_blocks(&self) -> usize {
        self.pool.num_free()
    }

    /// The longest run of leading full blocks of `tokens` found in the prefix cache. The last
    /// prompt token is never covered, so a prefill always computes at least one token (whose
    /// logits start the generation).
    pub fn get_computed_blocks(&self, tokens: &[u32]) -> ComputedBlocks {
        let mut out = ComputedBlocks::default();
        if !self.prefix_caching {
            return out;
        }
        let usable = tokens.len().saturating_sub(1) / self.block_size;
        let mut parent = None;
        for chunk in tokens.chunks_exact(self.block_size).take(usable) {
            match self.pool.get_cached_block(parent, chunk) {
                Some((id, h)) => {
                    out.blocks.push(id);
                    out.hashes.push(h);
                    parent = Some(h);
                }
                None => break,
            }
        }
        out
    }

    /// Admits `seq` with room for `num_tokens` positions, reusing `computed`. Returns false
    /// (changing nothing) when there are not enough free blocks.
    pub fn allocate(&mut self, seq: SeqId, num_tokens: usize, computed: ComputedBlocks) -> bool {
        if self.seqs.contains_key(&seq) {
            return false;
        }
        let need = num_tokens.div_ceil(self.block_size).saturating_sub(computed.blocks.len());
        // Cached blocks that are free count against the free list too.
        let revived = computed.blocks.iter().filter(|&&b| self.pool.ref_count(b) == 0).count();
        if need + revived > self.pool.num_free() {
            return false;
        }
        self.pool.touch(&computed.blocks);
        let Some(fresh) = self.pool.allocate(need) else {
            self.pool.free_blocks(computed.blocks.iter().rev().copied());
            return false;
        };
        let mut blocks = computed.blocks;
        blocks.extend(fresh);
        self.seqs.insert(seq, SeqBlocks { blocks, hashes: computed.hashes });
        true
    }

    /// Grows `seq` to hold `num_tokens` positions. Returns false (changing nothing) when short.
    pub fn grow(&mut self, seq: SeqId, num_tokens: usize) -> bool {
        let have = self.seqs.get(&seq).map_or(0, |s| s.blocks.len());
        let need = num_tokens.div_ceil(self.block_size).saturating_sub(have);
        if need == 0 {
            return self.seqs.contains_key(&seq);
        }
        let Some(s) = self.seqs.get_mut(&seq) else { return false };
        match self.pool.allocate(need) {
            Some(fresh) => {
                s.blocks.extend(fresh);
                true
            }
            None => false,
        }
    }

    /// Registers `seq`'s full blocks (given all of its tokens so far) in the prefix cache.
    pub fn cache_blocks(&mut self, seq: SeqId, tokens: &[u32]) {
        if !self.prefix_caching {
            return;
        }
        let Some(s) = self.seqs.get_mut(&seq) else { return };
        let full = (tokens.len() / self.block_size).min(s.blocks.len());
        for i in s.hashes.len()..full {
            let parent = i.checked_sub(1).map(|p| s.hashes[p]);
            let h = self.pool.cache_full_block(
                s.blocks[i],
                parent,
                &tokens[i * self.block_size..(i + 1) * self.block_size],
            );
            s.hashes.push(h);
        }
    }

    /// The block table of `seq`.
    pub fn block_table(&self, seq: SeqId) -> Option<&[BlockId]> {
        self.seqs.get(&seq).map(|s| s.blocks.as_slice())
    }

    /// Releases every block of `seq` at once (finished, cancelled, disconnected or preempted).
    pub fn free(&mut self, seq: SeqId) {
        if let Some(s) = self.seqs.remove(&seq) {
            self.pool.free_blocks(s.blocks.into_iter().rev());
        }
    }

    pub fn num_seqs(&self) -> usize {
        self.seqs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn shared_prefix_is_reused_and_last_token_always_computed() {
        let mut m = KvCacheManager::new(8, 4, true);
        let prompt: Vec<u32> = (0..10).collect();
        assert!(m.allocate(1, 10, m.get_computed_blocks(&prompt)));
        m.cache_blocks(1, &prompt);
        let hit = m.get_computed_blocks(&prompt);
        assert_eq!(hit.blocks.len(), 2);
        assert_eq!(&hit.blocks[..], &m.block_table(1).unwrap()[..2]);
        // A prompt of exactly two blocks reuses only one: its last token must be computed.
        assert_eq!(m.get_computed_blocks(&prompt[..8]).blocks.len(), 1);
        assert!(m.allocate(2, 12, hit));
        assert_eq!(m.block_table(1).unwrap()[..2], m.block_table(2).unwrap()[..2]);
        assert_eq!(m.pool().ref_count(m.block_table(1).unwrap()[0]), 2);
        m.free(1);
        m.free(2);
        assert_eq!(m.num_free_blocks(), 8);
        // Still cached after both are gone.
        assert_eq!(m.get_computed_blocks(&prompt).blocks.len(), 2);
    }

    #[test]
    fn refused_admission_changes_nothing() {
        let mut m = KvCacheManager::new(3, 4, true);
        assert!(m.allocate(1, 8, ComputedBlocks::default()));
        assert!(!m.allocate(2, 8, ComputedBlocks::default()));
        assert_eq!(m.num_free_blocks(), 1);
        assert!(m.grow(1, 12));
        assert!(!m.grow(1, 13));
        assert_eq!(m.block_table(1).unwrap().len(), 3);
    }

    /// 1,000 randomized requests with growth, prefix sharing and random cancellations: the
    /// pool must end fully free, and no block may ever be held by two sequences unless it is
    /// a shared cached prefix block.
    #[test]
    fn never_leaks_under_random_load() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut m = KvCacheManager::new(64, 16, true);
        let prefixes: Vec<Vec<u32>> = (0..4).map(|p| (0..48).map(|i| p * 1000 + i).collect()).collect();
        let mut live: Vec<(SeqId, Vec<u32>)> = Vec::new();
        for id in 0..1000u64 {
            let mut prompt = prefixes[rng.gen_range(0..4)][..rng.gen_range(1..48)].to_vec();
            prompt.extend((0..rng.gen_range(0..40)).map(|_| rng.gen_range(0..50_000u32)));
            let computed = m.get_computed_blocks(&prompt);
            if m.allocate(id, prompt.len(), computed) {
                m.cache_blocks(id, &prompt);
                live.push((id, prompt));
            }
            // Grow some sequences by a few generated tokens.
            for (sid, toks) in live.iter_mut() {
                if rng.gen_bool(0.5) {
                    let n = toks.len() + rng.gen_range(1..20);
                    if m.grow(*sid, n) {
                        toks.extend((toks.len()..n).map(|i| i as u32));
                        m.cache_blocks(*sid, toks);
                    }
                }
            }
            // Finish or cancel some.
            while !live.is_empty() && rng.gen_bool(0.4) {
                let (sid, _) = live.swap_remove(rng.gen_range(0..live.len()));
                m.free(sid);
            }
            let held: usize = live.iter().map(|(s, _)| m.block_table(*s).unwrap().len()).sum();
            let shared_refs: usize = (0..64u32).map(|b| m.pool().ref_count(b) as usize).sum();
            assert_eq!(held, shared_refs, "reference counts disagree with block tables");
        }
        for (sid, _) in live.drain(..) {
            m.free(sid);
        }
        assert_eq!(m.num_free_blocks(), 64);
        assert_eq!(m.num_seqs(), 0);
        assert!(m.pool().hits > 0, "the shared prefixes were never reused");
    }
}
