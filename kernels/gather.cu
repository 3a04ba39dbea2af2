// gather.cu: embedding lookup (float or GGUF-quantized tables) and KV-cache row writes.

// out row i = table row ids[i], dequantized to f32. kind: 100 f32, 101 f16, 102 bf16, or a quant
// kind 0..6 (quant.cuh). Launch: grid.x = ids count, block 256; threads stride over the row's
// d values (consecutive threads read consecutive values / bytes of the same blocks).
extern "C" __global__ void embedding(const unsigned char* table, float* out, const unsigned* ids, unsigned d,
                                     unsigned row_bytes, unsigned kind) {
    const unsigned char* row = table + (unsigned long long)ids[blockIdx.x] * row_bytes;
    float* o = out + (unsigned long long)blockIdx.x * d;
    if (kind >= 100u) {
        for (unsigned j = threadIdx.x; j < d; j += blockDim.x) o[j] = load_float(row, j, kind - 100u);
    } else {
        for (unsigned j = threadIdx.x; j < d; j += blockDim.x) o[j] = dequant_value(row, j, kind);
    }
}

// Cache row slots[t] (row = kv_heads * head_dim values) = x row t, stored as cache_code
// (0 f32, 1 f16; 2 bf16 also accepted). Launch: grid.x = tokens, block 256.
extern "C" __global__ void write_kv(const float* x, void* cache, const unsigned* slots, unsigned row,
                                    unsigned cache_code) {
    const float* xr = x + (unsigned long long)blockIdx.x * row;
    const unsigned long long dst = (unsigned long long)slots[blockIdx.x] * row;
    for (unsigned e = threadIdx.x; e < row; e += blockDim.x) {
        float v = xr[e];
        if (cache_code == 0u) {
            ((float*)cache)[dst + e] = v;
        } else {
            ((unsigned short*)cache)[dst + e] = cache_code == 1u ? f32_to_f16(v) : f32_to_bf16(v);
        }
    }
}
