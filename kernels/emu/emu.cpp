// emu.cpp: runs ferrite's CUDA kernels (kernels/*.cu) on the CPU, for tests on machines without
// a GPU. Build, from the repository root:
//
//   c++ -std=c++20 -O2 -ffp-contract=off -fPIC -shared -pthread -DFERRITE_EMU -o libferrite_cuda_emu.so kernels/emu/emu.cpp
//
// Self-test (kernels/emu/selftest.cpp includes this file):
//
//   c++ -std=c++20 -O2 -ffp-contract=off -pthread -DFERRITE_EMU -o /tmp/ferrite_emu_selftest kernels/emu/selftest.cpp && /tmp/ferrite_emu_selftest
//
// C API (loaded by the Rust host with libloading):
//   int ferrite_emu_launch(const char* name, const unsigned* grid3, const unsigned* block3,
//                          unsigned dyn_smem_bytes, void** params, char* err, unsigned err_len);
//     params as for cuLaunchKernel: params[i] points at the value of kernel argument i.
//     Returns 0, or nonzero with a NUL-terminated message in err: 1 bad arguments, 2 unknown
//     kernel, 3 bad launch configuration, 4 deadlock, 5 internal error (out of memory, ...).
//   unsigned ferrite_emu_version(void);  // 1
//
//   A launch is synchronous (it returns when every block has run); several host threads may
//   launch at the same time (all state is per launch or per OS thread).
//
// How it runs: every CUDA thread of a block is a coroutine with a 64 KiB stack; a block runs on
// one OS thread, round-robin, and a coroutine gives up the CPU only at __syncthreads, warp-level
// ops or its end. Blocks are shared out over FERRITE_EMU_THREADS OS threads (default: the CPU
// count, at most 8; the calling thread is one of them, the others are kept between launches). See README.md for what is emulated.
#include "cuda_emu.h"

#include <setjmp.h>
#include <sys/mman.h>
#include <ucontext.h>
#if defined(__USE_FORTIFY_LEVEL) && __USE_FORTIFY_LEVEL > 0
#error "_longjmp between coroutine stacks needs _FORTIFY_SOURCE off (cuda_emu.h undefines it first)"
#endif

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#pragma GCC visibility push(hidden)  // only the two C entry points leave the library

// ---- the kernels -----------------------------------------------------------------------------
// NVRTC compiles each .cu file on its own, so two files may define helpers of the same name;
// here they share one translation unit, hence one namespace per file. The kernels themselves are
// extern "C" (one entity whatever the namespace); the using-directives below make them visible
// to the registry, after all files are in, so that no file sees another's helpers.
#ifndef FERRITE_EMU_NO_KERNELS  // only for building the self-test without the kernel files
#include "../common.cuh"
#include "../quant.cuh"
namespace fk_elementwise {
#include "../elementwise.cu"
}
namespace fk_norm {
#include "../norm.cu"
}
namespace fk_rope {
#include "../rope.cu"
}
namespace fk_gather {
#include "../gather.cu"
}
namespace fk_attention {
#include "../attention.cu"
}
namespace fk_quantize {
#include "../quantize.cu"
}
namespace fk_matmul_quant {
#include "../matmul_quant.cu"
}
namespace fk_matmul_float {
#include "../matmul_float.cu"
}
namespace fk_argmax {
#include "../argmax.cu"
}
namespace fk_conv {
#include "../conv.cu"
}
namespace fk_group_norm {
#include "../group_norm.cu"
}
namespace fk_resample {
#include "../resample.cu"
}
namespace fk_layout {
#include "../layout.cu"
}
namespace fk_modulate {
#include "../modulate.cu"
}
namespace fk_rotary {
#include "../rotary.cu"
}
namespace fk_attention_dense {
#include "../attention_dense.cu"
}
using namespace fk_elementwise;
using namespace fk_norm;
using namespace fk_rope;
using namespace fk_gather;
using namespace fk_attention;
using namespace fk_quantize;
using namespace fk_matmul_quant;
using namespace fk_matmul_float;
using namespace fk_argmax;
using namespace fk_conv;
using namespace fk_group_norm;
using namespace fk_resample;
using namespace fk_layout;
using namespace fk_modulate;
using namespace fk_rotary;
using namespace fk_attention_dense;
#endif

namespace ferrite_emu {

// ---- registry: name -> thunk(void** params) ----------------------------------------------------
using Thunk = void (*)(void**);

// Deduces the kernel's parameter types from its pointer and passes *(T_i*)params[i].
template <class... A> void call_kernel(void (*f)(A...), void** p) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        f(*static_cast<std::remove_cvref_t<A>*>(p[I])...);
    }(std::index_sequence_for<A...>{});
}
template <auto F> void thunk(void** p) { call_kernel(F, p); }
template <class... A> constexpr unsigned arity(void (*)(A...)) { return sizeof...(A); }

struct Entry { const char* name; Thunk fn; unsigned nargs; };
#define FERRITE_KERNEL(k) {#k, &thunk<&k>, arity(&k)},
#ifndef FERRITE_EMU_EXTRA_KERNELS  // the self-test registers its own kernels through this
#define FERRITE_EMU_EXTRA_KERNELS
#endif
static const Entry kRegistry[] = {
#ifndef FERRITE_EMU_NO_KERNELS
#include "registry.inc"
#endif
    FERRITE_EMU_EXTRA_KERNELS  // (expands to nothing, or to more FERRITE_KERNEL lines)
    {nullptr, nullptr, 0}};
#undef FERRITE_KERNEL

// ---- per OS thread scheduler state -------------------------------------------------------------
constexpr std::size_t kStack = 64 * 1024, kGuard = 4096;  // guard page: overflow faults, not corrupts
enum class St : unsigned char { Ready, Barrier, Warp, Done };

// Coroutines: makecontext starts one (on its own stack, in fiber_main, which loops over blocks),
// then all switches are _setjmp/_longjmp. swapcontext would do too, but it makes a sigprocmask
// system call at every switch, which made the emulator several times slower; the jumps only go
// between stacks that are suspended in park() or resume(), so they are well defined in practice.
struct Fiber {
    jmp_buf jb;  // where the coroutine is parked
    bool fresh;  // not started yet, or abandoned (a deadlock): resume() starts it over
    char* mem;   // kGuard + kStack bytes, mmap'ed once and reused by every block
    uint3 tid;
    St st;
    WarpOp op;  // the pending warp op: its mask, deposited value, source lane and result
    unsigned mask;
    int src;
    std::uint64_t val, res;
};

struct Launch {
    Thunk fn;
    void** params;
    uint3 grid, block;
    unsigned dyn, nthreads;
    std::uint64_t nblocks;
    std::atomic<std::uint64_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex mu;
    int code = 0;
    std::string msg;
    void fail(int c, std::string m) {
        std::lock_guard<std::mutex> g(mu);
        if (!failed.exchange(true)) code = c, msg = std::move(m);
    }
};

struct Worker {
    jmp_buf sched;  // the scheduler, inside resume()
    std::vector<Fiber> fibers;  // only grown between blocks, never while one runs
    unsigned cur = 0;           // index (= linear thread id) of the running coroutine
    const Launch* launch = nullptr;
    struct alignas(16) Chunk { unsigned char b[16]; };
    std::vector<Chunk> dyn;
    ~Worker() {
        for (Fiber& f : fibers) munmap(f.mem, kGuard + kStack);
    }
    void prepare(const Launch& l) {
        launch = &l;
        while (fibers.size() < l.nthreads) {
            Fiber f{};
            void* m = mmap(nullptr, kGuard + kStack, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
            if (m == MAP_FAILED) throw std::bad_alloc();
            mprotect(m, kGuard, PROT_NONE);
            f.mem = static_cast<char*>(m);
            fibers.push_back(f);
            for (Fiber& g : fibers) g.fresh = true;  // the vector moved: restart them all
        }
        dyn.resize((l.dyn + 15) / 16 + 1);
        dyn_smem = dyn.data()->b;
        blockDim = l.block;
        gridDim = l.grid;
    }
};
// The hot paths reach the OS thread's worker through a plain pointer: a thread_local object with
// a destructor costs an initialization check at every access.
static thread_local Worker* tw;

// Park the running coroutine in state s and switch to the scheduler.
static void park(St s) {
    Worker* w = tw;
    Fiber& f = w->fibers[w->cur];
    f.st = s;
    if (!_setjmp(f.jb)) _longjmp(w->sched, 1);
}

// A coroutine runs the kernel once per block: resumed after Done, it starts the next one.
static void fiber_main() {
    for (;;) {
        tw->launch->fn(tw->launch->params);
        park(St::Done);
    }
}

// Run coroutine i until it parks.
static void resume(Worker& w, unsigned i) {
    Fiber& f = w.fibers[i];
    w.cur = i;
    threadIdx = f.tid;
    if (_setjmp(w.sched)) return;  // it parked
    if (!f.fresh) _longjmp(f.jb, 1);
    f.fresh = false;
    ucontext_t uc;
    getcontext(&uc);
    uc.uc_stack.ss_sp = f.mem + kGuard;
    uc.uc_stack.ss_size = kStack;
    uc.uc_link = nullptr;  // fiber_main never returns
    makecontext(&uc, fiber_main, 0);
    setcontext(&uc);
}

void sync_block() { park(St::Barrier); }

std::uint64_t warp_op(WarpOp op, unsigned mask, std::uint64_t val, int src) {
    Fiber& f = tw->fibers[tw->cur];
    f.op = op, f.mask = mask, f.val = val, f.src = src;
    park(St::Warp);
    return f.res;  // filled in by the scheduler when the whole group had arrived
}

// Completes the warp ops whose groups are all present: a group is the live lanes of the waiting
// lane's mask; exited lanes do not count (as on hardware). Results are computed here, all at
// once, so a lane that runs ahead into its next shuffle cannot overwrite a value still unread.
static bool release_warps(Fiber* f, unsigned n) {
    bool any = false;
    for (unsigned base = 0; base < n; base += 32) {
        Fiber* w = f + base;
        unsigned cnt = std::min(32u, n - base);
        for (bool again = true; again;) {
            again = false;
            unsigned live = 0, wait = 0;
            for (unsigned l = 0; l < cnt; l++) {
                live |= unsigned(w[l].st != St::Done) << l;
                wait |= unsigned(w[l].st == St::Warp) << l;
            }
            for (unsigned rest = wait; rest; rest &= rest - 1) {
                unsigned l0 = std::countr_zero(rest);
                unsigned grp = (w[l0].mask | 1u << l0) & live;
                if (grp & ~wait) continue;  // a lane of the group is still on its way
                unsigned ballot = 0;
                for (unsigned l = 0; l < cnt; l++)
                    if ((grp >> l & 1) && w[l].val) ballot |= 1u << l;
                for (unsigned l = 0; l < cnt; l++) {
                    if (!(grp >> l & 1)) continue;
                    Fiber& x = w[l];
                    switch (x.op) {
                        case WarpOp::Shfl: {
                            unsigned s = unsigned(x.src);
                            x.res = s < 32 && (grp >> s & 1) ? w[s].val : x.val;
                            break;
                        }
                        case WarpOp::Ballot: x.res = ballot; break;
                        case WarpOp::Any: x.res = ballot != 0; break;
                        case WarpOp::All: x.res = ballot == grp; break;
                        case WarpOp::Sync: x.res = 0; break;
                    }
                    x.st = St::Ready;
                }
                any = again = true;
                break;
            }
        }
    }
    return any;
}

// Runs the block blockIdx to completion; false (and a message) on deadlock.
static bool run_block(Worker& w, const Launch& l, std::string& err) {
    unsigned n = l.nthreads;
    Fiber* f = w.fibers.data();
    for (unsigned i = 0; i < n; i++) {
        f[i].tid = {i % l.block.x, i / l.block.x % l.block.y, i / (l.block.x * l.block.y)};
        f[i].st = St::Ready;
    }
    for (;;) {
        for (unsigned i = 0; i < n; i++) {
            if (f[i].st == St::Ready) resume(w, i);
        }
        if (release_warps(f, n)) continue;
        unsigned alive = 0, at_bar = 0, at_warp = 0;
        for (unsigned i = 0; i < n; i++) {
            alive += f[i].st != St::Done;
            at_bar += f[i].st == St::Barrier;
            at_warp += f[i].st == St::Warp;
        }
        if (alive == 0) return true;
        if (at_bar == alive) {  // everyone still running is at __syncthreads (exited = arrived)
            for (unsigned i = 0; i < n; i++)
                if (f[i].st == St::Barrier) f[i].st = St::Ready;
            continue;
        }
        char buf[256];
        std::snprintf(buf, sizeof buf,
                      "deadlock in block (%u,%u,%u): %u threads at __syncthreads, %u at warp ops "
                      "whose group never completes, %u exited",
                      blockIdx.x, blockIdx.y, blockIdx.z, at_bar, at_warp, n - alive);
        err = buf;
        for (unsigned i = 0; i < n; i++) f[i].fresh = true;  // abandon them mid-kernel
        return false;
    }
}

// This OS thread's worker, destroyed (stacks unmapped) when the thread ends. Its destructor,
// registered at the first call, also keeps glibc from unloading the library (dlclose) while the
// thread lives.
static Worker& this_worker() {
    static thread_local Worker worker;
    return *(tw = &worker);
}

static void work(Launch& l) {
    try {
        Worker& w = this_worker();
        w.prepare(l);
        std::string err;
        const std::uint64_t gx = l.grid.x, gxy = gx * l.grid.y;
        while (!l.failed.load(std::memory_order_relaxed)) {
            std::uint64_t b = l.next.fetch_add(1);
            if (b >= l.nblocks) break;
            blockIdx = {unsigned(b % gx), unsigned(b % gxy / gx), unsigned(b / gxy)};
            if (!run_block(w, l, err)) l.fail(4, err);
        }
    } catch (const std::exception& e) {
        l.fail(5, std::string("internal error: ") + e.what());
    }
}

// Helper OS threads, started on demand and kept (with their coroutine stacks) for later
// launches: starting threads and stacks anew at every launch cost milliseconds. They are never
// stopped, and each pins the library in memory through this_worker() (see there).
struct Pool {
    std::mutex use;  // held by the launch that has the helpers; a concurrent one runs alone
    std::mutex mu;
    std::condition_variable work_cv, done_cv;
    Launch* job = nullptr;
    std::uint64_t gen = 0;  // bumped for every job
    unsigned started = 0, seats = 0, joined = 0, running = 0;

    void helper() {
        this_worker();
        std::uint64_t seen = 0;
        std::unique_lock<std::mutex> lk(mu);
        for (;;) {
            work_cv.wait(lk, [&] { return gen != seen; });
            seen = gen;
            if (joined >= seats) continue;  // enough helpers, or the job is over
            joined++, running++;
            Launch* l = job;
            lk.unlock();
            work(*l);
            lk.lock();
            if (--running == 0) done_cv.notify_all();
        }
    }
    // Runs l on the calling thread plus up to `extra` helpers.
    void run(Launch& l, unsigned extra) {
        std::unique_lock<std::mutex> u(use, std::try_to_lock);
        if (!u.owns_lock() || extra == 0) return work(l);
        {
            std::lock_guard<std::mutex> g(mu);
            try {
                for (; started < extra; started++) std::thread([this] { helper(); }).detach();
            } catch (const std::exception&) {}  // could not start more: fewer do the work
            job = &l, seats = std::min(extra, started), joined = 0, gen++;
        }
        work_cv.notify_all();
        work(l);
        std::unique_lock<std::mutex> lk(mu);
        seats = joined;  // close the door: a helper waking up late must not touch l
        done_cv.wait(lk, [&] { return running == 0; });
    }
};
static Pool& pool() {
    static Pool* p = new Pool;  // never destroyed: helpers may still wait on it at exit
    return *p;
}

static unsigned os_threads() {
    if (const char* s = std::getenv("FERRITE_EMU_THREADS")) {
        long v = std::strtol(s, nullptr, 10);
        if (v >= 1) return unsigned(std::min(v, 64L));
    }
    unsigned hc = std::thread::hardware_concurrency();
    return std::max(1u, std::min(hc, 8u));
}

static int launch(const char* name, const unsigned* g, const unsigned* b, unsigned dyn, void** params,
                  std::string& msg) {
    auto bad = [&](int code, std::string m) { msg = std::move(m); return code; };
    if (!name || !g || !b) return bad(1, "null name, grid or block");
    const Entry* k = kRegistry;
    while (k->name && std::strcmp(k->name, name) != 0) k++;
    if (!k->name) return bad(2, std::string("unknown kernel '") + name + "'");
    if (!params && k->nargs) return bad(1, "null params");
    std::uint64_t nt = std::uint64_t(b[0]) * b[1] * b[2];
    if (!g[0] || !g[1] || !g[2] || !nt) return bad(3, "zero grid or block dimension");
    if (nt > 1024 || b[2] > 64) return bad(3, "block of " + std::to_string(nt) + " threads: over 1024 (or block.z > 64)");
    if (g[1] > 65535 || g[2] > 65535 || g[0] > 0x7fffffffu) return bad(3, "grid dimension over CUDA's limits");
    if (dyn > 227 * 1024) return bad(3, "dynamic shared memory over 227 KiB");
    Launch l;
    l.fn = k->fn, l.params = params, l.grid = {g[0], g[1], g[2]}, l.block = {b[0], b[1], b[2]};
    l.dyn = dyn, l.nthreads = unsigned(nt), l.nblocks = std::uint64_t(g[0]) * g[1] * g[2];
    pool().run(l, unsigned(std::min<std::uint64_t>(os_threads(), l.nblocks) - 1));
    return l.failed ? bad(l.code, l.msg) : 0;
}

}  // namespace ferrite_emu

#pragma GCC visibility pop

extern "C" __attribute__((visibility("default"))) int ferrite_emu_launch(const char* name, const unsigned* grid3,
                                                                         const unsigned* block3, unsigned dyn_smem_bytes,
                                                                         void** params, char* err, unsigned err_len) {
    std::string msg;
    int rc;
    try {
        rc = ferrite_emu::launch(name, grid3, block3, dyn_smem_bytes, params, msg);
    } catch (const std::exception& e) {
        rc = 5, msg = std::string("internal error: ") + e.what();
    }
    if (err && err_len) std::snprintf(err, err_len, "%s", rc ? msg.c_str() : "");
    return rc;
}

extern "C" __attribute__((visibility("default"))) unsigned ferrite_emu_version(void) { return 1; }
