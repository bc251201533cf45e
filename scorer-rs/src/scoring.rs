//! Normalisation, the score formula and top-k selection.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::sync::OnceLock;

use crate::catalogue::Catalogue;
use crate::constraints::{Check, Compiled, Constraint, Constraints};
use crate::engine::State;
use crate::error::ScoreError;

/// Expected costs below this (USD) count as this on the log scale. The floor of a ranking is the
/// cheapest paid eligible model's cost (free models count as it), and never below this.
pub const COST_FLOOR_USD: f64 = 1e-9;

/// Expected latencies below this (seconds) count as this on the log scale.
pub const LATENCY_FLOOR_S: f64 = 1e-3;

/// The latency term is 1 at the fastest eligible model and falls to 0 at `LATENCY_SPAN` times
/// that (or at the slowest eligible model, if that is nearer): five doublings, each worth a
/// fifth of the term. So no figure at the slow end squeezes the differences that matter; and
/// among at least `LATENCY_OUTLIER_POOL` eligible models the scale starts no lower than
/// `1 / LATENCY_OUTLIER` of the `LATENCY_RANK`-th fastest one's latency, so one or two
/// implausibly fast figures score 1 but cannot push every other model to the bottom.
pub const LATENCY_SPAN: f64 = 32.0;
pub const LATENCY_RANK: usize = 3;
pub const LATENCY_OUTLIER: f64 = 2.0;
pub const LATENCY_OUTLIER_POOL: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Weights {
    pub latency: f64,
    pub cost: f64,
    pub quality: f64,
}

impl Weights {
    /// Validates caller weights and scales them to sum to one.
    pub fn normalised(latency: f64, cost: f64, quality: f64) -> Result<Weights, ScoreError> {
        for (w, name) in [(latency, "latency"), (cost, "cost"), (quality, "quality")] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(ScoreError::InvalidRequest(format!(
                    "weight {name} must be a non-negative number, got {w}"
                )));
            }
        }
        let sum = latency + cost + quality;
        if sum <= 0.0 {
            return Err(ScoreError::InvalidRequest(
                "weights must not all be zero".to_string(),
            ));
        }
        if !sum.is_finite() {
            return Err(ScoreError::InvalidRequest(
                "weights must sum to a finite number".to_string(),
            ));
        }
        // Weights that already sum to 1 (the named modes) are kept exactly as given.
        if (sum - 1.0).abs() <= 1e-12 {
            return Ok(Weights {
                latency,
                cost,
                quality,
            });
        }
        Ok(Weights {
            latency: latency / sum,
            cost: cost / sum,
            quality: quality / sum,
        })
    }
}

/// The named routing modes and their weights (latency, cost, quality).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Speed,
    Cost,
    Quality,
    Balanced,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Speed, Mode::Cost, Mode::Quality, Mode::Balanced];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Speed => "speed",
            Mode::Cost => "cost",
            Mode::Quality => "quality",
            Mode::Balanced => "balanced",
        }
    }

    pub fn weights(self) -> Weights {
        let (latency, cost, quality) = match self {
            Mode::Speed => (0.70, 0.20, 0.10),
            Mode::Cost => (0.20, 0.70, 0.10),
            Mode::Quality => (0.10, 0.20, 0.70),
            Mode::Balanced => (1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0),
        };
        Weights {
            latency,
            cost,
            quality,
        }
    }
}

/// Expected size of the request being routed, in tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    pub prompt_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub index: usize,
    pub score: f64,
    pub latency_term: f64,
    pub cost_term: f64,
    pub quality_term: f64,
    pub expected_cost_usd: f64,
    pub expected_latency_s: f64,
    /// The figures the latency came from.
    pub ttft_s: f64,
    pub tokens_per_s: f64,
}

/// The bounds one request's terms were normalised against: term 1 at the first of each pair,
/// term 0 at the second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalisation {
    pub latency_min_s: f64,
    pub latency_max_s: f64,
    pub cost_floor_usd: f64,
    pub cost_max_usd: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ranking {
    pub candidates: Vec<Candidate>,
    pub eligible: usize,
    pub removed: Vec<(Constraint, usize)>,
    pub weights: Weights,
    pub normalisation: Normalisation,
}

/// Bits of the mantissa that index the table of `approx_ln`.
const LN_TABLE_BITS: u32 = 10;

/// Bound on |approx_ln(x) − ln(x)| for every positive normal x: the table holds ln at the
/// middle of each of its 1024 mantissa intervals, so the error is at most ln(1 + 1/2048) ≈ 4.9e-4.
pub const APPROX_LN_ERROR: f64 = 1e-3;

type LnTable = [f64; 1 << LN_TABLE_BITS];

fn ln_table() -> &'static LnTable {
    static TABLE: OnceLock<LnTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let size = f64::from(1u32 << LN_TABLE_BITS);
        std::array::from_fn(|i| (1.0 + (i as f64 + 0.5) / size).ln())
    })
}

/// ln for positive normal x within `APPROX_LN_ERROR`, for the price of a table lookup: the
/// exponent gives the multiple of ln 2, the top bits of the mantissa the rest.
#[inline]
pub fn approx_ln(table: &LnTable, x: f64) -> f64 {
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let slot = ((bits >> (52 - LN_TABLE_BITS)) & ((1 << LN_TABLE_BITS) - 1)) as usize;
    exponent as f64 * std::f64::consts::LN_2 + table[slot]
}

/// Min–max normalisation that maps a degenerate range to zero instead of dividing by it.
#[inline]
fn normalise(x: f64, min: f64, max: f64) -> f64 {
    if max > min {
        (x - min) / (max - min)
    } else {
        0.0
    }
}

/// Best first; equal scores (−0 and 0 alike) fall back to the model id so every decision is
/// replayable.
fn better(cat: &Catalogue, a: &Candidate, b: &Candidate) -> Ordering {
    if a.score == b.score {
        cat.ids[a.index].cmp(&cat.ids[b.index])
    } else {
        b.score.total_cmp(&a.score)
    }
}

/// Scratch space of one ranking, reused across calls on a thread.
#[derive(Default)]
struct Pool {
    /// Catalogue indices of the eligible models.
    index: Vec<u32>,
    /// Every model's expected latency and its `approx_ln` (above `LATENCY_FLOOR_S`), for one
    /// set of figures and one output size (the key): most requests share the default
    /// profile, and figures change far less often than requests come.
    latency: Vec<f64>,
    log_latency: Vec<f64>,
    latency_key: Option<(u64, u64)>,
    estimate: Vec<f64>,
    scratch: Vec<f64>,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// What one request makes of each model, and the normalisation bounds over the eligible set,
/// both on a log scale.
struct Terms<'a> {
    state: &'a State,
    prompt: f64,
    output: f64,
    log_cost_min: f64,
    log_cost_max: f64,
    log_latency_min: f64,
    log_latency_max: f64,
    bounds: Normalisation,
}

impl Terms<'_> {
    #[inline]
    fn cost(&self, i: usize) -> f64 {
        let cat = &self.state.catalogue;
        self.prompt * cat.prompt_price[i] + self.output * cat.completion_price[i]
    }

    #[inline]
    fn latency(&self, i: usize) -> f64 {
        let live = &self.state.live;
        live.ttft_s[i] + self.output / live.tokens_per_s[i]
    }

    fn candidate(&self, i: usize, weights: Weights) -> Candidate {
        let cost = self.cost(i);
        let latency = self.latency(i);
        let latency_term = 1.0
            - normalise(
                latency.max(LATENCY_FLOOR_S).ln(),
                self.log_latency_min,
                self.log_latency_max,
            )
            .clamp(0.0, 1.0);
        let cost_term = 1.0
            - normalise(
                cost.ln().max(self.log_cost_min),
                self.log_cost_min,
                self.log_cost_max,
            );
        let quality_term = self.state.catalogue.quality[i];
        Candidate {
            index: i,
            score: weights.latency * latency_term
                + weights.cost * cost_term
                + weights.quality * quality_term,
            latency_term,
            cost_term,
            quality_term,
            expected_cost_usd: cost,
            expected_latency_s: latency,
            ttft_s: self.state.live.ttft_s[i],
            tokens_per_s: self.state.live.tokens_per_s[i],
        }
    }
}

/// The eligible set's bounds as `filter_eligible` found them.
struct Bounds {
    eligible: usize,
    cost_paid_min: f64,
    cost_max: f64,
    latency_min: f64,
    latency_max: f64,
}

/// The request's constraints bound to `state`, handed to `f`.
fn with_check<R>(
    state: &State,
    profile: Profile,
    constraints: &Constraints,
    f: impl FnOnce(&Check<'_>) -> R,
) -> Result<R, ScoreError> {
    let compiled = Compiled::new(constraints, &state.catalogue)?;
    let needed_context = constraints
        .min_context
        .max(profile.prompt_tokens.saturating_add(profile.output_tokens));
    Ok(f(&compiled.bind(state, needed_context)))
}

pub fn rank(
    state: &State,
    weights: Weights,
    profile: Profile,
    constraints: &Constraints,
    top_k: usize,
) -> Result<Ranking, ScoreError> {
    if top_k == 0 {
        return Err(ScoreError::InvalidRequest(
            "top_k must be at least 1".to_string(),
        ));
    }
    with_check(state, profile, constraints, |check| {
        POOL.with_borrow_mut(|pool| rank_with(pool, state, check, weights, profile, top_k))
    })?
}

/// Where one model stands in a request's whole ranking, beside the winner.
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    pub winner: Candidate,
    /// None when a constraint removed the subject.
    pub subject: Option<Candidate>,
    /// 1 for the winner; 0 when a constraint removed the subject.
    pub rank: usize,
    pub excluded_by: Option<Constraint>,
    pub eligible: usize,
    pub weights: Weights,
    pub normalisation: Normalisation,
}

/// Rank every eligible model for the request and find model `subject` (a catalogue index)
/// among them, or the constraint that removed it.
pub fn explain(
    state: &State,
    weights: Weights,
    profile: Profile,
    constraints: &Constraints,
    subject: usize,
) -> Result<Explanation, ScoreError> {
    let mut full = rank(state, weights, profile, constraints, state.catalogue.len())?;
    let position = full.candidates.iter().position(|c| c.index == subject);
    let excluded_by = match position {
        Some(_) => None,
        None => with_check(state, profile, constraints, |check| {
            let cat = &state.catalogue;
            let cost = profile.prompt_tokens as f64 * cat.prompt_price[subject]
                + profile.output_tokens as f64 * cat.completion_price[subject];
            check.first_failure(subject, cost)
        })?,
    };
    let subject = position.map(|p| full.candidates[p].clone());
    Ok(Explanation {
        winner: full.candidates.swap_remove(0),
        subject,
        rank: position.map_or(0, |p| p + 1),
        excluded_by,
        eligible: full.eligible,
        weights: full.weights,
        normalisation: full.normalisation,
    })
}

fn rank_with(
    pool: &mut Pool,
    state: &State,
    check: &Check<'_>,
    weights: Weights,
    profile: Profile,
    top_k: usize,
) -> Result<Ranking, ScoreError> {
    let cat = &*state.catalogue;
    let n = cat.len();
    assert!(n <= u32::MAX as usize, "catalogue larger than u32 indices");
    let mut removed = [0usize; Constraint::ALL.len()];
    let output = profile.output_tokens as f64;
    cache_latencies(pool, state, output);
    let bounds = filter_eligible(
        &mut pool.index,
        &pool.latency,
        state,
        check,
        profile.prompt_tokens as f64,
        output,
        &mut removed,
    );
    let eligible = bounds.eligible;
    let removed: Vec<(Constraint, usize)> = Constraint::ALL
        .iter()
        .zip(removed)
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| (*c, n))
        .collect();
    pool.index.truncate(eligible);
    if eligible == 0 {
        return Err(ScoreError::NoEligibleModel(removed));
    }
    // Infinite when no paid model is eligible: every cost then counts as the floor.
    let cost_floor = if bounds.cost_paid_min.is_finite() {
        bounds.cost_paid_min.max(COST_FLOOR_USD)
    } else {
        COST_FLOOR_USD
    };
    let latency_min =
        latency_start(&pool.index, &pool.latency, bounds.latency_min).max(LATENCY_FLOOR_S);
    let latency_max = bounds
        .latency_max
        .max(LATENCY_FLOOR_S)
        .min(latency_min * LATENCY_SPAN);
    let cost_max = bounds.cost_max.max(cost_floor);
    let terms = Terms {
        state,
        prompt: profile.prompt_tokens as f64,
        output,
        log_cost_min: cost_floor.ln(),
        log_cost_max: cost_max.ln(),
        log_latency_min: latency_min.ln(),
        log_latency_max: latency_max.ln(),
        bounds: Normalisation {
            latency_min_s: latency_min,
            latency_max_s: latency_max,
            cost_floor_usd: cost_floor,
            cost_max_usd: cost_max,
        },
    };
    let mut best: Vec<Candidate> = if eligible <= top_k {
        pool.index
            .iter()
            .map(|&i| terms.candidate(i as usize, weights))
            .collect()
    } else {
        shortlist(pool, &terms, weights, top_k)
            .map(|i| terms.candidate(i, weights))
            .collect()
    };
    if best.len() > top_k {
        best.select_nth_unstable_by(top_k - 1, |a, b| better(cat, a, b));
        best.truncate(top_k);
    }
    best.sort_unstable_by(|a, b| better(cat, a, b));
    Ok(Ranking {
        candidates: best,
        eligible,
        removed,
        weights,
        normalisation: terms.bounds,
    })
}

/// Fills `index` with the models that pass the constraints, counts the others in `removed`,
/// and returns how many passed with the bounds of their expected cost and latency.
/// Kept out of line: a small loop of its own keeps its figures in registers.
#[inline(never)]
fn filter_eligible(
    index: &mut Vec<u32>,
    latencies: &[f64],
    state: &State,
    check: &Check<'_>,
    prompt: f64,
    output: f64,
    removed: &mut [usize; Constraint::ALL.len()],
) -> Bounds {
    let cat = &*state.catalogue;
    let n = cat.len();
    index.resize(n, 0);
    let index = &mut index[..n];
    let (prompt_price, completion_price) = (&cat.prompt_price[..n], &cat.completion_price[..n]);
    let latencies = &latencies[..n];
    // Eligible costs and latencies are finite and never negative, so their bit patterns order
    // like their values: integer min and max are exact here, and cheaper than f64's. A free
    // model's cost (0) maps to u64::MAX for the paid minimum.
    let (mut cost_paid_min, mut cost_max) = (u64::MAX, 0u64);
    let (mut latency_min, mut latency_max) = (u64::MAX, 0u64);
    let mut eligible = 0;
    for i in 0..n {
        // The arithmetic of `Terms::cost`, on pre-sliced columns.
        let cost = prompt * prompt_price[i] + output * completion_price[i];
        if let Some(c) = check.first_failure(i, cost) {
            removed[c as usize] += 1;
            continue;
        }
        let (cost, latency) = (cost.to_bits(), latencies[i].to_bits());
        cost_paid_min = cost_paid_min.min(cost.wrapping_sub(1));
        cost_max = cost_max.max(cost);
        latency_min = latency_min.min(latency);
        latency_max = latency_max.max(latency);
        index[eligible] = i as u32;
        eligible += 1;
    }
    Bounds {
        eligible,
        cost_paid_min: if cost_paid_min == u64::MAX {
            f64::INFINITY
        } else {
            f64::from_bits(cost_paid_min + 1)
        },
        cost_max: f64::from_bits(cost_max),
        latency_min: f64::from_bits(latency_min),
        latency_max: f64::from_bits(latency_max),
    }
}

/// 1 / range, or 0 for a degenerate range (whose terms are all 1).
#[inline]
fn scale(min: f64, max: f64) -> f64 {
    if max > min {
        1.0 / (max - min)
    } else {
        0.0
    }
}

/// Catalogue indices that may belong to the top k. Every score is first estimated with the
/// cheap logarithm, within a known error; a model whose estimate falls more than twice that
/// error below the k-th best estimate cannot make the top k, so only the rest are scored exactly.
fn shortlist<'p>(
    pool: &'p mut Pool,
    terms: &Terms<'_>,
    weights: Weights,
    top_k: usize,
) -> impl Iterator<Item = usize> + 'p {
    let cost_scale = scale(terms.log_cost_min, terms.log_cost_max);
    let latency_scale = scale(terms.log_latency_min, terms.log_latency_max);
    // The logarithm's error in both log terms (clamping only shrinks it), and rounding: the
    // estimate multiplies where the score divides.
    let slack =
        (weights.cost * cost_scale + weights.latency * latency_scale) * APPROX_LN_ERROR + 1e-9;
    estimate_scores(pool, terms, weights);
    let cutoff = kth_largest(&pool.estimate, &mut pool.scratch, top_k) - 2.0 * slack;
    let (index, estimate) = (&pool.index, &pool.estimate);
    index
        .iter()
        .zip(estimate)
        .filter(move |(_, e)| **e >= cutoff)
        .map(|(&i, _)| i as usize)
}

/// Fills `pool.latency` and `pool.log_latency`, by catalogue index, unless they already hold
/// them for these figures and this output size.
fn cache_latencies(pool: &mut Pool, state: &State, output: f64) {
    let key = (state.live.figures_id, output.to_bits());
    if pool.latency_key == Some(key) {
        return;
    }
    let live = &state.live;
    let table = ln_table();
    pool.latency.clear();
    pool.log_latency.clear();
    for (ttft, rate) in live.ttft_s.iter().zip(&live.tokens_per_s) {
        // The arithmetic of `Terms::latency`.
        let latency = ttft + output / rate;
        let floored = if latency > LATENCY_FLOOR_S {
            latency
        } else {
            LATENCY_FLOOR_S
        };
        pool.latency.push(latency);
        pool.log_latency.push(approx_ln(table, floored));
    }
    pool.latency_key = Some(key);
}

/// Where the latency scale starts for the eligible models: at the fastest one's latency or,
/// among `LATENCY_OUTLIER_POOL` models or more, at `1 / LATENCY_OUTLIER` of the
/// `LATENCY_RANK`-th fastest's if that is more. That is the fastest's whenever `LATENCY_RANK`
/// models are within `LATENCY_OUTLIER` times it, which a short scan usually finds.
fn latency_start(index: &[u32], latency: &[f64], fastest: f64) -> f64 {
    if index.len() < LATENCY_OUTLIER_POOL {
        return fastest;
    }
    let near = fastest * LATENCY_OUTLIER;
    let mut found = 0;
    for &i in index {
        if latency[i as usize] <= near {
            found += 1;
            if found == LATENCY_RANK {
                return fastest;
            }
        }
    }
    // The fastest is an outlier: the scale starts below the `LATENCY_RANK`-th fastest. Latencies
    // are finite and never negative, so their bits order like them.
    let mut ranked = [u64::MAX; LATENCY_RANK];
    for &i in index {
        let mut bits = latency[i as usize].to_bits();
        for slot in ranked.iter_mut() {
            if bits < *slot {
                std::mem::swap(&mut bits, slot);
            }
        }
    }
    f64::from_bits(ranked[LATENCY_RANK - 1]) / LATENCY_OUTLIER
}

/// Scores of the eligible models, estimated with `approx_ln` instead of the exact logarithm.
#[inline(never)]
fn estimate_scores(pool: &mut Pool, terms: &Terms<'_>, weights: Weights) {
    let cat = &*terms.state.catalogue;
    let n = cat.len();
    let (prompt_price, completion_price) = (&cat.prompt_price[..n], &cat.completion_price[..n]);
    let quality = &cat.quality[..n];
    let (prompt, output) = (terms.prompt, terms.output);
    let cost_scale = scale(terms.log_cost_min, terms.log_cost_max);
    let latency_scale = scale(terms.log_latency_min, terms.log_latency_max);
    let (log_cost_min, log_latency_min) = (terms.log_cost_min, terms.log_latency_min);
    let cost_floor = terms.bounds.cost_floor_usd;
    let table = ln_table();
    let log_latency = &pool.log_latency[..n];
    pool.estimate.resize(pool.index.len(), 0.0);
    // Plain comparisons rather than f64::max and min, which also handle NaN (none here).
    for (estimate, &i) in pool.estimate.iter_mut().zip(&pool.index) {
        let i = i as usize;
        let cost = prompt * prompt_price[i] + output * completion_price[i];
        let cost = if cost > cost_floor { cost } else { cost_floor };
        let cost_term = 1.0 - (approx_ln(table, cost) - log_cost_min) * cost_scale;
        let slowness = (log_latency[i] - log_latency_min) * latency_scale;
        let slowness = if slowness > 0.0 { slowness } else { 0.0 };
        let latency_term = 1.0 - if slowness < 1.0 { slowness } else { 1.0 };
        *estimate = weights.latency * latency_term
            + weights.cost * cost_term
            + weights.quality * quality[i];
    }
}

/// The k-th largest value (1 ≤ k ≤ len).
fn kth_largest(values: &[f64], scratch: &mut Vec<f64>, k: usize) -> f64 {
    if k == 1 {
        return values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    }
    scratch.clear();
    scratch.extend_from_slice(values);
    *scratch
        .select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a))
        .1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::tests::spec;
    use crate::catalogue::{Kind, ModelSpec};
    use crate::constraints::FreeFilter;

    fn state(specs: Vec<ModelSpec>) -> State {
        State::fresh(Catalogue::new("v", specs).unwrap())
    }

    fn expected_cost(cat: &Catalogue, i: usize, p: Profile) -> f64 {
        p.prompt_tokens as f64 * cat.prompt_price[i]
            + p.output_tokens as f64 * cat.completion_price[i]
    }

    fn expected_latency(cat: &Catalogue, i: usize, p: Profile) -> f64 {
        cat.ttft_s[i] + p.output_tokens as f64 / cat.tokens_per_s[i]
    }

    const PROFILE: Profile = Profile {
        prompt_tokens: 1000,
        output_tokens: 500,
    };

    fn ids(st: &State, r: &Ranking) -> Vec<String> {
        r.candidates
            .iter()
            .map(|c| st.catalogue.ids[c.index].clone())
            .collect()
    }

    fn trio() -> State {
        state(trio_specs())
    }

    fn trio_specs() -> Vec<ModelSpec> {
        vec![
            ModelSpec {
                ttft_s: 0.1,
                tokens_per_s: 300.0,
                quality: 0.3,
                ..spec("fast/small")
            },
            ModelSpec {
                prompt_price: 0.0,
                completion_price: 0.0,
                ttft_s: 2.0,
                quality: 0.2,
                ..spec("free/model")
            },
            ModelSpec {
                prompt_price: 1e-5,
                completion_price: 5e-5,
                ttft_s: 1.5,
                tokens_per_s: 40.0,
                quality: 0.9,
                ..spec("big/frontier")
            },
        ]
    }

    #[test]
    fn formula_by_hand() {
        let st = trio();
        let cat = &*st.catalogue;
        let w = Mode::Balanced.weights();
        let r = rank(&st, w, PROFILE, &Constraints::default(), 3).unwrap();
        let lat: Vec<f64> = (0..3)
            .map(|i| expected_latency(cat, i, PROFILE).ln())
            .collect();
        let cost: Vec<f64> = (0..3).map(|i| expected_cost(cat, i, PROFILE)).collect();
        // Latency spans less than LATENCY_SPAN here, the fastest is no outlier; the free
        // model's cost is floored at the cheapest paid one's (fast/small).
        let (lmin, lmax) = (lat[0], lat[2]);
        let (cmin, cmax) = (cost[0].ln(), cost[2].ln());
        assert_eq!(
            r.normalisation,
            Normalisation {
                latency_min_s: expected_latency(cat, 0, PROFILE),
                latency_max_s: expected_latency(cat, 2, PROFILE),
                cost_floor_usd: cost[0],
                cost_max_usd: cost[2],
            }
        );
        for c in &r.candidates {
            let i = c.index;
            let want_lat = 1.0 - (lat[i] - lmin) / (lmax - lmin);
            let want_cost = 1.0 - (cost[i].ln().max(cmin) - cmin) / (cmax - cmin);
            let want = (want_lat + want_cost + cat.quality[i]) / 3.0;
            assert!((c.latency_term - want_lat).abs() < 1e-12);
            assert!((c.cost_term - want_cost).abs() < 1e-12);
            assert!((c.score - want).abs() < 1e-12, "{} {}", c.score, want);
        }
    }

    #[test]
    fn latency_beyond_the_span_scores_zero_and_outliers_cannot_squeeze_it() {
        let quick = |id: &str, ttft_s: f64| ModelSpec {
            ttft_s,
            tokens_per_s: 1e6,
            ..spec(id)
        };
        let mut specs = vec![
            // Two implausibly fast figures, then the real fastest.
            quick("bogus/one", 1e-3),
            quick("bogus/two", 2e-3),
            quick("quick/one", 1.0),
            quick("quick/two", 2.0),
            ModelSpec {
                ttft_s: 2.0 * LATENCY_SPAN,
                ..spec("slow/one")
            },
            ModelSpec {
                ttft_s: 1e4,
                ..spec("glacial/one")
            },
        ];
        let few = state(specs.clone());
        let r = rank(
            &few,
            Mode::Speed.weights(),
            PROFILE,
            &Constraints::default(),
            1,
        )
        .unwrap();
        assert_eq!(
            r.normalisation.latency_min_s,
            expected_latency(&few.catalogue, 0, PROFILE),
            "too few models to call any an outlier"
        );
        for k in specs.len()..LATENCY_OUTLIER_POOL {
            specs.push(quick(&format!("more/m{k}"), 40.0));
        }
        let st = state(specs);
        let r = rank(
            &st,
            Mode::Speed.weights(),
            PROFILE,
            &Constraints::default(),
            LATENCY_OUTLIER_POOL,
        )
        .unwrap();
        let start = expected_latency(&st.catalogue, 2, PROFILE) / LATENCY_OUTLIER;
        assert_eq!(r.normalisation.latency_min_s, start);
        assert_eq!(r.normalisation.latency_max_s, start * LATENCY_SPAN);
        let terms: Vec<(String, f64)> = r
            .candidates
            .iter()
            .map(|c| (st.catalogue.ids[c.index].clone(), c.latency_term))
            .collect();
        let term = |id: &str| terms.iter().find(|(i, _)| i == id).unwrap().1;
        assert_eq!((term("bogus/one"), term("bogus/two")), (1.0, 1.0));
        // One and two doublings above the start: a fifth and two fifths off.
        assert!((term("quick/one") - 0.8).abs() < 1e-3);
        assert!((term("quick/two") - 0.6).abs() < 1e-3);
        assert_eq!((term("slow/one"), term("glacial/one")), (0.0, 0.0));
    }

    #[test]
    fn modes_pick_what_they_promise() {
        let st = trio();
        let best = |m: Mode| {
            let r = rank(&st, m.weights(), PROFILE, &Constraints::default(), 1).unwrap();
            ids(&st, &r)[0].clone()
        };
        assert_eq!(best(Mode::Speed), "fast/small");
        // Free is worth no more than the cheapest paid model: fast/small is both that and faster.
        assert_eq!(best(Mode::Cost), "fast/small");
        assert_eq!(best(Mode::Quality), "big/frontier");
    }

    #[test]
    fn a_free_model_wins_on_its_other_terms_or_not_at_all() {
        let paid = spec("paid/model");
        let free = |quality: f64| ModelSpec {
            prompt_price: 0.0,
            completion_price: 0.0,
            quality,
            ..spec("free/model")
        };
        let dear = ModelSpec {
            prompt_price: 1e-4,
            completion_price: 1e-4,
            ..spec("dear/model")
        };
        let best = |specs: Vec<ModelSpec>| {
            let st = state(specs);
            let r = rank(
                &st,
                Mode::Cost.weights(),
                PROFILE,
                &Constraints::default(),
                2,
            )
            .unwrap();
            assert_eq!(r.candidates[0].cost_term, r.candidates[1].cost_term);
            ids(&st, &r)[0].clone()
        };
        // Equal otherwise: a tie, broken by id.
        assert_eq!(
            best(vec![paid.clone(), free(0.5), dear.clone()]),
            "free/model"
        );
        assert_eq!(
            best(vec![paid.clone(), free(0.4), dear.clone()]),
            "paid/model"
        );
        assert_eq!(best(vec![paid, free(0.6), dear]), "free/model");
    }

    #[test]
    fn mode_weights_are_the_published_ones() {
        let w = Mode::Speed.weights();
        assert_eq!((w.latency, w.cost, w.quality), (0.70, 0.20, 0.10));
        let w = Mode::Cost.weights();
        assert_eq!((w.latency, w.cost, w.quality), (0.20, 0.70, 0.10));
        let w = Mode::Quality.weights();
        assert_eq!((w.latency, w.cost, w.quality), (0.10, 0.20, 0.70));
        let w = Mode::Balanced.weights();
        assert_eq!(
            (w.latency, w.cost, w.quality),
            (1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0)
        );
    }

    #[test]
    fn weights_are_validated_and_normalised() {
        let w = Weights::normalised(2.0, 1.0, 1.0).unwrap();
        assert_eq!((w.latency, w.cost, w.quality), (0.5, 0.25, 0.25));
        let speed = Mode::Speed.weights();
        assert_eq!(Weights::normalised(0.70, 0.20, 0.10).unwrap(), speed);
        assert!(Weights::normalised(-1.0, 1.0, 1.0).is_err());
        assert!(Weights::normalised(0.0, 0.0, 0.0).is_err());
        assert!(Weights::normalised(f64::NAN, 1.0, 1.0).is_err());
        assert!(Weights::normalised(1e308, 1e308, 1e308).is_err());
    }

    #[test]
    fn single_model_scores_without_dividing_by_zero() {
        let st = state(vec![spec("only/one")]);
        let r = rank(
            &st,
            Mode::Speed.weights(),
            PROFILE,
            &Constraints::default(),
            5,
        )
        .unwrap();
        let c = &r.candidates[0];
        assert_eq!((c.latency_term, c.cost_term), (1.0, 1.0));
        assert!((c.score - (0.9 + 0.1 * 0.5)).abs() < 1e-12);
    }

    #[test]
    fn ties_break_on_model_id() {
        let st = state(vec![spec("z/z"), spec("a/a"), spec("m/m")]);
        let r = rank(
            &st,
            Mode::Balanced.weights(),
            PROFILE,
            &Constraints::default(),
            2,
        )
        .unwrap();
        assert_eq!(ids(&st, &r), vec!["a/a", "m/m"]);
        assert_eq!(r.eligible, 3);
    }

    #[test]
    fn constraints_remove_and_are_counted() {
        let st = state(vec![
            ModelSpec {
                prompt_price: -1.0,
                completion_price: -1.0,
                ..spec("openrouter/auto")
            },
            ModelSpec {
                context_length: 1000,
                ..spec("tiny/ctx")
            },
            ModelSpec {
                input_modalities: vec!["text".into(), "image".into()],
                ..spec("see/vision")
            },
            spec("plain/text"),
        ]);
        let cons = Constraints {
            input_modalities: vec!["image".into()],
            ..Constraints::default()
        };
        let r = rank(&st, Mode::Cost.weights(), PROFILE, &cons, 5).unwrap();
        assert_eq!(ids(&st, &r), vec!["see/vision"]);
        assert_eq!(
            r.removed,
            vec![
                (Constraint::DynamicPrice, 1),
                (Constraint::ContextWindow, 1),
                (Constraint::InputModalities, 1)
            ]
        );
    }

    #[test]
    fn empty_set_is_an_error_naming_the_constraints() {
        let st = state(vec![spec("a/a"), spec("b/b")]);
        let cons = Constraints {
            deny_models: vec!["a/*".into()],
            required_parameters: vec!["no-such-parameter".into()],
            ..Constraints::default()
        };
        let err = rank(&st, Mode::Cost.weights(), PROFILE, &cons, 1).unwrap_err();
        assert_eq!(
            err,
            ScoreError::NoEligibleModel(vec![(Constraint::RequiredParameters, 2)])
        );
        assert!(err.to_string().contains("required_parameters: 2"));
    }

    #[test]
    fn bad_requests_are_refused() {
        let st = trio();
        let w = Mode::Cost.weights();
        assert!(rank(&st, w, PROFILE, &Constraints::default(), 0).is_err());
        for cons in [
            Constraints {
                input_modalities: vec!["smell".into()],
                ..Constraints::default()
            },
            Constraints {
                max_request_cost_usd: Some(-1.0),
                ..Constraints::default()
            },
            Constraints {
                allow_models: vec!["*".into()],
                ..Constraints::default()
            },
        ] {
            assert!(matches!(
                rank(&st, w, PROFILE, &cons, 1),
                Err(ScoreError::InvalidRequest(_))
            ));
        }
    }

    #[test]
    fn chat_routes_take_chat_models_unless_the_request_widens_them() {
        let st = state(vec![
            spec("plain/chat"),
            ModelSpec {
                output_modalities: vec!["image".into(), "text".into()],
                ..spec("paint/pictures")
            },
            ModelSpec {
                output_modalities: vec!["audio".into()],
                ..spec("sing/songs")
            },
            ModelSpec {
                kind: Kind::MetaRouter,
                ..spec("openrouter/free")
            },
            ModelSpec {
                kind: Kind::Guard,
                ..spec("meta/guard")
            },
        ]);
        let route = |c: Constraints| {
            rank(&st, Mode::Balanced.weights(), PROFILE, &c, 5)
                .map(|r| (ids(&st, &r), r.removed))
                .unwrap()
        };
        let (chat, removed) = route(Constraints::default());
        assert_eq!(chat, vec!["plain/chat"]);
        assert_eq!(
            removed,
            vec![
                (Constraint::OutputModalities, 2),
                (Constraint::MetaRouter, 1),
                (Constraint::GuardModel, 1)
            ]
        );
        let images = Constraints {
            output_modalities: vec!["image".into()],
            ..Constraints::default()
        };
        assert_eq!(route(images).0, vec!["paint/pictures"]);
        let named = Constraints {
            allow_models: vec!["openrouter/free".into(), "plain/chat".into()],
            ..Constraints::default()
        };
        assert_eq!(route(named).0, vec!["openrouter/free", "plain/chat"]);
        let guard_by_author = Constraints {
            allow_models: vec!["meta/*".into()],
            ..Constraints::default()
        };
        assert!(rank(&st, Mode::Cost.weights(), PROFILE, &guard_by_author, 1).is_err());
    }

    #[test]
    fn a_spent_free_allowance_removes_every_free_model() {
        let mut specs = trio_specs();
        specs.push(ModelSpec {
            prompt_price: 0.0,
            completion_price: 0.0,
            ..spec("big/frontier:free")
        });
        let engine = crate::engine::Engine::new(Catalogue::new("v", specs).unwrap());
        let route = || {
            let (st, r) = engine
                .rank(Mode::Cost.weights(), PROFILE, &Constraints::default(), 3)
                .unwrap();
            (ids(&st, &r).len(), r.removed)
        };
        assert_eq!(route(), (3, vec![]));
        // Only `:free` variants share the allowance; free/model is merely priced at 0.
        engine.set_free_available(false);
        assert_eq!(route(), (3, vec![(Constraint::FreeQuota, 1)]));
        engine.set_free_available(true);
        assert_eq!(route(), (3, vec![]));
    }

    #[test]
    fn explain_places_a_model_against_the_winner() {
        let st = trio();
        let cons = Constraints::default();
        let w = Mode::Quality.weights();
        let full = rank(&st, w, PROFILE, &cons, 3).unwrap();
        let free = st.catalogue.by_id["free/model"];
        let e = explain(&st, w, PROFILE, &cons, free).unwrap();
        let position = full
            .candidates
            .iter()
            .position(|c| c.index == free)
            .unwrap();
        assert_eq!(e.rank, position + 1);
        assert_eq!(e.winner, full.candidates[0]);
        assert_eq!(e.subject.as_ref(), Some(&full.candidates[position]));
        assert_eq!((e.excluded_by, e.eligible), (None, 3));
        let no_free = Constraints {
            free: FreeFilter::Exclude,
            ..Constraints::default()
        };
        let e = explain(&st, w, PROFILE, &no_free, free).unwrap();
        assert_eq!(
            (e.rank, e.subject, e.excluded_by),
            (0, None, Some(Constraint::ExcludeFree))
        );
    }

    #[test]
    fn approx_ln_stays_within_its_bound() {
        let mut x = 1e-12;
        while x < 1e6 {
            assert!((approx_ln(ln_table(), x) - x.ln()).abs() < 5e-4, "{x}");
            x *= 1.000_37;
        }
    }
}
