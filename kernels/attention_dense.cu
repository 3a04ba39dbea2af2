// attention_dense.cu: attention of packed sequences without a cache (encoders, the diffusion
// transformer, the VAE's mid block): q [tokens, q_heads, head_dim], k/v [tokens, kv_heads,
// head_dim] (f32), an optional causal mask and an optional additive score bias
// [q_heads, side, side] (T5's relative position bias).
//
// Launch: grid = (tokens, q_heads), block 128 (4 warps), dynamic shared memory
// (head_dim + 128) floats: [0, head_dim) the query row, [head_dim, head_dim + 128) one chunk of
// scores / probabilities. head_dim <= 512.
//
// seq_info[2t] is the first token of token t's sequence and seq_info[2t + 1] its length; the
// query at sequence index i = t - first sees keys 0 .. len (0 .. i + 1 when causal) of its
// sequence. score_j = scale * q.k_j (+ bias[h, i, j]); a -inf score (from the bias) masks its
// key, and a query whose every score is -inf gets zeros (as the CPU's softmax). Keys are taken
// in chunks of 128 with an online softmax, as attention.cu:
//   1. each warp takes keys warp, warp+4, ... of the chunk; its lanes split head_dim (coalesced
//      reads of the key row) and warp_sum the dot product;
//   2. block_max / block_sum over the chunk's scores, which become exp(s - m_new) in place;
//   3. thread i accumulates output dims i, i+128, ... (<= 4 of them, in registers) over the
//      chunk's keys, reading the v rows along the dims (coalesced).

#define AD_THREADS 128u
#define AD_CHUNK 128u
#define AD_MAX_DIMS 4u  // head_dim <= 512 = 4 * 128

extern "C" __global__ void attention_dense(const float* q, const float* k, const float* v, const float* bias,
                                           float* out, const unsigned* seq_info, unsigned q_heads,
                                           unsigned kv_heads, unsigned head_dim, unsigned side, unsigned causal,
                                           unsigned has_bias, float scale) {
    FERRITE_DYN_SMEM(float, smem);
    __shared__ float red[32];
    float* sq = smem;             // the query row
    float* sc = smem + head_dim;  // the chunk's scores, then probabilities

    const unsigned t = blockIdx.x, h = blockIdx.y;
    const unsigned tid = threadIdx.x, lane = tid & 31u, warp = tid >> 5, nwarps = blockDim.x >> 5;
    const unsigned kvh = h / (q_heads / kv_heads);
    const unsigned first = seq_info[2u * t], len = seq_info[2u * t + 1u];
    const unsigned i = t - first;
    const unsigned keys = causal ? i + 1u : len;
    const unsigned long long row = (unsigned long long)t * q_heads + h;
    const unsigned long long key_stride = (unsigned long long)kv_heads * head_dim;
    const float* kb0 = k + (unsigned long long)first * key_stride + (unsigned long long)kvh * head_dim;
    const float* vb0 = v + (unsigned long long)first * key_stride + (unsigned long long)kvh * head_dim;
    const float* brow = bias + ((unsigned long long)h * side + i) * side;

    for (unsigned d = tid; d < head_dim; d += blockDim.x) sq[d] = q[row * head_dim + d];
    __syncthreads();

    float acc[AD_MAX_DIMS];
    FERRITE_UNROLL
    for (unsigned a = 0; a < AD_MAX_DIMS; ++a) acc[a] = 0.0f;
    float m = neg_inf(), l = 0.0f;

    for (unsigned c = 0; c < keys; c += AD_CHUNK) {
        const unsigned count = min_u32(AD_CHUNK, keys - c);

        // 1. scores; the loop bound is the same for the whole warp, so every lane reaches warp_sum.
        for (unsigned j = warp; j < count; j += nwarps) {
            const float* kr = kb0 + (unsigned long long)(c + j) * key_stride;
            float s = 0.0f;
            for (unsigned d = lane; d < head_dim; d += 32u) s += sq[d] * kr[d];
            s = warp_sum(s) * scale;
            if (has_bias) s += brow[c + j];
            if (lane == 0u) sc[j] = s;
        }
        __syncthreads();

        // 2. online softmax update (blockDim.x == AD_CHUNK: thread i owns score i).
        const float corr = online_softmax_chunk(sc, count, m, l, red);

        // 3. out += p * v over the chunk.
        FERRITE_UNROLL
        for (unsigned a = 0; a < AD_MAX_DIMS; ++a) {
            const unsigned d = tid + a * AD_THREADS;
            if (d < head_dim) {
                float o = acc[a] * corr;
                for (unsigned j = 0; j < count; ++j) o += sc[j] * vb0[(unsigned long long)(c + j) * key_stride + d];
                acc[a] = o;
            }
        }
        __syncthreads();  // everyone is done with sc before the next chunk
    }

    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    FERRITE_UNROLL
    for (unsigned a = 0; a < AD_MAX_DIMS; ++a) {
        const unsigned d = tid + a * AD_THREADS;
        if (d < head_dim) out[row * head_dim + d] = acc[a] * inv;
    }
}

#undef AD_THREADS
#undef AD_CHUNK
#undef AD_MAX_DIMS
