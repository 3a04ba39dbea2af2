// argmax.cu: index of the largest value of each row (lowest index on ties; NaN never wins).
// Launch: grid.x = rows, block 256: threads stride over the row keeping their first best, then a
// warp and a block reduction of (value, index) pairs.

// Whether candidate (v, i) beats the current (bv, bi).
__device__ FERRITE_INLINE bool argmax_better(float v, unsigned i, float bv, unsigned bi) {
    return v > bv || (v == bv && i < bi);
}

extern "C" __global__ void argmax_f32(const float* x, unsigned* out, unsigned d) {
    __shared__ float sv[32];
    __shared__ unsigned si[32];
    const float* xr = x + (unsigned long long)blockIdx.x * d;
    float bv = neg_inf();
    unsigned bi = 0xffffffffu;
    for (unsigned j = threadIdx.x; j < d; j += blockDim.x) {
        float v = xr[j];
        if (v > bv || (bi == 0xffffffffu && !(v != v))) {
            bv = v;
            bi = j;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float v = __shfl_xor_sync(0xffffffffu, bv, o);
        unsigned i = __shfl_xor_sync(0xffffffffu, bi, o);
        if (argmax_better(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    if (lane == 0u) {
        sv[warp] = bv;
        si[warp] = bi;
    }
    __syncthreads();
    if (warp == 0u) {
        bool have = lane < (blockDim.x >> 5);
        bv = have ? sv[lane] : neg_inf();
        bi = have ? si[lane] : 0xffffffffu;
        for (int o = 16; o > 0; o >>= 1) {
            float v = __shfl_xor_sync(0xffffffffu, bv, o);
            unsigned i = __shfl_xor_sync(0xffffffffu, bi, o);
            if (argmax_better(v, i, bv, bi)) {
                bv = v;
                bi = i;
            }
        }
        // A row of only NaN (or d == 0) has no candidate: answer 0.
        if (lane == 0u) out[blockIdx.x] = bi == 0xffffffffu ? 0u : bi;
    }
}
