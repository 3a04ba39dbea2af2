//! The pool of fixed-size KV-cache blocks, with reference counts, an LRU free list and the
//! prefix cache (full blocks found by the hash of their tokens and of the block before them).
//! Vocabulary after vLLM v1 (`BlockPool`, `get_cached_block`, `cache_full_block`, ...).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

/// Index of a block in the KV cache.
pub type BlockId = u32;

/// Identity of a full block's content: its tokens and everything before them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockHash(pub u64);

impl BlockHash {
    /// The hash of a full block of `tokens` following the block with hash `parent`.
    pub fn of(parent: Option<BlockHash>, tokens: &[u32]) -> BlockHash {
        // SipHash with fixed keys: stable within and across runs.
        let mut h = DefaultHasher::new();
        parent.map(|p| p.0).hash(&mut h);
        tokens.hash(&mut h);
        BlockHash(h.finish())
    }
}

#[derive(Debug, Clone, Default)]
struct Block {
    ref_count: u32,
    /// Set once the block is full and registered in the prefix cache.
    hash: Option<BlockHash>,
    /// The tokens of a cached block (checked on a hit, so a hash collision is never a wrong hit).
    tokens: Vec<u32>,
    parent: Option<BlockHash>,
    /// Position in the free list (an LRU order key) while `ref_count == 0`.
    free_key: Option<u64>,
}

/// All blocks of the cache. Free blocks sit in an LRU list; a free block that holds a cached
/// prefix stays findable until it is handed out again (evicted).
#[derive(Debug)]
pub struct BlockPool {
    blocks: Vec<Block>,
    /// LRU order of free blocks: smallest key is evicted first.
    free: BTreeMap<u64, BlockId>,
    next_key: u64,
    cached: HashMap<BlockHash, BlockId>,
    /// Prefix-cache statistics: full blocks found in the cache / evicted.
    pub hits: u64,
    pub evictions: u64,
}

impl BlockPool {
    pub fn new(num_blocks: usize) -> Self {
        let mut pool = BlockPool {
            blocks: vec![Block::default(); num_blocks],
            free: BTreeMap::new(),
            next_key: 0,
            cached: HashMap::new(),
            hits: 0,
            evictions: 0,
        };
        for id in 0..num_blocks as BlockId {
            pool.push_free(id);
        }
        pool
    }

    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Blocks that can be handed out now (free, cached or not).
    pub fn num_free(&self) -> usize {
        self.free.len()
    }

    pub fn ref_count(&self, id: BlockId) -> u32 {
        self.blocks[id as usize].ref_count
    }

    fn push_free(&mut self, id: BlockId) {
        let key = self.next_key;
        self.next_key += 1;
        self.free.insert(key, id);
        self.blocks[id as usize].free_key = Some(key);
    }

    fn take_from_free(&mut self, id: BlockId) {
        if let Some(key) = self.blocks[id as usize].free_key.take() {
            self.free.remove(&key);
        }
    }

    /// Hands out `n` blocks (evicting the least recently freed cached blocks), or `None` when
    /// fewer than `n` are free; nothing is taken then.
    pub fn allocate(&mut self, n: usize) -> Option<Vec<BlockId>> {
        if n > self.free.len() {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let (_, id) = self.free.pop_first()?;
            let b = &mut self.blocks[id as usize];
            b.free_key = None;
            if let Some(h) = b.hash.take() {
                self.cached.remove(&h);
                b.tokens.clear();
                b.parent = None;
                self.evictions += 1;
            }
            b.ref_count = 1;
            out.push(id);
        }
        Some(out)
    }

    /// The cached block with this content, if any.
    pub fn get_cached_block(&self, parent: Option<BlockHash>, tokens: &[u32]) -> Option<(BlockId, BlockHash)> {
        let h = BlockHash::of(parent, tokens);
        let id = *self.cached.get(&h)?;
        let b = &self.blocks[id as usize];
        (b.tokens == tokens && b.parent == parent).then_some((id, h))
    }

    /// Takes a reference on blocks found in the prefix cache (removing free ones from the free list).
    pub fn touch(&mut self, ids: &[BlockId]) {
        for &id in ids {
            if self.blocks[id as usize].ref_count == 0 {
                self.take_from_free(id);
            }
            self.blocks[id as usize].ref_count += 1;
            self.hits += 1;
        }
    }

    /// Registers a full block in the prefix cache. If another block already holds the same
    /// content, the cache keeps that one and this block stays unregistered.
    pub fn cache_full_block(&mut self, id: BlockId, parent: Option<BlockHash>, tokens: &[u32]) -> BlockHash {
        let h = BlockHash::of(parent, tokens);
        if self.blocks[id as usize].hash.is_some() || self.cached.contains_key(&h) {
            return h;
        }
        self.cached.insert(h, id);
        let b = &mut self.blocks[id as usize];
        b.hash = Some(h);
        b.tokens = tokens.to_vec();
        b.parent = parent;
        h
    }

    /// Drops one reference on each block, in order. Blocks reaching zero become free; free them
    /// tail-first (pass the sequence's blocks reversed) so that a prefix's last blocks are
    /// evicted before its first ones.
    pub fn free_blocks(&mut self, ids: impl IntoIterator<Item = BlockId>) {
        for id in ids {
            let b = &mut self.blocks[id as usize];
            debug_assert!(b.ref_count > 0, "double free of block {id}");
            b.ref_count = b.ref_count.saturating_sub(1);
            if b.ref_count == 0 {
                self.push_free(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_refuses_when_short_and_evicts_lru() {
        let mut p = BlockPool::new(3);
        let a = p.allocate(2).unwrap();
        assert!(p.allocate(2).is_none());
        assert_eq!(p.num_free(), 1);
        let h = p.cache_full_block(a[0], None, &[1, 2]);
        p.free_blocks(a.iter().rev().copied());
        assert_eq!(p.num_free(), 3);
        assert_eq!(p.get_cached_block(None, &[1, 2]), Some((a[0], h)));
        // The never-cached block and the tail go first; the cached block is evicted last.
        let b = p.allocate(2).unwrap();
        assert!(!b.contains(&a[0]));
        assert!(p.get_cached_block(None, &[1, 2]).is_some());
        p.allocate(1).unwrap();
        assert!(p.get_cached_block(None, &[1, 2]).is_none());
        assert_eq!(p.evictions, 1);
    }

    #[test]
    fn touch_revives_a_free_cached_block() {
        let mut p = BlockPool::new(2);
        let a = p.allocate(1).unwrap();
        p.cache_full_block(a[0], None, &[7]);
        p.free_blocks(a.clone());
        let (id, _) = p.get_cached_block(None, &[7]).unwrap();
        p.touch(&[id]);
        assert_eq!(p.num_free(), 1);
        assert_eq!(p.ref_count(id), 1);
        // Content and parent must both match.
        assert!(p.get_cached_block(Some(BlockHash(1)), &[7]).is_none());
        assert!(p.get_cached_block(None, &[8]).is_none());
    }
}
