// Self-test of the CUDA emulator: tiny kernels of its own, registered next to the real ones and
// launched through ferrite_emu_launch. From the repository root:
//
//   c++ -std=c++20 -O2 -ffp-contract=off -pthread -DFERRITE_EMU -o /tmp/ferrite_emu_selftest kernels/emu/selftest.cpp && /tmp/ferrite_emu_selftest
//
// (add -DFERRITE_EMU_NO_KERNELS to leave kernels/*.cu out). Prints "ok" and exits 0, or lists
// the failures and exits 1.
#include "cuda_emu.h"

#include <cstdio>
#include <cstdlib>
#include <vector>

// ---- test kernels --------------------------------------------------------------------------------
static std::atomic<int> g_next_os_id{0};
static thread_local int t_os_id = -1;  // small id of the OS thread running a block (test only)

__device__ float t_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// out[global linear thread id] = block linear id * 1000 + thread linear id, 3-D grid and block.
extern "C" __global__ void t_ids(unsigned* out) {
    unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    unsigned b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    out[b * blockDim.x * blockDim.y * blockDim.z + t] = b * 1000u + t;
}

// Tree reduction in static shared memory, 256 threads per block; also counts blocks per OS thread.
extern "C" __global__ void t_reduce(const float* x, float* out, int* os_ids) {
    __shared__ float s[256];
    unsigned t = threadIdx.x;
    s[t] = x[blockIdx.x * 256 + t];
    __syncthreads();
    for (unsigned k = 128; k > 0; k >>= 1) {
        if (t < k) s[t] += s[t + k];
        __syncthreads();
    }
    if (t == 0) {
        out[blockIdx.x] = s[0];
        if (t_os_id < 0) t_os_id = g_next_os_id++;
        os_ids[blockIdx.x] = t_os_id;
    }
}

// Threads >= 40 of a 64-thread block return early; the rest still meet at two barriers, and the
// 8 live lanes of warp 1 shuffle among themselves (width 8).
extern "C" __global__ void t_early_exit(float* out) {
    __shared__ float s[64];
    unsigned t = threadIdx.x;
    if (t >= 40) return;
    s[t] = (float)t;
    __syncthreads();
    float v = s[39 - t];
    __syncthreads();
    if (t >= 32) v += __shfl_xor_sync(0x000000ffu, v, 1, 8);
    out[t] = v;
}

// The block_sum pattern: every warp reduces, lane 0 stores, then only warp 0 reduces again
// while the other warps already wait at the next barrier; everyone reads the result.
extern "C" __global__ void t_warp0(const float* x, float* out) {
    __shared__ float part[32];
    __shared__ float total;
    unsigned t = threadIdx.x, lane = t & 31u, warp = t >> 5;
    float v = t_warp_sum(x[blockIdx.x * blockDim.x + t]);
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float r = lane < blockDim.x / 32 ? part[lane] : 0.0f;
        r = t_warp_sum(r);
        if (lane == 0) total = r;
    }
    __syncthreads();
    out[blockIdx.x * blockDim.x + t] = total;
}

// Dynamic shared memory: n floats; reversed copy.
extern "C" __global__ void t_dyn(const float* x, float* out, unsigned n) {
    FERRITE_DYN_SMEM(float, s);
    for (unsigned i = threadIdx.x; i < n; i += blockDim.x) s[i] = x[i];
    __syncthreads();
    for (unsigned i = threadIdx.x; i < n; i += blockDim.x) out[i] = s[n - 1 - i];
}

extern "C" __global__ void t_dp4a(const int* a, const int* b, int* out, unsigned n) {
    unsigned i = threadIdx.x;
    if (i >= n) return;
    out[2 * i] = __dp4a(a[i], b[i], 7);
    out[2 * i + 1] = (int)__dp4a((unsigned)a[i], (unsigned)b[i], 7u);
}

// Shuffles and votes in an (8,8) block, where lane = (x + 8y) % 32.
extern "C" __global__ void t_warp_ops(int* out) {
    unsigned t = threadIdx.x + 8 * threadIdx.y, lane = t & 31u;
    int* o = out + t * 8;
    o[0] = __shfl_sync(0xffffffffu, (int)t * 10, 3);                // lane 3 of my warp
    o[1] = (int)__shfl_down_sync(0xffffffffu, t, 1);                // t+1, own value at lane 31
    o[2] = (int)__shfl_up_sync(0xffffffffu, (float)t, 2, 16);       // t-2 within 16-lane halves
    o[3] = (int)__ballot_sync(0xffffffffu, lane & 1);               // 0xaaaaaaaa
    o[4] = __any_sync(0xffffffffu, t == 5);                         // warp 0 only
    o[5] = __all_sync(0xffffffffu, t < 40);                         // warp 0 only
    o[6] = (int)__shfl_xor_sync(0xffffffffu, (double)t + 0.5, 31);  // 8-byte type
    __syncwarp();
    o[7] = atomicAdd(&out[64 * 8], 1) >= 0;
}

// Atomics from many blocks on several OS threads: c[0] += 1, c[1] = max, c[2] = min,
// c[3] counts successful CAS increments, f[0] += 0.5.
extern "C" __global__ void t_atomics(int* c, unsigned* u, float* f) {
    int g = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    atomicAdd(&c[0], 1);
    atomicMax(&c[1], g);
    atomicMin(&c[2], -g);
    for (;;) {
        unsigned old = u[0];
        if (atomicCAS(&u[0], old, old + 1u) == old) break;
    }
    atomicExch(&u[1], 7u);
    atomicAdd(&f[0], 0.5f);
}

// Half of warp 0 waits at __syncthreads, the other half at a full-warp shuffle: a deadlock.
extern "C" __global__ void t_deadlock(float* out) {
    if (threadIdx.x < 16) __syncthreads();
    else out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

#define FERRITE_EMU_EXTRA_KERNELS                                                                     \
    FERRITE_KERNEL(t_ids) FERRITE_KERNEL(t_reduce) FERRITE_KERNEL(t_early_exit) FERRITE_KERNEL(t_warp0) \
    FERRITE_KERNEL(t_dyn) FERRITE_KERNEL(t_dp4a) FERRITE_KERNEL(t_warp_ops) FERRITE_KERNEL(t_deadlock) \
    FERRITE_KERNEL(t_atomics)
#include "emu.cpp"

// ---- host side ---------------------------------------------------------------------------------
static int g_failures = 0;
#define CHECK(cond, ...)                                         \
    do {                                                         \
        if (!(cond)) {                                           \
            std::printf("FAIL %s:%d: ", __FILE__, __LINE__);    \
            std::printf(__VA_ARGS__);                            \
            std::printf("\n");                                   \
            g_failures++;                                        \
        }                                                        \
    } while (0)

static char g_err[256];
template <class... A>
static int launch(const char* name, dim3 g, dim3 b, unsigned dyn, A... args) {
    void* params[sizeof...(A) + 1] = {&args...};
    unsigned g3[3] = {g.x, g.y, g.z}, b3[3] = {b.x, b.y, b.z};
    return ferrite_emu_launch(name, g3, b3, dyn, params, g_err, sizeof g_err);
}
#define LAUNCH_OK(...) CHECK(launch(__VA_ARGS__) == 0, "launch failed: %s", g_err)

int main() {
    CHECK(ferrite_emu_version() == 1, "version");
    setenv("FERRITE_EMU_THREADS", "4", 1);

    {  // 3-D grid and block
        dim3 g(2, 3, 2), b(4, 2, 3);
        std::vector<unsigned> out(12 * 24, ~0u);
        LAUNCH_OK("t_ids", g, b, 0, out.data());
        for (unsigned i = 0; i < out.size(); i++) CHECK(out[i] == i / 24 * 1000 + i % 24, "t_ids[%u] = %u", i, out[i]);
    }
    {  // shared-memory reduction over many blocks on several OS threads
        const unsigned nb = 400;
        std::vector<float> x(nb * 256), out(nb);
        std::vector<int> ids(nb, -1);
        for (unsigned i = 0; i < x.size(); i++) x[i] = (float)(i % 7) - 3.0f;
        LAUNCH_OK("t_reduce", dim3(nb), dim3(256), 0, x.data(), out.data(), ids.data());
        unsigned seen = 0;
        for (unsigned b = 0; b < nb; b++) {
            float want = 0;
            for (unsigned i = 0; i < 256; i++) want += x[b * 256 + i];
            CHECK(out[b] == want, "t_reduce block %u: %g != %g", b, out[b], want);
            if (ids[b] >= 0 && ids[b] < 32) seen |= 1u << ids[b];
        }
        CHECK(std::popcount(seen) > 1, "blocks ran on %d OS thread(s), want several", std::popcount(seen));
    }
    {  // early return before a later __syncthreads, partial warp shuffles
        std::vector<float> out(64, -1.0f);
        LAUNCH_OK("t_early_exit", dim3(1), dim3(64), 0, out.data());
        for (unsigned t = 0; t < 40; t++) {
            float want = (float)(39 - t) + (t >= 32 ? (float)(39 - (t ^ 1)) : 0.0f);
            CHECK(out[t] == want, "t_early_exit[%u] = %g, want %g", t, out[t], want);
        }
        CHECK(out[40] == -1.0f, "t_early_exit wrote past the live threads");
    }
    {  // if (warp == 0) warp_sum(...) in 256-thread blocks
        std::vector<float> x(3 * 256), out(3 * 256);
        for (unsigned i = 0; i < x.size(); i++) x[i] = (float)(i % 13);
        LAUNCH_OK("t_warp0", dim3(3), dim3(256), 0, x.data(), out.data());
        for (unsigned b = 0; b < 3; b++) {
            float want = 0;
            for (unsigned i = 0; i < 256; i++) want += x[b * 256 + i];
            for (unsigned i = 0; i < 256; i++) CHECK(out[b * 256 + i] == want, "t_warp0[%u][%u] = %g", b, i, out[b * 256 + i]);
        }
    }
    {  // dynamic shared memory
        unsigned n = 1000;
        std::vector<float> x(n), out(n);
        for (unsigned i = 0; i < n; i++) x[i] = (float)i * 0.5f;
        LAUNCH_OK("t_dyn", dim3(2), dim3(96), n * 4, x.data(), out.data(), n);
        for (unsigned i = 0; i < n; i++) CHECK(out[i] == x[n - 1 - i], "t_dyn[%u]", i);
    }
    {  // __dp4a, signed and unsigned bytes
        std::vector<int> a = {0x01020304, -1, (int)0x807f80ff, 0x7f7f7f7f}, b = {0x01010101, -1, (int)0x7f80ff01, (int)0x80808080};
        std::vector<int> out(8);
        LAUNCH_OK("t_dp4a", dim3(1), dim3(32), 0, a.data(), b.data(), out.data(), 4u);
        for (unsigned i = 0; i < 4; i++) {
            int ws = 7;
            unsigned wu = 7;
            for (int k = 0; k < 32; k += 8) {
                ws += (int)(signed char)(a[i] >> k) * (int)(signed char)(b[i] >> k);
                wu += ((unsigned)a[i] >> k & 255u) * ((unsigned)b[i] >> k & 255u);
            }
            CHECK(out[2 * i] == ws && (unsigned)out[2 * i + 1] == wu, "t_dp4a[%u]: %d %u", i, out[2 * i], (unsigned)out[2 * i + 1]);
        }
        CHECK(out[0] == 7 + 1 + 2 + 3 + 4 && out[2] == 7 + 4, "t_dp4a values");
    }
    {  // shuffles and votes, lane numbering in a 2-D block
        std::vector<int> out(64 * 8 + 1, -7);
        out[64 * 8] = 0;
        LAUNCH_OK("t_warp_ops", dim3(1), dim3(8, 8), 0, out.data());
        for (int t = 0; t < 64; t++) {
            int lane = t & 31, *o = &out[t * 8];
            CHECK(o[0] == (t - lane + 3) * 10, "shfl t=%d: %d", t, o[0]);
            CHECK(o[1] == (lane == 31 ? t : t + 1), "shfl_down t=%d: %d", t, o[1]);
            CHECK(o[2] == ((lane & 15) >= 2 ? t - 2 : t), "shfl_up t=%d: %d", t, o[2]);
            CHECK((unsigned)o[3] == 0xaaaaaaaau, "ballot t=%d: %x", t, o[3]);
            CHECK(o[4] == (t < 32), "any t=%d", t);
            CHECK(o[5] == (t < 32), "all t=%d", t);
            CHECK(o[6] == (t ^ 31), "shfl_xor double t=%d: %d", t, o[6]);
            CHECK(o[7] == 1, "atomicAdd t=%d", t);
        }
        CHECK(out[64 * 8] == 64, "atomicAdd total %d", out[64 * 8]);
    }
    {  // atomics across blocks and OS threads
        std::vector<int> c = {0, -1, 1};
        std::vector<unsigned> u = {0, 0};
        std::vector<float> f = {0.0f};
        LAUNCH_OK("t_atomics", dim3(64), dim3(128), 0, c.data(), u.data(), f.data());
        CHECK(c[0] == 8192 && c[1] == 8191 && c[2] == -8191, "atomics int: %d %d %d", c[0], c[1], c[2]);
        CHECK(u[0] == 8192 && u[1] == 7, "atomicCAS/Exch: %u %u", u[0], u[1]);
        CHECK(f[0] == 4096.0f, "atomicAdd float: %g", f[0]);
    }
    {  // errors come back as codes and messages, and the emulator keeps working afterwards
        std::vector<float> out(32);
        CHECK(launch("t_deadlock", dim3(2), dim3(32), 0, out.data()) == 4, "deadlock not reported");
        std::printf("deadlock message: %s\n", g_err);
        CHECK(launch("no_such_kernel", dim3(1), dim3(1), 0, out.data()) == 2, "unknown kernel: %s", g_err);
        CHECK(launch("t_ids", dim3(1), dim3(1025), 0, out.data()) == 3, "1025 threads: %s", g_err);
        CHECK(launch("t_ids", dim3(1), dim3(32, 32, 2), 0, out.data()) == 3, "2048 threads: %s", g_err);
        std::vector<unsigned> ids(1024);
        LAUNCH_OK("t_ids", dim3(1), dim3(32, 32), 0, ids.data());
        CHECK(ids[1023] == 1023, "after errors");
    }
#ifndef FERRITE_EMU_NO_KERNELS
    {  // smoke test of two real kernels (their own tests live on the Rust side)
        unsigned n = 1000, blen = 10;
        std::vector<float> a(n), bb(blen), out(n);
        for (unsigned i = 0; i < n; i++) a[i] = (float)i;
        for (unsigned i = 0; i < blen; i++) bb[i] = 0.25f * (float)i;
        LAUNCH_OK("add_f32", dim3(4), dim3(256), 0, (const float*)a.data(), (const float*)bb.data(), out.data(), n, blen);
        for (unsigned i = 0; i < n; i++) CHECK(out[i] == a[i] + bb[i % blen], "add_f32[%u]", i);
        unsigned d = 300, rows = 3;
        std::vector<float> x(rows * d), w(d), y(rows * d);
        for (unsigned i = 0; i < x.size(); i++) x[i] = (float)((int)(i % 17) - 8) * 0.1f;
        for (unsigned i = 0; i < d; i++) w[i] = 1.0f + 0.01f * (float)i;
        LAUNCH_OK("rms_norm_f32", dim3(rows), dim3(256), 0, (const float*)x.data(), (const float*)w.data(), y.data(), d, 1e-5f);
        for (unsigned r = 0; r < rows; r++) {
            double ss = 0;
            for (unsigned i = 0; i < d; i++) ss += (double)x[r * d + i] * x[r * d + i];
            double inv = 1.0 / std::sqrt(ss / d + 1e-5);
            for (unsigned i = 0; i < d; i++) {
                double want = x[r * d + i] * inv * w[i];
                CHECK(std::fabs(y[r * d + i] - want) < 1e-4, "rms_norm_f32[%u][%u] = %g, want %g", r, i, y[r * d + i], want);
            }
        }
    }
    {
        std::printf("registered kernels:");
        for (const ferrite_emu::Entry* e = ferrite_emu::kRegistry; e->name; e++)
            if (e->name[0] != 't' || e->name[1] != '_') std::printf(" %s", e->name);
        std::printf("\n");
    }
#endif
    if (g_failures) {
        std::printf("%d failure(s)\n", g_failures);
        return 1;
    }
    std::printf("ok\n");
    return 0;
}
