// rotary.cu: rotary embedding of x [tokens, heads, head_dim] (f32) from caller-built angle
// tables cos/sin [tokens, head_dim/2] (FLUX's 3-axis rope): pair i of every head of token t is
// rotated by (cos[t, i], sin[t, i]); pairs (2i, 2i+1) when neox == 0, else (i, i + head_dim/2).
// Launch: block 256, grid.x = min(ceil(pairs/256), 65535), a grid-stride loop over the
// pairs = tokens*heads*head_dim/2 (64-bit index), one thread per pair.
// out[a] = x0*c - x1*s, out[b] = x1*c + x0*s with every product rounded on its own (fmul_rn),
// as the CPU backend computes them: the results are bit for bit the same.

extern "C" __global__ void rotary_f32(const float* x, const float* cos_t, const float* sin_t, float* out,
                                      unsigned pairs, unsigned heads, unsigned head_dim, unsigned neox) {
    const unsigned half = head_dim / 2u;
    for (unsigned long long p = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
         p < (unsigned long long)pairs; p += (unsigned long long)gridDim.x * blockDim.x) {
        const unsigned long long row = p / half, i = p % half, token = row / heads;
        const unsigned long long base = row * head_dim;
        const unsigned long long a = base + (neox ? i : 2ull * i);
        const unsigned long long b = base + (neox ? i + half : 2ull * i + 1ull);
        const float c = cos_t[token * half + i], s = sin_t[token * half + i];
        const float x0 = x[a], x1 = x[b];
        out[a] = fmul_rn(x0, c) - fmul_rn(x1, s);
        out[b] = fmul_rn(x1, c) + fmul_rn(x0, s);
    }
}
