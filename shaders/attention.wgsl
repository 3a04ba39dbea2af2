// Causal (optionally sliding-window, soft-capped) attention over a paged KV cache, grouped-query.
// One workgroup of 64 threads per (query token, query head):
//   1. scores s_j = scale · q·k_j for the visible keys j (threads stride over keys) into the
//      scratch row of this (token, head), with the row's max and sum of exp reduced in the
//      workgroup;
//   2. each thread owns output dims d, d+64, ...: out[d] = Σ_j p_j v_j[d].
// Per query token, `info` holds (position, first visible position, offset of its sequence's block
// table in `tables`, 0). Caches are u32 arrays: f32 values, or f16 pairs (attention_f16).

struct Params {
    tokens: u32, q_heads: u32, kv_heads: u32, head_dim: u32,
    q_off: u32, block_size: u32, max_kv: u32, k_off: u32,
    v_off: u32, scale: f32, softcap: f32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k_cache: array<u32>;
@group(0) @binding(3) var<storage, read> v_cache: array<u32>;
@group(0) @binding(4) var<storage, read> info: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> tables: array<u32>;
@group(0) @binding(6) var<storage, read_write> scores: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, 64>;

fn reduce_max(li: u32, v: f32) -> f32 {
    partial[li] = v;
    workgroupBarrier();
    for (var k = 32u; k > 0u; k >>= 1u) {
        if (li < k) { partial[li] = max(partial[li], partial[li + k]); }
        workgroupBarrier();
    }
    let r = partial[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(li: u32, v: f32) -> f32 {
    partial[li] = v;
    workgroupBarrier();
    for (var k = 32u; k > 0u; k >>= 1u) {
        if (li < k) { partial[li] += partial[li + k]; }
        workgroupBarrier();
    }
    let r = partial[0];
    workgroupBarrier();
    return r;
}

// Value `d` of cache row `slot`, kv head `h`.
fn load(f16: bool, is_k: bool, slot: u32, h: u32, d: u32) -> f32 {
    let e = slot * p.kv_heads * p.head_dim + h * p.head_dim + d;
    if (f16) {
        let off = select(p.v_off, p.k_off, is_k);
        let i = off + e;
        var w: u32;
        if (is_k) { w = k_cache[i / 2u]; } else { w = v_cache[i / 2u]; }
        let pair = unpack2x16float(w);
        return select(pair.x, pair.y, i % 2u == 1u);
    }
    if (is_k) { return bitcast<f32>(k_cache[p.k_off + e]); }
    return bitcast<f32>(v_cache[p.v_off + e]);
}

fn slot_of(table: u32, pos: u32) -> u32 {
    return tables[table + pos / p.block_size] * p.block_size + pos % p.block_size;
}

fn attend(f16: bool, wg: vec3<u32>, nwg: vec3<u32>, li: u32) {
    let id = wg.x + wg.y * nwg.x;
    if (id >= p.tokens * p.q_heads) { return; }
    let t = id / p.q_heads;
    let h = id % p.q_heads;
    let kvh = h / (p.q_heads / p.kv_heads);
    let tok = info[t];
    let pos = tok.x;
    let first = tok.y;
    let table = tok.z;
    let q_base = p.q_off + (t * p.q_heads + h) * p.head_dim;
    let row = id * p.max_kv;
    var m = -3.4028235e38;
    for (var j = first + li; j <= pos; j += 64u) {
        let slot = slot_of(table, j);
        var s = 0.0;
        for (var d = 0u; d < p.head_dim; d++) {
            s += q[q_base + d] * load(f16, true, slot, kvh, d);
        }
        s *= p.scale;
        if (p.softcap > 0.0) { s = p.softcap * tanh(s / p.softcap); }
        scores[row + j - first] = s;
        m = max(m, s);
    }
    let mx = reduce_max(li, m);
    var l = 0.0;
    for (var j = first + li; j <= pos; j += 64u) {
        let e = exp(scores[row + j - first] - mx);
        scores[row + j - first] = e;
        l += e;
    }
    let total = reduce_sum(li, l);
    storageBarrier();
    workgroupBarrier();
    // A row of no sequence (first > pos) sees no key: zeros, as on the CPU.
    let inv = select(0.0, 1.0 / total, total > 0.0);
    for (var d = li; d < p.head_dim; d += 64u) {
        var acc = 0.0;
        for (var j = first; j <= pos; j++) {
            acc += scores[row + j - first] * load(f16, false, slot_of(table, j), kvh, d);
        }
        out[(t * p.q_heads + h) * p.head_dim + d] = acc * inv;
    }
}

@compute @workgroup_size(64)
fn attention_f32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    attend(false, wg, nwg, li);
}

@compute @workgroup_size(64)
fn attention_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    attend(true, wg, nwg, li);
}
