// rope.cu: rotary position embeddings of x [tokens, heads, head_dim] (f32), both layouts.
// Launch: grid = (tokens, heads), block 64. Thread i rotates pairs i, i+64, ... of its head and
// copies the dims >= rot_dim unchanged (x == out works: each thread rewrites only what it read).
//
// Angles as the CPU backend and ggml build them: theta_p = pos * freq_scale, then multiplied by
// `step` (= base^(-2/rot_dim)) once per pair index, in f32, so theta_p is the p-th partial product
// of that chain (not pow): a thread walks the chain to its first pair and then 64 steps further
// for each next pair. The rotation is rounded as the CPU's: x0*c - x1*s = fma(x0, c, -(x1*s)),
// x0*s + x1*c = fma(x0, s, x1*c).

extern "C" __global__ void rope_f32(const float* x, float* out, const unsigned* positions, unsigned heads,
                                    unsigned head_dim, unsigned rot_dim, unsigned neox, float step,
                                    float freq_scale) {
    const unsigned t = blockIdx.x, h = blockIdx.y;
    const unsigned long long base = ((unsigned long long)t * heads + h) * head_dim;
    const float* xh = x + base;
    float* oh = out + base;
    const unsigned half = rot_dim / 2u;

    float theta = (float)positions[t] * freq_scale;
    unsigned p = threadIdx.x;
    for (unsigned k = 0; k < p && k < half; ++k) theta *= step;
    for (; p < half; p += blockDim.x) {
        const unsigned a = neox ? p : 2u * p;
        const unsigned b = neox ? p + half : 2u * p + 1u;
        const float c = cosf(theta), s = sinf(theta);
        const float x0 = xh[a], x1 = xh[b];
        oh[a] = fma_rn(x0, c, -fmul_rn(x1, s));
        oh[b] = fma_rn(x0, s, fmul_rn(x1, c));
        for (unsigned k = 0; k < blockDim.x; ++k) theta *= step;
    }
    for (unsigned d = rot_dim + threadIdx.x; d < head_dim; d += blockDim.x) oh[d] = xh[d];
}
