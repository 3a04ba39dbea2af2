// attention.cu: causal (optionally windowed, soft-capped) grouped-query attention of each query
// token over a paged KV cache, in three shapes of launch (the host picks one per launch; the
// rule is in crates/ferrite-cuda/src/launch.rs, `paged_plan`):
//   * attention_paged: one block per (query token, q head), all its visible keys;
//   * attention_paged_split + attention_paged_merge: flash-decoding, the visible keys of each
//     (row, head) split into ranges of `split_keys` keys, one block per range, then a merge;
//   * attention_paged_tiled: flash-attention-style prefill tiles, one block per (tile of
//     consecutive query rows of one sequence, KV head, slice of that KV head's q heads).
// Rows of the per-row kernels may be a subset (`rows`) when the rest go through tiles.
//
// Common inputs: q and out are [tokens, q_heads, head_dim] (f32); caches [slots, kv_heads,
// head_dim] of f32 (cache_code 0) or f16 (1). For query token t, tok_info[3t] = first visible
// key position, tok_info[3t+1] = last visible position (inclusive, = the query's own position),
// tok_info[3t+2] = offset of its sequence's block table in block_tables; first > last (the host
// uses (1, 0)) marks a row of no sequence, whose output is zeros. Key position p lives in cache
// slot block_tables[off + p / block_size] * block_size + p % block_size. kv head of q head h =
// h / (q_heads / kv_heads). score = scale * q.k; if softcap > 0: score = softcap * tanh(score /
// softcap); softmax over the visible keys with an online (running max m, denominator l)
// softmax: earlier partial sums are rescaled by exp(m_old - m_new) when the max grows.
//
// attention_paged: grid = (tokens, q_heads), block 128 (4 warps), dynamic shared memory
// (head_dim + 128) floats: [0, head_dim) the query row, [head_dim, head_dim + 128) one chunk of
// scores / probabilities. head_dim <= 512. Keys in chunks of 128 (`attend_range`):
//   1. each warp takes keys warp, warp+4, ... of the chunk; its lanes split head_dim (coalesced
//      reads of the key row) and warp_sum the dot product;
//   2. block_max / block_sum over the chunk's scores, which become exp(s - m_new) in place;
//   3. thread i accumulates output dims i, i+128, ... (<= 4 of them, in registers) over the
//      chunk's keys: the v rows are read along the dims, coalesced.
//   Barriers: slot_of and the query row are written before the chunk's first __syncthreads, the
//   scores before the second; block_max/block_sum open with a barrier and publish the
//   probabilities; a last barrier ends the chunk before slot_of / sc are rewritten.
//
// attention_paged_split: grid = (rows, q_heads, splits), block 128, the same dynamic shared
// memory as attention_paged; block (r, h, s) attends query token t = rows[r] over the key
// positions first + s*split_keys .. min(last, first + (s+1)*split_keys - 1) with the code of
// attention_paged. With splits == 1 it writes the normalised output row to out (a row of no
// sequence: zeros), i.e. attention_paged over a subset of rows, and `part` is unused. With
// splits > 1 it writes the partial result to the scratch buffer `part` (f32):
//   record (r, h, s) at part + ((r * q_heads + h) * splits + s) * (head_dim + 2):
//   [0] the running max m, [1] the sum of exp(score - m), [2 .. 2 + head_dim) sum exp(score - m) v
//   (unnormalised). A split past the row's key count writes nothing (the whole block returns).
//
// attention_paged_merge: grid = (rows, q_heads), block 128, no dynamic shared memory; splits
// <= 128. For (r, h), with n = ceil((last - first + 1) / split_keys) records (0 for a row of no
// sequence): M = max m_s, w_s = exp(m_s - M), out = sum w_s o_s / sum w_s l_s (zeros if the
// sum is 0). Thread s computes w_s into shared memory; block_max / block_sum's barriers publish
// them before the threads read them back, one output dim per thread.
//
// attention_paged_tiled: grid = (tiles, kv_heads * slices), block 128, dynamic shared memory
// (R * head_dim + 32 * (head_dim + 1) + 33 * R) floats where R = tile_tokens * heads_per_block
// (<= 64, and R * head_dim <= 4096: 32 output accumulators per thread), slices =
// ceil(group / heads_per_block), group = q_heads / kv_heads; head_dim <= 256 (the host keeps the
// total within 48 KiB). tiles[2i] = first query token of tile i, tiles[2i+1] = its tokens (<=
// tile_tokens), all of one sequence (they share its block table). Block (i, y) takes KV head
// kvh = y / slices and q heads kvh * group + (y % slices) * heads_per_block + 0..heads_per_block
// (those < group); tile row r is token r / heads_per_block, head r % heads_per_block; rows of a
// missing token or head are computed on zeros and never written. Dynamic shared memory:
//   qs [R][head_dim] the tile's queries | kv [32][head_dim + 1] the chunk's keys, then its values
//   | ps [R][32] the chunk's probabilities | cs [R] each row's rescale factor for the chunk.
// The key positions from the smallest first to the largest last of the tile's tokens are taken
// in chunks of 32, each loaded into shared memory once for all R rows:
//   A. thread i < 32 computes the cache slot of key i;                       __syncthreads (1)
//   B. the chunk's keys are loaded into kv (rows padded to head_dim + 1);    __syncthreads (2)
//   C. warp w scores rows w, w+4, ... (<= 16 of them) against key `lane`, masks keys outside
//      each row's [first, last] (causal, window) with -inf, and updates the row's running max and
//      sum (held in registers, identical in the warp's lanes) with warp_max / warp_sum; it
//      writes the probabilities to ps and the rescale factor to cs;             __syncthreads (3)
//   D. the chunk's values are loaded into kv (overwriting the keys);          __syncthreads (4)
//   E. thread i rescales and accumulates output elements i, i+128, ... of the tile's [R][head_dim]
//      output over the chunk (reading ps, cs, kv); the next chunk's barrier (1) ends E before B
//      and C overwrite kv, ps and cs, and (4) ends D's reads of slot_of before A rewrites it.
// At the end each row's 1/l goes to a separate shared array (no reader of cs can be running),
// and after a last barrier every thread writes its output elements of the valid rows.

#define ATT_THREADS 128u
#define ATT_CHUNK 128u
#define ATT_MAX_DIMS 4u  // head_dim <= 512 = 4 * 128
#define ATT_MAX_SPLITS 128u  // attention_paged_merge: one thread per split

#define ATT_TILE_KEYS 32u       // keys per chunk of the tiled kernel (one per lane when scoring)
#define ATT_TILE_MAX_ROWS 64u   // R, rows (token x head) per tile
#define ATT_TILE_ROWS_PER_WARP 16u  // ATT_TILE_MAX_ROWS / 4 warps
#define ATT_TILE_ACC 32u        // output elements per thread: R * head_dim <= 4096 = 32 * 128

__device__ FERRITE_INLINE float cache_value(const void* cache, unsigned long long e, unsigned code) {
    if (code == 0u) return ((const float*)cache)[e];
    return f16_to_f32(((const unsigned short*)cache)[e]);
}

// Accumulates the keys first..last (first <= last, or an empty range) into acc / m / l with the
// whole block (blockDim.x == ATT_CHUNK). sq holds the query row (written by the caller before
// the call: the first chunk's barrier publishes it); sc has ATT_CHUNK floats, slot_of
// ATT_CHUNK entries, red 32 floats. Every thread of the block must call it.
__device__ FERRITE_INLINE void attend_range(const void* k_cache, const void* v_cache, const unsigned* table,
                                            unsigned first, unsigned last, unsigned long long slot_stride,
                                            unsigned long long head_off, unsigned head_dim, unsigned block_size,
                                            unsigned cache_code, float scale, float softcap, const float* sq,
                                            float* sc, unsigned* slot_of, float* red, float (&acc)[ATT_MAX_DIMS],
                                            float& m, float& l) {
    const unsigned tid = threadIdx.x, lane = tid & 31u, warp = tid >> 5, nwarps = blockDim.x >> 5;
    // `c <= last` with first <= last; the `c >= first` test stops a wrap past 2^32.
    for (unsigned c = first; c <= last && c >= first; c += ATT_CHUNK) {
        const unsigned count = min_u32(ATT_CHUNK, last - c + 1u);
        if (tid < count) {
            const unsigned p = c + tid;
            slot_of[tid] = table[p / block_size] * block_size + p % block_size;
        }
        __syncthreads();  // slot_of and (first chunk) sq are ready

        // 1. scores; the loop bound is the same for the whole warp, so every lane reaches warp_sum.
        for (unsigned i = warp; i < count; i += nwarps) {
            const unsigned long long kb = (unsigned long long)slot_of[i] * slot_stride + head_off;
            float s = 0.0f;
            for (unsigned d = lane; d < head_dim; d += 32u) s += sq[d] * cache_value(k_cache, kb + d, cache_code);
            s = warp_sum(s) * scale;
            if (softcap > 0.0f) s = softcap * tanhf(s / softcap);
            if (lane == 0u) sc[i] = s;
        }
        __syncthreads();

        // 2. online softmax update (blockDim.x == ATT_CHUNK: thread i owns score i).
        const float corr = online_softmax_chunk(sc, count, m, l, red);

        // 3. out += p * v over the chunk.
        FERRITE_UNROLL
        for (unsigned a = 0; a < ATT_MAX_DIMS; ++a) {
            const unsigned d = tid + a * ATT_THREADS;
            if (d < head_dim) {
                float o = acc[a] * corr;
                for (unsigned i = 0; i < count; ++i) {
                    o += sc[i] * cache_value(v_cache, (unsigned long long)slot_of[i] * slot_stride + head_off + d,
                                             cache_code);
                }
                acc[a] = o;
            }
        }
        __syncthreads();  // everyone is done with sc / slot_of before the next chunk
    }
}

extern "C" __global__ void attention_paged(const float* q, const void* k_cache, const void* v_cache, float* out,
                                           const unsigned* tok_info, const unsigned* block_tables, unsigned q_heads,
                                           unsigned kv_heads, unsigned head_dim, unsigned block_size,
                                           unsigned cache_code, float scale, float softcap) {
    FERRITE_DYN_SMEM(float, smem);
    __shared__ float red[32];
    __shared__ unsigned slot_of[ATT_CHUNK];  // cache slot of each key of the current chunk
    float* sq = smem;              // the query row
    float* sc = smem + head_dim;   // the chunk's scores, then probabilities

    const unsigned t = blockIdx.x, h = blockIdx.y;
    const unsigned tid = threadIdx.x;
    const unsigned kvh = h / (q_heads / kv_heads);
    const unsigned first = tok_info[3u * t], last = tok_info[3u * t + 1u];
    const unsigned* table = block_tables + tok_info[3u * t + 2u];
    const unsigned long long row = (unsigned long long)t * q_heads + h;

    for (unsigned d = tid; d < head_dim; d += blockDim.x) sq[d] = q[row * head_dim + d];

    float acc[ATT_MAX_DIMS];
    FERRITE_UNROLL
    for (unsigned a = 0; a < ATT_MAX_DIMS; ++a) acc[a] = 0.0f;
    float m = neg_inf(), l = 0.0f;
    attend_range(k_cache, v_cache, table, first, last, (unsigned long long)kv_heads * head_dim,
                 (unsigned long long)kvh * head_dim, head_dim, block_size, cache_code, scale, softcap, sq, sc, slot_of,
                 red, acc, m, l);

    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    FERRITE_UNROLL
    for (unsigned a = 0; a < ATT_MAX_DIMS; ++a) {
        const unsigned d = tid + a * ATT_THREADS;
        if (d < head_dim) out[row * head_dim + d] = acc[a] * inv;
    }
}

extern "C" __global__ void attention_paged_split(const float* q, const void* k_cache, const void* v_cache, float* out,
                                                 float* part, const unsigned* rows, const unsigned* tok_info,
                                                 const unsigned* block_tables, unsigned q_heads, unsigned kv_heads,
                                                 unsigned head_dim, unsigned block_size, unsigned cache_code,
                                                 float scale, float softcap, unsigned split_keys) {
    FERRITE_DYN_SMEM(float, smem);
    __shared__ float red[32];
    __shared__ unsigned slot_of[ATT_CHUNK];
    float* sq = smem;
    float* sc = smem + head_dim;

    const unsigned r = blockIdx.x, h = blockIdx.y, s = blockIdx.z, splits = gridDim.z;
    const unsigned tid = threadIdx.x;
    const unsigned t = rows[r];
    const unsigned kvh = h / (q_heads / kv_heads);
    const unsigned first = tok_info[3u * t], last = tok_info[3u * t + 1u];
    const unsigned* table = block_tables + tok_info[3u * t + 2u];
    const unsigned long long row = (unsigned long long)t * q_heads + h;

    unsigned lo = first, hi = last;
    if (splits > 1u) {
        // The whole block leaves together (before any barrier) when its split has no key.
        const unsigned long long start = (unsigned long long)s * split_keys;
        if (first > last || start > (unsigned long long)(last - first)) return;
        lo = first + (unsigned)start;
        hi = (unsigned long long)(last - lo) < split_keys ? last : lo + (split_keys - 1u);
    }

    for (unsigned d = tid; d < head_dim; d += blockDim.x) sq[d] = q[row * head_dim + d];

    float acc[ATT_MAX_DIMS];
    FERRITE_UNROLL
    for (unsigned a = 0; a < ATT_MAX_DIMS; ++a) acc[a] = 0.0f;
    float m = neg_inf(), l = 0.0f;
    attend_range(k_cache, v_cache, table, lo, hi, (unsigned long long)kv_heads * head_dim,
                 (unsigned long long)kvh * head_dim, head_dim, block_size, cache_code, scale, softcap, sq, sc, slot_of,
                 red, acc, m, l);

    if (splits == 1u) {
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        FERRITE_UNROLL
        for (unsigned a = 0; a < ATT_MAX_DIMS; ++a) {
            const unsigned d = tid + a * ATT_THREADS;
            if (d < head_dim) out[row * head_dim + d] = acc[a] * inv;
        }
        return;
    }
    float* rec = part + (((unsigned long long)r * q_heads + h) * splits + s) * (head_dim + 2u);
    if (tid == 0u) {
        rec[0] = m;
        rec[1] = l;
    }
    FERRITE_UNROLL
    for (unsigned a = 0; a < ATT_MAX_DIMS; ++a) {
        const unsigned d = tid + a * ATT_THREADS;
        if (d < head_dim) rec[2u + d] = acc[a];
    }
}

extern "C" __global__ void attention_paged_merge(const float* part, float* out, const unsigned* rows,
                                                 const unsigned* tok_info, unsigned q_heads, unsigned head_dim,
                                                 unsigned splits, unsigned split_keys) {
    __shared__ float red[32];
    __shared__ float w[ATT_MAX_SPLITS];
    const unsigned r = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
    const unsigned t = rows[r];
    const unsigned first = tok_info[3u * t], last = tok_info[3u * t + 1u];
    const unsigned n =
        first > last ? 0u : (unsigned)(((unsigned long long)(last - first) + split_keys) / split_keys);
    const float* recs = part + ((unsigned long long)r * q_heads + h) * splits * (head_dim + 2u);

    const float ms = tid < n ? recs[(unsigned long long)tid * (head_dim + 2u)] : neg_inf();
    const float mx = block_max(ms, red);
    const float ws = (tid < n && ms != neg_inf()) ? expf(ms - mx) : 0.0f;
    if (tid < ATT_MAX_SPLITS) w[tid] = ws;
    const float ls = tid < n ? recs[(unsigned long long)tid * (head_dim + 2u) + 1u] : 0.0f;
    const float total = block_sum(ws * ls, red);  // its barriers also publish w
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;

    const unsigned long long orow = ((unsigned long long)t * q_heads + h) * head_dim;
    for (unsigned d = tid; d < head_dim; d += blockDim.x) {
        float o = 0.0f;
        for (unsigned i = 0; i < n; ++i) o += w[i] * recs[(unsigned long long)i * (head_dim + 2u) + 2u + d];
        out[orow + d] = o * inv;
    }
}

extern "C" __global__ void attention_paged_tiled(const float* q, const void* k_cache, const void* v_cache,
                                                 float* out, const unsigned* tiles, const unsigned* tok_info,
                                                 const unsigned* block_tables, unsigned q_heads, unsigned kv_heads,
                                                 unsigned head_dim, unsigned block_size, unsigned cache_code,
                                                 float scale, float softcap, unsigned tile_tokens,
                                                 unsigned heads_per_block) {
    FERRITE_DYN_SMEM(float, smem);
    __shared__ unsigned slot_of[ATT_TILE_KEYS];          // cache slot of each key of the chunk
    __shared__ unsigned row_first[ATT_TILE_MAX_ROWS];    // per tile token: first visible key
    __shared__ unsigned row_last[ATT_TILE_MAX_ROWS];     // per tile token: last visible key
    __shared__ float inv_l[ATT_TILE_MAX_ROWS];           // per row: 1 / softmax denominator

    const unsigned tid = threadIdx.x, lane = tid & 31u, warp = tid >> 5;
    const unsigned d = head_dim, kstride = head_dim + 1u;
    const unsigned group = q_heads / kv_heads;
    const unsigned slices = (group + heads_per_block - 1u) / heads_per_block;
    const unsigned kvh = blockIdx.y / slices, slice = blockIdx.y % slices;
    const unsigned g0 = slice * heads_per_block;           // first head of the block within the group
    const unsigned nh = min_u32(heads_per_block, group - g0);  // heads of this block
    const unsigned h0 = kvh * group + g0;                  // its first q head
    const unsigned t0 = tiles[2u * blockIdx.x], nt = tiles[2u * blockIdx.x + 1u];
    const unsigned nrows = tile_tokens * heads_per_block;  // R
    const unsigned long long slot_stride = (unsigned long long)kv_heads * head_dim;
    const unsigned long long head_off = (unsigned long long)kvh * head_dim;
    const unsigned* table = block_tables + tok_info[3u * t0 + 2u];

    float* qs = smem;                            // [R][d]
    float* kv = qs + nrows * d;                  // [ATT_TILE_KEYS][d + 1]
    float* ps = kv + ATT_TILE_KEYS * kstride;    // [R][ATT_TILE_KEYS]
    float* cs = ps + nrows * ATT_TILE_KEYS;      // [R]

    // The tile's queries (zeros for missing tokens / heads) and each token's visible range.
    for (unsigned e = tid; e < nrows * d; e += blockDim.x) {
        const unsigned r = e / d, dd = e - r * d, tok = r / heads_per_block, hh = r - tok * heads_per_block;
        qs[e] = (tok < nt && hh < nh)
                    ? q[(((unsigned long long)(t0 + tok)) * q_heads + h0 + hh) * d + dd]
                    : 0.0f;
    }
    if (tid < tile_tokens) {
        row_first[tid] = tid < nt ? tok_info[3u * (t0 + tid)] : 1u;
        row_last[tid] = tid < nt ? tok_info[3u * (t0 + tid) + 1u] : 0u;
    }
    // The keys of the tile: from the smallest first to the largest last (every thread alike).
    unsigned lo = 0xffffffffu, hi = 0u;
    bool any = false;
    for (unsigned i = 0; i < nt; ++i) {
        const unsigned f = tok_info[3u * (t0 + i)], la = tok_info[3u * (t0 + i) + 1u];
        if (f <= la) {
            lo = any ? min_u32(lo, f) : f;
            hi = any ? (la > hi ? la : hi) : la;
            any = true;
        }
    }
    if (!any) {
        lo = 1u;
        hi = 0u;
    }

    // Rows this warp scores: warp, warp + 4, ... < R. Running max / sum per row (warp-uniform).
    const unsigned my_rows = nrows > warp ? (nrows - warp + 3u) / 4u : 0u;
    float m[ATT_TILE_ROWS_PER_WARP], l[ATT_TILE_ROWS_PER_WARP];
    FERRITE_UNROLL
    for (unsigned j = 0; j < ATT_TILE_ROWS_PER_WARP; ++j) {
        m[j] = neg_inf();
        l[j] = 0.0f;
    }
    float acc[ATT_TILE_ACC];
    FERRITE_UNROLL
    for (unsigned a = 0; a < ATT_TILE_ACC; ++a) acc[a] = 0.0f;

    for (unsigned c = lo; c <= hi && c >= lo; c += ATT_TILE_KEYS) {
        const unsigned count = min_u32(ATT_TILE_KEYS, hi - c + 1u);
        // A. slots of the chunk's keys.
        if (tid < count) {
            const unsigned p = c + tid;
            slot_of[tid] = table[p / block_size] * block_size + p % block_size;
        }
        __syncthreads();  // (1) slot_of (and qs, row_first/last before the first chunk) ready
        // B. keys into kv.
        for (unsigned e = tid; e < count * d; e += blockDim.x) {
            const unsigned i = e / d, dd = e - i * d;
            kv[i * kstride + dd] = cache_value(k_cache, (unsigned long long)slot_of[i] * slot_stride + head_off + dd,
                                               cache_code);
        }
        __syncthreads();  // (2) keys ready
        // C. scores of key `lane` against this warp's rows, and the online softmax per row.
        {
            float s[ATT_TILE_ROWS_PER_WARP];
            FERRITE_UNROLL
            for (unsigned j = 0; j < ATT_TILE_ROWS_PER_WARP; ++j) s[j] = 0.0f;
            const float* krow = kv + (lane < count ? lane : 0u) * kstride;
            for (unsigned dd = 0; dd < d; ++dd) {
                const float kval = krow[dd];
                FERRITE_UNROLL
                for (unsigned j = 0; j < ATT_TILE_ROWS_PER_WARP; ++j) {
                    if (j < my_rows) s[j] += qs[(warp + 4u * j) * d + dd] * kval;
                }
            }
            const unsigned p = c + lane;
            FERRITE_UNROLL
            for (unsigned j = 0; j < ATT_TILE_ROWS_PER_WARP; ++j) {
                if (j < my_rows) {  // warp-uniform: every lane reaches the warp ops
                    const unsigned r = warp + 4u * j, tok = r / heads_per_block;
                    const bool visible = lane < count && tok < nt && r - tok * heads_per_block < nh &&
                                         p >= row_first[tok] && p <= row_last[tok];
                    float sv = s[j] * scale;
                    if (softcap > 0.0f) sv = softcap * tanhf(sv / softcap);
                    sv = visible ? sv : neg_inf();
                    const float m_new = fmaxf(m[j], warp_max(sv));
                    const float pr = sv != neg_inf() ? expf(sv - m_new) : 0.0f;
                    const float corr = m[j] == neg_inf() ? 0.0f : expf(m[j] - m_new);
                    l[j] = l[j] * corr + warp_sum(pr);
                    m[j] = m_new;
                    ps[r * ATT_TILE_KEYS + lane] = pr;
                    if (lane == 0u) cs[r] = corr;
                }
            }
        }
        __syncthreads();  // (3) ps / cs ready, and every warp is done reading the keys
        // D. values into kv.
        for (unsigned e = tid; e < count * d; e += blockDim.x) {
            const unsigned i = e / d, dd = e - i * d;
            kv[i * kstride + dd] = cache_value(v_cache, (unsigned long long)slot_of[i] * slot_stride + head_off + dd,
                                               cache_code);
        }
        __syncthreads();  // (4) values ready
        // E. out = out * corr + p . v for this thread's elements.
        FERRITE_UNROLL
        for (unsigned a = 0; a < ATT_TILE_ACC; ++a) {
            const unsigned e = tid + a * ATT_THREADS;
            if (e < nrows * d) {
                const unsigned r = e / d, dd = e - r * d;
                const float* prow = ps + r * ATT_TILE_KEYS;
                float o = acc[a] * cs[r];
                for (unsigned i = 0; i < count; ++i) o += prow[i] * kv[i * kstride + dd];
                acc[a] = o;
            }
        }
    }

    FERRITE_UNROLL
    for (unsigned j = 0; j < ATT_TILE_ROWS_PER_WARP; ++j) {
        if (j < my_rows && lane == 0u) inv_l[warp + 4u * j] = l[j] > 0.0f ? 1.0f / l[j] : 0.0f;
    }
    __syncthreads();  // inv_l ready
    FERRITE_UNROLL
    for (unsigned a = 0; a < ATT_TILE_ACC; ++a) {
        const unsigned e = tid + a * ATT_THREADS;
        if (e < nrows * d) {
            const unsigned r = e / d, dd = e - r * d, tok = r / heads_per_block, hh = r - tok * heads_per_block;
            if (tok < nt && hh < nh) {
                out[(((unsigned long long)(t0 + tok)) * q_heads + h0 + hh) * d + dd] = acc[a] * inv_l[r];
            }
        }
    }
}
