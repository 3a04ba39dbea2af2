// matmul_float.cu: out[r*n + j] = sum_i x[r*k + i] * w[j*k + i] (x f32 [m, k], w [n, k] of float
// dtype code 0 f32 / 1 f16 / 2 bf16), f32 accumulation.
// Launch: block (16, 16), grid = (ceil(n/16), ceil(m/16)); threadIdx.x indexes j, threadIdx.y r.
// Per step of 16 along k the block stages a 16x16 tile of x rows and one of w rows in shared
// memory, both loaded along k by consecutive threadIdx.x (coalesced); the w tile is padded to 17
// columns so reading it down a column (ws[tx][i]) hits 16 different banks.

#define MMF_TILE 16u

extern "C" __global__ void matmul_float(const float* x, const void* w, float* out, unsigned m, unsigned n,
                                        unsigned k, unsigned w_code) {
    __shared__ float xs[MMF_TILE][MMF_TILE];
    __shared__ float ws[MMF_TILE][MMF_TILE + 1u];
    const unsigned tx = threadIdx.x, ty = threadIdx.y;
    const unsigned r = blockIdx.y * MMF_TILE + ty;  // output row handled by this thread
    const unsigned j = blockIdx.x * MMF_TILE + tx;  // output column handled by this thread
    const unsigned wrow = blockIdx.x * MMF_TILE + ty;  // w row this thread stages
    float acc = 0.0f;
    for (unsigned k0 = 0; k0 < k; k0 += MMF_TILE) {
        const unsigned i = k0 + tx;
        xs[ty][tx] = (r < m && i < k) ? x[(unsigned long long)r * k + i] : 0.0f;
        // Element (wrow, i) of w, addressed in bytes so n*k past 2^32 elements cannot wrap.
        const unsigned long long e = (unsigned long long)wrow * k + i;
        const void* wp = (const unsigned char*)w + e * (w_code == 0u ? 4ull : 2ull);
        ws[ty][tx] = (wrow < n && i < k) ? load_float(wp, 0u, w_code) : 0.0f;
        __syncthreads();
        FERRITE_UNROLL
        for (unsigned t = 0; t < MMF_TILE; ++t) acc += xs[ty][t] * ws[tx][t];
        __syncthreads();
    }
    if (r < m && j < n) out[(unsigned long long)r * n + j] = acc;
}
