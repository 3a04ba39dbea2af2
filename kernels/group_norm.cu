// group_norm.cu: group normalisation of x [n, .., c] (f32): the c channels split into `groups`
// groups of cg = c / groups; each (sample, group) is normalised over all its `positions`
// (the product of the middle dims) x cg values, then scaled by w [c] and shifted by b [c].
//
// Three launches, so that a large image spreads over the whole GPU:
// 1. group_norm_partial: grid = (n*groups, chunks), block 256. Block (sg, j) takes positions
//    j*chunk .. +chunk of sample-group sg and writes its chunk mean and sum of squared
//    deviations around it (two passes over the chunk, f32) to part[2*(sg*chunks + j) ..].
// 2. group_norm_merge: grid.x = n*groups, block 256. Chan's parallel combination of the chunks:
//    mean = sum(n_j mean_j) / N, M2 = sum(M2_j + n_j (mean_j - mean)^2); writes
//    (mean, 1/sqrt(M2/N + eps)) to stats[2*sg ..].
// 3. group_norm_apply: block 256, grid-stride over the elements:
//    out = (x - mean) * inv * w[ch] + b[ch], products rounded one at a time as the CPU does.

extern "C" __global__ void group_norm_partial(const float* x, float* part, unsigned positions, unsigned c,
                                              unsigned groups, unsigned chunk) {
    __shared__ float red[32];
    const unsigned sg = blockIdx.x, s = sg / groups, g = sg % groups, cg = c / groups;
    const unsigned p0 = blockIdx.y * chunk;
    const unsigned np = min_u32(chunk, positions - p0);
    const unsigned count = np * cg;
    const float* base = x + ((unsigned long long)s * positions + p0) * c + (unsigned long long)g * cg;
    float sum = 0.0f;
    for (unsigned e = threadIdx.x; e < count; e += blockDim.x) sum += base[(unsigned long long)(e / cg) * c + e % cg];
    const float mean = block_sum(sum, red) / (float)count;
    float sq = 0.0f;
    for (unsigned e = threadIdx.x; e < count; e += blockDim.x) {
        const float d = base[(unsigned long long)(e / cg) * c + e % cg] - mean;
        sq += d * d;
    }
    sq = block_sum(sq, red);
    if (threadIdx.x == 0u) {
        const unsigned long long at = 2ull * ((unsigned long long)sg * gridDim.y + blockIdx.y);
        part[at] = mean;
        part[at + 1u] = sq;
    }
}

extern "C" __global__ void group_norm_merge(const float* part, float* stats, unsigned chunks, unsigned positions,
                                            unsigned cg, unsigned chunk, float eps) {
    __shared__ float red[32];
    const unsigned sg = blockIdx.x;
    const float* p = part + 2ull * sg * chunks;
    const float total = (float)positions * (float)cg;
    float s = 0.0f;
    for (unsigned j = threadIdx.x; j < chunks; j += blockDim.x) {
        const float nj = (float)(min_u32(chunk, positions - j * chunk) * cg);
        s += nj * p[2u * j];
    }
    const float mean = block_sum(s, red) / total;
    float m2 = 0.0f;
    for (unsigned j = threadIdx.x; j < chunks; j += blockDim.x) {
        const float nj = (float)(min_u32(chunk, positions - j * chunk) * cg);
        const float d = p[2u * j] - mean;
        m2 += p[2u * j + 1u] + nj * d * d;
    }
    m2 = block_sum(m2, red);
    if (threadIdx.x == 0u) {
        stats[2ull * sg] = mean;
        // 1/sqrtf rather than rsqrtf (approximate), as the CPU's 1 / sqrt(var + eps).
        stats[2ull * sg + 1ull] = 1.0f / sqrtf(m2 / total + eps);
    }
}

extern "C" __global__ void group_norm_apply(const float* x, const float* stats, const float* w, const float* b,
                                            float* out, unsigned n, unsigned positions, unsigned c,
                                            unsigned groups) {
    const unsigned long long sample = (unsigned long long)positions * c;
    const unsigned cg = c / groups;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < (unsigned long long)n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        const unsigned ch = (unsigned)(i % c);
        const unsigned long long sg = (i / sample) * groups + ch / cg;
        const float mean = stats[2ull * sg], inv = stats[2ull * sg + 1ull];
        out[i] = fmul_rn(fmul_rn(x[i] - mean, inv), w[ch]) + b[ch];
    }
}
