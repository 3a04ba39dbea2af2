// norm.cu: row-wise rms_norm, layer_norm and softmax over rows of width d.
// Launch: grid.x = rows, block 256 (any multiple of 32 up to 1024 works): one block per row,
// threads stride over the row, block_sum / block_max combine.

extern "C" __global__ void rms_norm_f32(const float* x, const float* w, float* out, unsigned d, float eps) {
    __shared__ float red[32];
    const float* xr = x + (unsigned long long)blockIdx.x * d;
    float* o = out + (unsigned long long)blockIdx.x * d;
    float s = 0.0f;
    for (unsigned j = threadIdx.x; j < d; j += blockDim.x) s += xr[j] * xr[j];
    s = block_sum(s, red);
    // 1/sqrtf rather than rsqrtf (approximate): the CPU backend computes 1.0 / sqrt(mean + eps).
    float inv = 1.0f / sqrtf(s / (float)d + eps);
    for (unsigned j = threadIdx.x; j < d; j += blockDim.x) o[j] = xr[j] * inv * w[j];
}

// (x - mean) / sqrt(var + eps) * w + b, the variance computed around the mean (two passes).
extern "C" __global__ void layer_norm_f32(const float* x, const float* w, const float* b, float* out, unsigned d,
                                          float eps) {
    __shared__ float red[32];
    const float* xr = x + (unsigned long long)blockIdx.x * d;
    float* o = out + (unsigned long long)blockIdx.x * d;
    float s = 0.0f;
    for (unsigned j = threadIdx.x; j < d; j += blockDim.x) s += xr[j];
    float mean = block_sum(s, red) / (float)d;
    float q = 0.0f;
    for (unsigned j = threadIdx.x; j < d; j += blockDim.x) {
        float c = xr[j] - mean;
        q += c * c;
    }
    float inv = 1.0f / sqrtf(block_sum(q, red) / (float)d + eps);
    for (unsigned j = threadIdx.x; j < d; j += blockDim.x) o[j] = (xr[j] - mean) * inv * w[j] + b[j];
}

// Max-subtracted softmax; a row whose max is -inf (fully masked) becomes zeros, as on the CPU.
extern "C" __global__ void softmax_f32(const float* x, float* out, unsigned d) {
    __shared__ float red[32];
    const float* xr = x + (unsigned long long)blockIdx.x * d;
    float* o = out + (unsigned long long)blockIdx.x * d;
    float m = neg_inf();
    for (unsigned j = threadIdx.x; j < d; j += blockDim.x) m = fmaxf(m, xr[j]);
    m = block_max(m, red);
    float s = 0.0f;
    for (unsigned j = threadIdx.x; j < d; j += blockDim.x) {
        float e = m == neg_inf() ? 0.0f : expf(xr[j] - m);
        o[j] = e;
        s += e;
    }
    s = block_sum(s, red);
    float inv = s > 0.0f ? 1.0f / s : 0.0f;
    // Each thread rescales only the elements it wrote itself, so no barrier is needed here.
    for (unsigned j = threadIdx.x; j < d; j += blockDim.x) o[j] *= inv;
}
