// modulate.cu: the adaptive-LayerNorm pieces of a diffusion transformer block, x [n, t, d] (f32)
// with one row per sample ([n, d]):
// - modulate_f32:  out = x * (1 + scale[s]) + shift[s]
// - gated_add_f32: out = x + gate[s] * y   (y [n, t, d])
// Launch: block 256, grid.x = min(ceil(total/256), 65535), a grid-stride loop over the elements
// (64-bit index). Products are rounded on their own (fmul_rn: NVRTC would fuse them into FMAs),
// so the results are the CPU backend's bit for bit.

extern "C" __global__ void modulate_f32(const float* x, const float* scale, const float* shift, float* out,
                                        unsigned total, unsigned t, unsigned d) {
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
         i < (unsigned long long)total; i += (unsigned long long)gridDim.x * blockDim.x) {
        const unsigned long long e = i % d, row = (i / d) / t * d + e;
        out[i] = fmul_rn(x[i], 1.0f + scale[row]) + shift[row];
    }
}

extern "C" __global__ void gated_add_f32(const float* x, const float* gate, const float* y, float* out,
                                         unsigned total, unsigned t, unsigned d) {
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
         i < (unsigned long long)total; i += (unsigned long long)gridDim.x * blockDim.x) {
        const unsigned long long e = i % d, row = (i / d) / t * d + e;
        out[i] = x[i] + fmul_rn(gate[row], y[i]);
    }
}
