// cuda_emu.h: just enough of CUDA for ferrite's kernels (kernels/*.cu) to compile as host C++20
// (g++ >= 12) with -DFERRITE_EMU. Included before common.cuh; the scheduler behind the sync and
// warp primitives lives in emu.cpp (see README.md). Nothing here is exported from the library.
#pragma once

// emu.cpp switches coroutines with _longjmp, which glibc's fortified variant refuses to do
// between stacks; this has to happen before the first system header.
#undef _FORTIFY_SOURCE

#include <math.h>  // the C math functions (expf, tanhf, erff, ...) in the global namespace
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#pragma GCC visibility push(hidden)

// ---- qualifiers --------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// `__restrict__` is a g++ keyword already; no `__noinline__`: libstdc++ headers (included after
// this one by emu.cpp) spell `__attribute__((__noinline__))`. __shared__: one copy per OS thread; a block runs on
// one OS thread from start to end, so that is exactly one copy per running block.
#define __shared__ static thread_local
#define __constant__ static const
// Dynamic shared memory: a pointer into this OS thread's buffer of the launch's dyn_smem bytes
// (16-byte aligned). Use it as CUDA's `extern __shared__ T name[]` (inside the kernel body).
#define FERRITE_DYN_SMEM(T, name) T* const name = reinterpret_cast<T*>(::ferrite_emu::dyn_smem)

// ---- builtin variables -------------------------------------------------------------------------
struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

// Per OS thread; the scheduler (emu.cpp) sets them before each switch to a coroutine.
static thread_local uint3 threadIdx, blockIdx, blockDim, gridDim;
static constexpr int warpSize = 32;

namespace ferrite_emu {
static thread_local unsigned char* dyn_smem;  // this OS thread's dynamic shared memory

// Implemented in emu.cpp. Each parks the calling CUDA thread until its group has arrived.
void sync_block();
enum class WarpOp : unsigned char { Sync, Shfl, Ballot, Any, All };
// Warp rendezvous of the live lanes in `mask`: deposits `val`, returns the value of lane `src`
// (for Shfl; own value if src is not in the group) or the vote result.
std::uint64_t warp_op(WarpOp op, unsigned mask, std::uint64_t val, int src);

// Lanes are numbered by the linear thread id (x fastest, then y, then z), as in CUDA.
inline unsigned lane_id() { return (threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) & 31u; }

template <class T> inline std::uint64_t pack(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffle of a type over 8 bytes");
    std::uint64_t u = 0;
    std::memcpy(&u, &v, sizeof(T));
    return u;
}
template <class T> inline T unpack(std::uint64_t u) {
    T v;
    std::memcpy(&v, &u, sizeof(T));
    return v;
}
}  // namespace ferrite_emu

// ---- barriers and warp primitives ----------------------------------------------------------------
inline void __syncthreads() { ferrite_emu::sync_block(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ferrite_emu::warp_op(ferrite_emu::WarpOp::Sync, mask, 0, 0); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// Shuffles follow the CUDA programming guide for `width` (a power of two <= 32): a source lane
// outside the allowed range yields the caller's own value. Any trivially copyable type of at
// most 8 bytes works (CUDA has int, unsigned, long long, float, double, ...).
template <class T> inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    int lane = (int)ferrite_emu::lane_id();
    int s = (lane & ~(width - 1)) | (src & (width - 1));
    return ferrite_emu::unpack<T>(ferrite_emu::warp_op(ferrite_emu::WarpOp::Shfl, mask, ferrite_emu::pack(v), s));
}
template <class T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    int lane = (int)ferrite_emu::lane_id();
    int s = lane ^ lane_mask;
    if (s >= (lane & ~(width - 1)) + width) s = lane;  // later groups are out of reach
    return ferrite_emu::unpack<T>(ferrite_emu::warp_op(ferrite_emu::WarpOp::Shfl, mask, ferrite_emu::pack(v), s));
}
template <class T> inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    int lane = (int)ferrite_emu::lane_id();
    int s = (int)((lane & (width - 1)) + delta) < width ? lane + (int)delta : lane;
    return ferrite_emu::unpack<T>(ferrite_emu::warp_op(ferrite_emu::WarpOp::Shfl, mask, ferrite_emu::pack(v), s));
}
template <class T> inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    int lane = (int)ferrite_emu::lane_id();
    int s = (lane & (width - 1)) >= (int)delta ? lane - (int)delta : lane;
    return ferrite_emu::unpack<T>(ferrite_emu::warp_op(ferrite_emu::WarpOp::Shfl, mask, ferrite_emu::pack(v), s));
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
    return (unsigned)ferrite_emu::warp_op(ferrite_emu::WarpOp::Ballot, mask, pred != 0, 0);
}
inline int __any_sync(unsigned mask, int pred) { return (int)ferrite_emu::warp_op(ferrite_emu::WarpOp::Any, mask, pred != 0, 0); }
inline int __all_sync(unsigned mask, int pred) { return (int)ferrite_emu::warp_op(ferrite_emu::WarpOp::All, mask, pred != 0, 0); }

// ---- integer intrinsics ------------------------------------------------------------------------
inline int __dp4a(int a, int b, int c) {
    for (int i = 0; i < 32; i += 8) c += (int)(signed char)(a >> i) * (int)(signed char)(b >> i);
    return c;
}
inline unsigned __dp4a(unsigned a, unsigned b, unsigned c) {
    for (int i = 0; i < 32; i += 8) c += ((a >> i) & 0xffu) * ((b >> i) & 0xffu);
    return c;
}
inline int __popc(unsigned x) { return std::popcount(x); }
inline int __popcll(unsigned long long x) { return std::popcount(x); }
inline int __clz(int x) { return std::countl_zero((unsigned)x); }
inline int __ffs(int x) { return x ? std::countr_zero((unsigned)x) + 1 : 0; }
template <class T> inline T __ldg(const T* p) { return *p; }

// ---- atomics (blocks run concurrently on several OS threads, so these are real atomics) -----
template <class T> inline T atomicAdd(T* p, std::type_identity_t<T> v) { return std::atomic_ref<T>(*p).fetch_add(v); }
template <class T> inline T atomicSub(T* p, std::type_identity_t<T> v) { return std::atomic_ref<T>(*p).fetch_sub(v); }
template <class T> inline T atomicExch(T* p, std::type_identity_t<T> v) { return std::atomic_ref<T>(*p).exchange(v); }
template <class T> inline T atomicCAS(T* p, std::type_identity_t<T> expected, std::type_identity_t<T> desired) {
    std::atomic_ref<T>(*p).compare_exchange_strong(expected, desired);
    return expected;  // the old value either way
}
template <class T> inline T atomicMax(T* p, std::type_identity_t<T> v) {
    static_assert(std::is_integral_v<T>, "CUDA has atomicMax for integers only");
    std::atomic_ref<T> a(*p);
    T old = a.load();
    while (old < v && !a.compare_exchange_weak(old, v)) {}
    return old;
}
template <class T> inline T atomicMin(T* p, std::type_identity_t<T> v) {
    static_assert(std::is_integral_v<T>, "CUDA has atomicMin for integers only");
    std::atomic_ref<T> a(*p);
    T old = a.load();
    while (v < old && !a.compare_exchange_weak(old, v)) {}
    return old;
}

// ---- math --------------------------------------------------------------------------------------
// glibc's math.h declares __expf, __logf, __sinf, ... itself (its internal aliases), so the fast
// intrinsics of those names are macros onto the accurate functions rather than overloads.
#define __expf(x) ::expf(x)
#define __exp10f(x) ::exp10f(x)
#define __logf(x) ::logf(x)
#define __log2f(x) ::log2f(x)
#define __log10f(x) ::log10f(x)
#define __sinf(x) ::sinf(x)
#define __cosf(x) ::cosf(x)
#define __tanf(x) ::tanf(x)
#define __powf(x, y) ::powf(x, y)
#define rsqrtf(x) (1.0f / ::sqrtf(x))  // a macro too: C23 puts rsqrtf into newer glibc
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __saturatef(float x) { return x >= 1.0f ? 1.0f : (x > 0.0f ? x : 0.0f); }  // NaN -> 0
inline int __float_as_int(float f) { return std::bit_cast<int>(f); }
inline float __int_as_float(int i) { return std::bit_cast<float>(i); }
inline unsigned __float_as_uint(float f) { return std::bit_cast<unsigned>(f); }
inline float __uint_as_float(unsigned u) { return std::bit_cast<float>(u); }
inline int __float2int_rn(float f) { return (int)nearbyintf(f); }  // default rounding: to even
inline int __float2int_rz(float f) { return (int)f; }
inline float __int2float_rn(int i) { return (float)i; }

// min/max as CUDA's math headers overload them: mixed signed/unsigned integers compare as
// unsigned, mixed float/double as double.
#define FERRITE_EMU_MINMAX(R, A, B)                              \
    inline R min(A a, B b) { return (R)a < (R)b ? (R)a : (R)b; } \
    inline R max(A a, B b) { return (R)a > (R)b ? (R)a : (R)b; }
FERRITE_EMU_MINMAX(int, int, int)
FERRITE_EMU_MINMAX(unsigned, unsigned, unsigned)
FERRITE_EMU_MINMAX(unsigned, int, unsigned)
FERRITE_EMU_MINMAX(unsigned, unsigned, int)
FERRITE_EMU_MINMAX(long, long, long)
FERRITE_EMU_MINMAX(unsigned long, unsigned long, unsigned long)
FERRITE_EMU_MINMAX(unsigned long, long, unsigned long)
FERRITE_EMU_MINMAX(unsigned long, unsigned long, long)
FERRITE_EMU_MINMAX(long long, long long, long long)
FERRITE_EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
FERRITE_EMU_MINMAX(unsigned long long, long long, unsigned long long)
FERRITE_EMU_MINMAX(unsigned long long, unsigned long long, long long)
#undef FERRITE_EMU_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(float a, double b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax(a, b); }
inline double min(double a, float b) { return fmin(a, b); }
inline double max(double a, float b) { return fmax(a, b); }

#pragma GCC visibility pop
