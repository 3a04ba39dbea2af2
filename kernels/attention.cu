// attention.cu: causal (optionally windowed, soft-capped) grouped-query attention of each query
// token over a paged KV cache.
//
// Launch: grid = (tokens, q_heads), block 128 (4 warps), dynamic shared memory
// (head_dim + 128) floats: [0, head_dim) the query row, [head_dim, head_dim + 128) one chunk of
// scores / probabilities. head_dim <= 512.
//
// For query token t (tok_info[3t..3t+3] = first visible key position, last visible position =
// its own, offset of its sequence's block table in block_tables) the visible keys are taken in
// chunks of 128 with an online softmax (running max m and denominator l; earlier partial sums
// are rescaled by exp(m_old - m_new) when the max grows), so any context length works:
//   1. each warp takes keys warp, warp+4, ... of the chunk; its lanes split head_dim (coalesced
//      reads of the key row) and warp_sum the dot product;
//   2. block_max / block_sum over the chunk's scores, which become exp(s - m_new) in place;
//   3. thread i accumulates output dims i, i+128, ... (<= 4 of them, in registers) over the
//      chunk's keys: the v rows are read along the dims, coalesced.
// Key position p is in cache slot block_tables[off + p / block_size] * block_size + p % block_size;
// caches are [slots, kv_heads, head_dim] of f32 (cache_code 0) or f16 (1).

#define ATT_THREADS 128u
#define ATT_CHUNK 128u
#define ATT_MAX_DIMS 4u  // head_dim <= 512 = 4 * 128

__device__ FERRITE_INLINE float cache_value(const void* cache, unsigned long long e, unsigned code) {
    if (code == 0u) return ((const float*)cache)[e];
    return f16_to_f32(((const unsigned short*)cache)[e]);
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
    const unsigned tid = threadIdx.x, lane = tid & 31u, warp = tid >> 5, nwarps = blockDim.x >> 5;
    const unsigned kvh = h / (q_heads / kv_heads);
    const unsigned first = tok_info[3u * t], last = tok_info[3u * t + 1u];
    const unsigned* table = block_tables + tok_info[3u * t + 2u];
    const unsigned long long row = (unsigned long long)t * q_heads + h;
    const unsigned long long slot_stride = (unsigned long long)kv_heads * head_dim;
    const unsigned long long head_off = (unsigned long long)kvh * head_dim;

    for (unsigned d = tid; d < head_dim; d += blockDim.x) sq[d] = q[row * head_dim + d];

    float acc[ATT_MAX_DIMS];
    FERRITE_UNROLL
    for (unsigned a = 0; a < ATT_MAX_DIMS; ++a) acc[a] = 0.0f;
    float m = neg_inf(), l = 0.0f;

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
        const float s = tid < count ? sc[tid] : neg_inf();
        const float m_new = fmaxf(m, block_max(s, red));
        // exp(-inf) would be 0 anyway; guard the -inf - -inf = NaN case of an all -inf chunk.
        const float pr = (tid < count && s != neg_inf()) ? expf(s - m_new) : 0.0f;
        if (tid < count) sc[tid] = pr;
        const float corr = m == neg_inf() ? 0.0f : expf(m - m_new);
        l = l * corr + block_sum(pr, red);  // block_sum's barriers also publish sc
        m = m_new;

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

    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    FERRITE_UNROLL
    for (unsigned a = 0; a < ATT_MAX_DIMS; ++a) {
        const unsigned d = tid + a * ATT_THREADS;
        if (d < head_dim) out[row * head_dim + d] = acc[a] * inv;
    }
}
