// Dense attention of packed sequences without a cache (encoders, the diffusion transformer, the
// VAE's mid block): q [tokens, q_heads, d], k/v [tokens, kv_heads, d], an optional causal mask
// and an optional additive score bias [q_heads, side, side]. One workgroup of 64 threads per
// (token, head): keys go in chunks of 64 (one score per thread, via workgroup memory) through an
// online softmax; each thread accumulates output dims li, li + 64, .. (d <= 512).

struct Params {
    n: u32, hq: u32, hkv: u32, d: u32,
    q_off: u32, k_off: u32, v_off: u32, b_off: u32,
    side: u32, causal: u32, has_bias: u32, scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
// (first token, length) of each token's sequence.
@group(0) @binding(5) var<storage, read> seqs: array<u32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;
const PER_THREAD: u32 = 8u;
// Below every score: exp(FLOOR - m) is 0 for any real m, and a row of -inf scores stays at it.
const FLOOR: f32 = -3.0e38;

var<workgroup> scores: array<f32, 64>;
var<workgroup> shared_keys: u32;

@compute @workgroup_size(64)
fn attention_dense(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let item = wg.x + wg.y * nwg.x;
    if (item >= p.n * p.hq) { return; }
    let t = item / p.hq;
    let h = item % p.hq;
    let kvh = h / (p.hq / p.hkv);
    let s0 = seqs[2u * t];
    let i = t - s0;
    if (li == 0u) {
        shared_keys = select(seqs[2u * t + 1u], i + 1u, p.causal != 0u);
    }
    let keys = workgroupUniformLoad(&shared_keys);
    let qb = p.q_off + (t * p.hq + h) * p.d;
    var m = FLOOR;
    var l = 0.0;
    var acc: array<f32, 8>;
    for (var j0 = 0u; j0 < keys; j0 += WG) {
        let j = j0 + li;
        var s = FLOOR;
        if (j < keys) {
            let kb = p.k_off + ((s0 + j) * p.hkv + kvh) * p.d;
            var dot = 0.0;
            for (var e = 0u; e < p.d; e++) { dot += q[qb + e] * k[kb + e]; }
            s = dot * p.scale;
            if (p.has_bias != 0u) { s += bias[p.b_off + (h * p.side + i) * p.side + j]; }
            s = max(s, FLOOR);
        }
        scores[li] = s;
        workgroupBarrier();
        let count = min(WG, keys - j0);
        var cm = m;
        for (var c = 0u; c < count; c++) { cm = max(cm, scores[c]); }
        let corr = exp(m - cm);
        l *= corr;
        for (var r = 0u; r < PER_THREAD; r++) { acc[r] *= corr; }
        for (var c = 0u; c < count; c++) {
            var w = 0.0;
            if (scores[c] > FLOOR) { w = exp(scores[c] - cm); }
            l += w;
            let vb = p.v_off + ((s0 + j0 + c) * p.hkv + kvh) * p.d;
            for (var r = 0u; r < PER_THREAD; r++) {
                let e = li + r * WG;
                if (e < p.d) { acc[r] += w * v[vb + e]; }
            }
        }
        m = cm;
        workgroupBarrier();
    }
    let ob = (t * p.hq + h) * p.d;
    for (var r = 0u; r < PER_THREAD; r++) {
        let e = li + r * WG;
        if (e < p.d) { out[ob + e] = select(0.0, acc[r] / l, l > 0.0); }
    }
}
