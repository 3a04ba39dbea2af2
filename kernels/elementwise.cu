// elementwise.cu: one-pass f32 maps: add/mul (with row broadcast), scale, activations, gated
// activations, float dtype casts. Launch: block 256, grid.x = min(ceil(n/256), 65535); every
// kernel walks the elements with a grid-stride loop (64-bit index, so n near 2^32 cannot wrap).

#define GRID_STRIDE(i, n)                                                                       \
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;      \
         i < (unsigned long long)(n); i += (unsigned long long)gridDim.x * blockDim.x)

// Activation codes: 0 silu, 1 gelu (erf), 2 gelu tanh approximation, 3 quick gelu.
__device__ FERRITE_INLINE float apply_act(float x, unsigned act) {
    switch (act) {
        case 0u: return x / (1.0f + expf(-x));
        case 1u: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
        case 2u: return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
        default: return x / (1.0f + expf(-1.702f * x));
    }
}

// out[i] = a[i] + b[i % b_len] (b_len == n, or the row width of a broadcast bias).
extern "C" __global__ void add_f32(const float* a, const float* b, float* out, unsigned n, unsigned b_len) {
    GRID_STRIDE(i, n) { out[i] = a[i] + b[b_len == n ? i : i % b_len]; }
}

extern "C" __global__ void mul_f32(const float* a, const float* b, float* out, unsigned n, unsigned b_len) {
    GRID_STRIDE(i, n) { out[i] = a[i] * b[b_len == n ? i : i % b_len]; }
}

extern "C" __global__ void scale_f32(const float* x, float* out, unsigned n, float s) {
    GRID_STRIDE(i, n) { out[i] = x[i] * s; }
}

extern "C" __global__ void activation_f32(const float* x, float* out, unsigned n, unsigned act) {
    GRID_STRIDE(i, n) { out[i] = apply_act(x[i], act); }
}

// out = act(gate) * up
extern "C" __global__ void gated_f32(const float* gate, const float* up, float* out, unsigned n, unsigned act) {
    GRID_STRIDE(i, n) { out[i] = apply_act(gate[i], act) * up[i]; }
}

// Float dtype codes 0 f32, 1 f16, 2 bf16, either way; narrowing rounds to nearest even.
extern "C" __global__ void cast_float(const void* x, void* out, unsigned n, unsigned from, unsigned to) {
    GRID_STRIDE(i, n) {
        float v = load_float(x, (unsigned)i, from);
        if (to == 0u) {
            ((float*)out)[i] = v;
        } else {
            ((unsigned short*)out)[i] = to == 1u ? f32_to_f16(v) : f32_to_bf16(v);
        }
    }
}
