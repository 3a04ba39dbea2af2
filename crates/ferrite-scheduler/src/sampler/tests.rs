use super::*;

use std::collections::BTreeSet;

fn with(f: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
    let mut p = SamplingParams { temperature: 1.0, seed: 7, ..Default::default() };
    f(&mut p);
    p
}

/// `n` draws, each from a fresh copy of `logits` (the params must have no penalties).
fn draws(params: &SamplingParams, logits: &[f32], n: usize) -> Vec<u32> {
    let mut s = Sampler::new(params.clone(), &[]);
    (0..n).map(|_| s.sample(&mut logits.to_vec(), 0).token).collect()
}

/// Every token's frequency within 5 standard deviations of `probs`; a token of probability 0 never drawn.
fn assert_follows(draws: &[u32], probs: &[f64]) {
    let n = draws.len() as f64;
    for (tok, &p) in probs.iter().enumerate() {
        let f = draws.iter().filter(|&&t| t as usize == tok).count() as f64 / n;
        if p == 0.0 {
            assert_eq!(f, 0.0, "token {tok} was cut but drawn");
        } else {
            assert!((f - p).abs() < 5.0 * (p * (1.0 - p) / n).sqrt(), "token {tok}: {f} vs {p}");
        }
    }
    assert!(draws.iter().all(|&t| (t as usize) < probs.len()));
}

fn ln(ps: &[f32]) -> Vec<f32> {
    ps.iter().map(|p| p.ln()).collect()
}

/// f64 log-softmax, the reference.
fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let m = logits.iter().map(|&l| f64::from(l)).fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = logits.iter().map(|&l| (f64::from(l) - m).exp()).sum();
    logits.iter().map(|&l| f64::from(l) - m - z.ln()).collect()
}

/// Deterministic pseudo-random logits in [-scale, scale).
fn random_logits(n: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-scale..scale)).collect()
}

#[test]
fn greedy_picks_the_first_maximum() {
    assert_eq!(argmax(&[0.1, 3.0, 3.0, -1.0]), 1);
    assert_eq!(argmax(&[f32::NAN, 1.0, f32::NAN, 1.0]), 1);
    assert_eq!(argmax(&[f32::NAN, f32::NAN]), 0);
    assert_eq!(argmax(&[]), 0);
    let mut s = Sampler::new(SamplingParams::default(), &[]);
    assert_eq!(s.sample(&mut [0.1, 3.0, 3.0, -1.0], 0).token, 1);
}

#[test]
fn greedy_equals_argmax_whatever_top_logprobs() {
    for seed in 0..20 {
        let mut logits = random_logits(3000, 8.0, seed);
        let m = argmax(&logits) as usize;
        logits[(m + 17) % 3000] = logits[m]; // a tie, possibly before the first maximum
        let expect = argmax(&logits);
        for k in [0, 1, 5, 200, 5000] {
            let mut s = Sampler::new(SamplingParams { seed, ..Default::default() }, &[1, 2, 3]);
            let got = s.sample(&mut logits.clone(), k);
            assert_eq!(got.token, expect, "seed {seed}, top_logprobs {k}");
            assert_eq!(got.top.len(), k.min(3000));
        }
    }
}

#[test]
fn seeded_sampling_is_reproducible_and_follows_the_distribution() {
    let logits = ln(&[0.1, 0.2, 0.7]);
    let params = with(|p| p.seed = 42);
    let a = draws(&params, &logits, 20000);
    assert_eq!(a, draws(&params, &logits, 20000));
    assert_ne!(a, draws(&with(|p| p.seed = 43), &logits, 20000));
    assert_follows(&a, &[0.1, 0.2, 0.7]);
    // Temperature 0.5 squares the probabilities: 1, 4, 49 out of 54.
    let b = draws(&with(|p| p.temperature = 0.5), &logits, 20000);
    assert_follows(&b, &[1.0 / 54.0, 4.0 / 54.0, 49.0 / 54.0]);
}

#[test]
fn penalized_sequences_are_reproducible() {
    let params = with(|p| (p.presence_penalty, p.frequency_penalty, p.repetition_penalty) = (0.5, 0.3, 1.2));
    let run = || {
        let mut s = Sampler::new(params.clone(), &[0, 1]);
        (0..200).map(|i| s.sample(&mut random_logits(50, 3.0, i), 2).token).collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn top_k_keeps_exactly_the_k_most_likely() {
    let logits = ln(&[0.1, 0.2, 0.3, 0.4]);
    assert_follows(&draws(&with(|p| p.top_k = 2), &logits, 20000), &[0.0, 0.0, 3.0 / 7.0, 4.0 / 7.0]);
    // Ties go to the lower id.
    assert_follows(&draws(&with(|p| p.top_k = 2), &[1.0, 1.0, 1.0, 0.0], 20000), &[0.5, 0.5, 0.0, 0.0]);
    // top_k = 1 is greedy; top_k >= vocab is off.
    assert!(draws(&with(|p| p.top_k = 1), &logits, 500).iter().all(|&t| t == 3));
    assert_follows(&draws(&with(|p| p.top_k = 9), &logits, 20000), &[0.1, 0.2, 0.3, 0.4]);
}

#[test]
fn top_p_keeps_the_smallest_set_reaching_p() {
    // A fifth, impossible token lets top_k = 4 take the sorted top-k path over the same distribution.
    let logits = ln(&[0.1, 0.2, 0.3, 0.4, 0.0]);
    for top_k in [0, 4] {
        // 0.4 + 0.3 >= 0.65; 0.4 + 0.3 < 0.75 <= 0.4 + 0.3 + 0.2.
        let d = draws(&with(|p| (p.top_p, p.top_k) = (0.65, top_k)), &logits, 20000);
        assert_follows(&d, &[0.0, 0.0, 3.0 / 7.0, 4.0 / 7.0, 0.0]);
        let d = draws(&with(|p| (p.top_p, p.top_k) = (0.75, top_k)), &logits, 20000);
        assert_follows(&d, &[0.0, 2.0 / 9.0, 3.0 / 9.0, 4.0 / 9.0, 0.0]);
        assert!(draws(&with(|p| (p.top_p, p.top_k) = (0.3, top_k)), &logits, 500).iter().all(|&t| t == 3));
    }
    // top_p applies to the distribution renormalised after top_k: 0.4 / 0.9 + 0.3 / 0.9 >= 0.75.
    let d = draws(&with(|p| (p.top_p, p.top_k) = (0.75, 3)), &logits, 20000);
    assert_follows(&d, &[0.0, 0.0, 3.0 / 7.0, 4.0 / 7.0, 0.0]);
}

#[test]
fn top_p_cuts_exactly_in_a_large_vocabulary() {
    // 300 equally likely tokens at scattered ids among 1700 unlikely ones: each has p = 1 / 300.077..., so
    // top_p = 0.5 needs 151 of them (150.04 worth), the lowest ids first; the rest is never drawn.
    let mut logits = vec![-10.0f32; 2000];
    let mut rng = StdRng::seed_from_u64(3);
    let mut high = BTreeSet::new();
    while high.len() < 300 {
        let i = rng.gen_range(0..2000);
        logits[i] = 0.0;
        high.insert(i as u32);
    }
    let keep: BTreeSet<u32> = high.iter().copied().take(151).collect();
    for top_k in [0, 1999] {
        let d = draws(&with(|p| (p.top_p, p.top_k) = (0.5, top_k)), &logits, 20000);
        assert_eq!(d.iter().copied().collect::<BTreeSet<_>>(), keep, "top_k {top_k}");
    }
}

#[test]
fn min_p_drops_tokens_below_a_fraction_of_the_most_likely() {
    let logits = ln(&[0.1, 0.2, 0.3, 0.4, 0.0]);
    for top_k in [0, 4] {
        // Threshold 0.6 * 0.4 = 0.24 keeps 0.3 and 0.4; 0.45 * 0.4 = 0.18 keeps 0.2 too.
        let d = draws(&with(|p| (p.min_p, p.top_k) = (0.6, top_k)), &logits, 20000);
        assert_follows(&d, &[0.0, 0.0, 3.0 / 7.0, 4.0 / 7.0, 0.0]);
        let d = draws(&with(|p| (p.min_p, p.top_k) = (0.45, top_k)), &logits, 20000);
        assert_follows(&d, &[0.0, 2.0 / 9.0, 3.0 / 9.0, 4.0 / 9.0, 0.0]);
        // min_p = 1 keeps only the maximum.
        assert!(draws(&with(|p| (p.min_p, p.top_k) = (1.0, top_k)), &logits, 500).iter().all(|&t| t == 3));
        // top_p before min_p: top_p = 0.75 over the full distribution keeps 0.4, 0.3, 0.2 (min_p first would
        // renormalise to 4/9 + 3/9 >= 0.75 and drop 0.2).
        let d = draws(&with(|p| (p.min_p, p.top_p, p.top_k) = (0.3, 0.75, top_k)), &logits, 20000);
        assert_follows(&d, &[0.0, 2.0 / 9.0, 3.0 / 9.0, 4.0 / 9.0, 0.0]);
    }
}

#[test]
fn presence_and_frequency_penalties_are_exact() {
    let params = SamplingParams { presence_penalty: 0.5, frequency_penalty: 0.25, ..Default::default() };
    let mut s = Sampler::new(params, &[0, 3]); // prompt tokens are not penalised by these
    for t in [1, 1, 2] {
        s.accept(t);
    }
    let mut logits = [1.0f32, 2.0, 3.0, -1.0];
    assert!(s.apply_penalties(&mut logits));
    assert_eq!(logits, [1.0, 2.0 - 2.0 * 0.25 - 0.5, 3.0 - 0.25 - 0.5, -1.0]);

    // Greedy flips away from a token once it was generated, and back once both were.
    let mut s = Sampler::new(SamplingParams { presence_penalty: 0.5, ..Default::default() }, &[]);
    let seq: Vec<u32> = (0..3).map(|_| s.sample(&mut [1.0, 1.2], 0).token).collect();
    assert_eq!(seq, [1, 0, 1]);
    // Frequency: 1.2 - 0.3 n drops below 1.0 after one, and 1.0 - 0.3 below 1.2 - 0.3 again.
    let mut s = Sampler::new(SamplingParams { frequency_penalty: 0.3, ..Default::default() }, &[]);
    let seq: Vec<u32> = (0..4).map(|_| s.sample(&mut [1.0, 1.2], 0).token).collect();
    assert_eq!(seq, [1, 0, 1, 0]);
    // A negative penalty encourages repeats; a forced token counts.
    let mut s = Sampler::new(SamplingParams { presence_penalty: -1.0, ..Default::default() }, &[]);
    s.accept(0);
    assert_eq!(s.sample(&mut [1.0, 1.5], 0).token, 0);
}

#[test]
fn repetition_penalty_covers_prompt_and_generated_tokens() {
    let params = SamplingParams { repetition_penalty: 2.0, ..Default::default() };
    let mut s = Sampler::new(params, &[0, 3, 3]);
    s.accept(2);
    s.accept(2);
    let mut logits = [2.0f32, 1.0, -1.0, -2.0, 0.5];
    s.apply_penalties(&mut logits);
    // Positive divided, negative multiplied, once per distinct token.
    assert_eq!(logits, [1.0, 1.0, -2.0, -4.0, 0.5]);

    // It flips greedy on a prompt token; the reported logprob is still the raw one.
    let mut s = Sampler::new(SamplingParams { repetition_penalty: 2.0, ..Default::default() }, &[0]);
    let got = s.sample(&mut [2.0, 1.5], 1);
    assert_eq!(got.token, 1);
    let reference = log_softmax(&[2.0, 1.5]);
    assert!((f64::from(got.logprob) - reference[1]).abs() < 1e-6);
    assert_eq!(got.top[0].0, 0);

    // Off (1.0) changes nothing; repetition comes before frequency: 4 / 2 - 1, not (4 - 1) / 2.
    let mut s = Sampler::new(SamplingParams::default(), &[0, 1]);
    let mut logits = [4.0f32, 1.0];
    assert!(!s.apply_penalties(&mut logits));
    assert_eq!(logits, [4.0, 1.0]);
    let params = SamplingParams { repetition_penalty: 2.0, frequency_penalty: 1.0, ..Default::default() };
    let mut s = Sampler::new(params, &[]);
    s.accept(0);
    let mut logits = [4.0f32, 1.0];
    s.apply_penalties(&mut logits);
    assert_eq!(logits, [1.0, 1.0]);
}

#[test]
fn logit_bias_forces_and_bans() {
    let logits = [5.0f32, 0.0, 1.0];
    let greedy = |bias: Vec<(u32, f32)>| {
        let mut s = Sampler::new(SamplingParams { logit_bias: bias, ..Default::default() }, &[]);
        s.sample(&mut logits.clone(), 0).token
    };
    assert_eq!(greedy(vec![(1, 100.0)]), 1);
    assert_eq!(greedy(vec![(0, -100.0)]), 2);
    assert_eq!(greedy(vec![(0, -100.0), (7, 100.0)]), 2); // an id outside the vocabulary is skipped
    let d = draws(&with(|p| p.logit_bias = vec![(0, -100.0)]), &logits, 20000);
    let p2 = 1.0f64.exp() / (1.0 + 1.0f64.exp());
    assert_follows(&d, &[0.0, 1.0 - p2, p2]);
    let d = draws(&with(|p| p.logit_bias = vec![(1, 100.0)]), &logits, 2000);
    assert!(d.iter().all(|&t| t == 1));
}

/// `top` is the reference's `k` best (by logit, ties by id) with their log-probabilities, and `lp` is the
/// reference's for `token`.
fn assert_logprobs(logits: &[f32], token: u32, lp: f32, top: &[(u32, f32)], k: usize) {
    let reference = log_softmax(logits);
    assert!((f64::from(lp) - reference[token as usize]).abs() < 1e-5, "{lp} vs {}", reference[token as usize]);
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
    let ids: Vec<u32> = top.iter().map(|e| e.0).collect();
    assert_eq!(ids, order[..k.min(logits.len())]);
    for &(id, v) in top {
        assert!((f64::from(v) - reference[id as usize]).abs() < 1e-5, "token {id}: {v}");
    }
}

#[test]
fn logprobs_match_a_f64_reference() {
    let mut logits = random_logits(3000, 12.0, 11);
    let m = argmax(&logits) as usize;
    logits[2999] = logits[m]; // tie at the top: lower id first
    logits[5] = logits[m];
    logits[100] = logits[200];
    let params = [
        SamplingParams::default(),
        with(|p| (p.top_k, p.top_p, p.min_p) = (40, 0.9, 0.05)),
        with(|p| (p.repetition_penalty, p.presence_penalty, p.logit_bias) = (1.3, 1.0, vec![(9, 30.0)])),
    ];
    for params in params {
        let mut s = Sampler::new(params.clone(), &[5, 9, 100]);
        for k in [0, 3, 20, 300] {
            let got = s.sample(&mut logits.clone(), k);
            assert_logprobs(&logits, got.token, got.logprob, &got.top, k);
        }
    }
    for (token, k) in [(0, 0), (5, 7), (2999, 1), (42, 200)] {
        let (lp, top) = token_logprobs(&logits, token, k);
        assert_logprobs(&logits, token, lp, &top, k);
    }
    let (lp, top) = token_logprobs(&[0.0, 1.0], 1, 9); // k past the vocabulary: all of it
    assert_logprobs(&[0.0, 1.0], 1, lp, &top, 2);
    assert_eq!(token_logprobs(&[0.0], 3, 0).0, f32::NEG_INFINITY);
}

#[test]
fn nan_and_infinite_logits_do_not_panic() {
    let logits = [f32::NAN, 1.0, f32::NAN, 0.5, f32::NEG_INFINITY];
    let params = [
        SamplingParams::default(),
        with(|_| ()),
        with(|p| p.top_k = 2),
        with(|p| p.top_p = 0.5),
        with(|p| p.min_p = 0.1),
        with(|p| (p.repetition_penalty, p.frequency_penalty) = (1.5, 1.0)),
    ];
    for params in params {
        let mut s = Sampler::new(params.clone(), &[0, 1]);
        for _ in 0..200 {
            let got = s.sample(&mut logits.clone(), 3);
            assert!(got.token == 1 || got.token == 3, "{params:?}: {got:?}");
            assert!(got.logprob.is_finite());
            assert_eq!(got.top[0].0, 1);
            assert_eq!(got.top[2].1, f32::NEG_INFINITY);
        }
        let got = s.sample(&mut [f32::NAN; 4], 2);
        assert_eq!(got.top.len(), 2);
        let got = s.sample(&mut [0.0, f32::INFINITY, 3.0], 1);
        assert_eq!((got.token, got.logprob), (1, 0.0));
        assert!(s.sample(&mut [], 1).top.is_empty());
    }
}

#[test]
fn a_large_vocabulary_samples_with_every_setting() {
    let logits = random_logits(262_144, 15.0, 5);
    let reference = log_softmax(&logits);
    let params = [with(|p| p.top_p = 0.95), with(|p| p.top_k = 50), with(|p| p.min_p = 0.05), with(|_| ())];
    for params in params {
        let mut s = Sampler::new(params, &[]);
        for _ in 0..5 {
            let got = s.sample(&mut logits.clone(), 5);
            assert!((f64::from(got.logprob) - reference[got.token as usize]).abs() < 1e-5);
        }
    }
}

#[test]
fn validate_names_the_offending_field() {
    let ok = SamplingParams {
        temperature: 2.0,
        top_p: 1.0,
        top_k: 5,
        min_p: 1.0,
        presence_penalty: -2.0,
        frequency_penalty: 2.0,
        repetition_penalty: 0.01,
        logit_bias: vec![(9, -100.0), (0, 100.0)],
        seed: 1,
    };
    assert_eq!(ok.validate(10), Ok(()));
    assert_eq!(SamplingParams::default().validate(1), Ok(()));
    type Case = (fn(&mut SamplingParams), &'static str);
    let cases: [Case; 18] = [
        (|p| p.temperature = -0.1, "temperature"),
        (|p| p.temperature = 2.01, "temperature"),
        (|p| p.temperature = f32::NAN, "temperature"),
        (|p| p.top_p = 0.0, "top_p"),
        (|p| p.top_p = 1.01, "top_p"),
        (|p| p.top_p = f32::NAN, "top_p"),
        (|p| p.min_p = -0.01, "min_p"),
        (|p| p.min_p = 1.5, "min_p"),
        (|p| p.presence_penalty = 2.5, "presence_penalty"),
        (|p| p.presence_penalty = f32::NEG_INFINITY, "presence_penalty"),
        (|p| p.frequency_penalty = -2.5, "frequency_penalty"),
        (|p| p.frequency_penalty = f32::NAN, "frequency_penalty"),
        (|p| p.repetition_penalty = 0.0, "repetition_penalty"),
        (|p| p.repetition_penalty = f32::INFINITY, "repetition_penalty"),
        (|p| p.logit_bias = vec![(10, 1.0)], "logit_bias"),
        (|p| p.logit_bias = vec![(1, 100.5)], "logit_bias"),
        (|p| p.logit_bias = vec![(1, -101.0)], "logit_bias"),
        (|p| p.logit_bias = vec![(1, f32::NAN)], "logit_bias"),
    ];
    for (break_it, param) in cases {
        let mut p = ok.clone();
        break_it(&mut p);
        let err = p.validate(10).expect_err(param);
        assert_eq!(err.param, param, "{err}");
        assert!(err.message.contains(param), "{err}");
    }
}

#[test]
fn exp_neg_is_accurate() {
    assert_eq!(exp_neg(0.0), 1.0);
    assert_eq!(exp_neg(f32::NEG_INFINITY), 0.0);
    assert_eq!(exp_neg(f32::NAN), 0.0);
    assert_eq!(exp_neg(-200.0), 0.0);
    let mut x = 0.0f32;
    while x > -87.0 {
        let (got, want) = (f64::from(exp_neg(x)), f64::from(x).exp());
        assert!((got - want).abs() <= 3e-7 * want, "exp({x}) = {got}, not {want}");
        x -= 0.0137;
    }
}
