//! Normalisation, the score formula and top-k selection.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::sync::OnceLock;

use crate::catalogue::Catalogue;
use crate::constraints::{Check, Compiled, Constraint, Constraints};
use crate::engine::State;
use crate::error::ScoreError;

/// Expected costs below this (USD) count as this on the log scale, so free models stay finite.
pub const COST_FLOOR_USD: f64 = 1e-9;

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
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ranking {
    pub candidates: Vec<Candidate>,
    pub eligible: usize,
    pub removed: Vec<(Constraint, usize)>,
    pub weights: Weights,
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

/// Best first; equal scores fall back to the model id so every decision is replayable.
fn better(cat: &Catalogue, a: &Candidate, b: &Candidate) -> Ordering {
    b.score
        .total_cmp(&a.score)
        .then_with(|| cat.ids[a.index].cmp(&cat.ids[b.index]))
}

/// Scratch space of one ranking, reused across calls on a thread.
#[derive(Default)]
struct Pool {
    /// Catalogue indices of the eligible models.
    index: Vec<u32>,
    estimate: Vec<f64>,
    scratch: Vec<f64>,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// What one request makes of each model, and the normalisation bounds over the eligible set.
struct Terms<'a> {
    state: &'a State,
    prompt: f64,
    output: f64,
    log_cost_min: f64,
    log_cost_max: f64,
    latency_min: f64,
    latency_max: f64,
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
        let latency_term = 1.0 - normalise(latency, self.latency_min, self.latency_max);
        let cost_term = 1.0
            - normalise(
                cost.max(COST_FLOOR_USD).ln(),
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
        }
    }
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
    let compiled = Compiled::new(constraints, &state.catalogue)?;
    let needed_context = constraints
        .min_context
        .max(profile.prompt_tokens.saturating_add(profile.output_tokens));
    let check = compiled.bind(state, needed_context);
    POOL.with_borrow_mut(|pool| rank_with(pool, state, &check, weights, profile, top_k))
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
    let mut terms = Terms {
        state,
        prompt: profile.prompt_tokens as f64,
        output: profile.output_tokens as f64,
        log_cost_min: 0.0,
        log_cost_max: 0.0,
        latency_min: f64::INFINITY,
        latency_max: f64::NEG_INFINITY,
    };
    let mut removed = [0usize; Constraint::ALL.len()];
    let (eligible, cost_min, cost_max, latency_min, latency_max) =
        filter_eligible(&mut pool.index, state, check, &terms, &mut removed);
    terms.latency_min = latency_min;
    terms.latency_max = latency_max;
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
    terms.log_cost_min = cost_min.max(COST_FLOOR_USD).ln();
    terms.log_cost_max = cost_max.max(COST_FLOOR_USD).ln();
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
    })
}

/// Fills `index` with the models that pass the constraints, counts the others in `removed`,
/// and returns how many passed with the min and max of their expected cost and latency.
/// Kept out of line: a small loop of its own keeps its figures in registers.
#[inline(never)]
fn filter_eligible(
    index: &mut Vec<u32>,
    state: &State,
    check: &Check<'_>,
    terms: &Terms<'_>,
    removed: &mut [usize; Constraint::ALL.len()],
) -> (usize, f64, f64, f64, f64) {
    let cat = &*state.catalogue;
    let live = &state.live;
    let n = cat.len();
    index.resize(n, 0);
    let index = &mut index[..n];
    let (prompt_price, completion_price) = (&cat.prompt_price[..n], &cat.completion_price[..n]);
    let (ttft, tokens_per_s) = (&live.ttft_s[..n], &live.tokens_per_s[..n]);
    let (prompt, output) = (terms.prompt, terms.output);
    // Eligible costs and latencies are finite and never negative, so their bit patterns order
    // like their values: integer min and max are exact here, and cheaper than f64's.
    let (mut cost_min, mut cost_max) = (u64::MAX, 0u64);
    let (mut latency_min, mut latency_max) = (u64::MAX, 0u64);
    let mut eligible = 0;
    for i in 0..n {
        // The arithmetic of `Terms::cost` and `Terms::latency`, on pre-sliced columns.
        let cost = prompt * prompt_price[i] + output * completion_price[i];
        if let Some(c) = check.first_failure(i, cost) {
            removed[c as usize] += 1;
            continue;
        }
        let latency = ttft[i] + output / tokens_per_s[i];
        let (cost, latency) = (cost.to_bits(), latency.to_bits());
        cost_min = cost_min.min(cost);
        cost_max = cost_max.max(cost);
        latency_min = latency_min.min(latency);
        latency_max = latency_max.max(latency);
        index[eligible] = i as u32;
        eligible += 1;
    }
    (
        eligible,
        f64::from_bits(cost_min),
        f64::from_bits(cost_max),
        f64::from_bits(latency_min),
        f64::from_bits(latency_max),
    )
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
    let cost_range = terms.log_cost_max - terms.log_cost_min;
    let cost_scale = if cost_range > 0.0 {
        1.0 / cost_range
    } else {
        0.0
    };
    // The logarithm's error, and rounding: the estimate multiplies where the score divides.
    let slack = weights.cost * cost_scale * APPROX_LN_ERROR + 1e-9;
    estimate_scores(&mut pool.estimate, &pool.index, terms, weights);
    let cutoff = kth_largest(&pool.estimate, &mut pool.scratch, top_k) - 2.0 * slack;
    let (index, estimate) = (&pool.index, &pool.estimate);
    index
        .iter()
        .zip(estimate)
        .filter(move |(_, e)| **e >= cutoff)
        .map(|(&i, _)| i as usize)
}

/// Scores of the models in `index`, estimated with `approx_ln` instead of the exact logarithm.
#[inline(never)]
fn estimate_scores(estimate: &mut Vec<f64>, index: &[u32], terms: &Terms<'_>, weights: Weights) {
    let cat = &*terms.state.catalogue;
    let live = &terms.state.live;
    let n = cat.len();
    let (prompt_price, completion_price) = (&cat.prompt_price[..n], &cat.completion_price[..n]);
    let (ttft, tokens_per_s) = (&live.ttft_s[..n], &live.tokens_per_s[..n]);
    let quality = &cat.quality[..n];
    let (prompt, output) = (terms.prompt, terms.output);
    let cost_range = terms.log_cost_max - terms.log_cost_min;
    let latency_range = terms.latency_max - terms.latency_min;
    let cost_scale = if cost_range > 0.0 {
        1.0 / cost_range
    } else {
        0.0
    };
    let latency_scale = if latency_range > 0.0 {
        1.0 / latency_range
    } else {
        0.0
    };
    let (log_cost_min, latency_min) = (terms.log_cost_min, terms.latency_min);
    let table = ln_table();
    estimate.resize(index.len(), 0.0);
    for (estimate, &i) in estimate.iter_mut().zip(index) {
        let i = i as usize;
        let cost = prompt * prompt_price[i] + output * completion_price[i];
        let floored = if cost > COST_FLOOR_USD {
            cost
        } else {
            COST_FLOOR_USD
        };
        let cost_term = 1.0 - (approx_ln(table, floored) - log_cost_min) * cost_scale;
        let latency = ttft[i] + output / tokens_per_s[i];
        let latency_term = 1.0 - (latency - latency_min) * latency_scale;
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
    use crate::catalogue::ModelSpec;

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
        state(vec![
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
        ])
    }

    #[test]
    fn formula_by_hand() {
        let st = trio();
        let cat = &*st.catalogue;
        let w = Mode::Balanced.weights();
        let r = rank(&st, w, PROFILE, &Constraints::default(), 3).unwrap();
        let lat: Vec<f64> = (0..3).map(|i| expected_latency(cat, i, PROFILE)).collect();
        let cost: Vec<f64> = (0..3)
            .map(|i| expected_cost(cat, i, PROFILE).max(COST_FLOOR_USD).ln())
            .collect();
        let (lmin, lmax) = (lat[0], lat[2]);
        let (cmin, cmax) = (cost[1], cost[2]);
        for c in &r.candidates {
            let i = c.index;
            let want_lat = 1.0 - (lat[i] - lmin) / (lmax - lmin);
            let want_cost = 1.0 - (cost[i] - cmin) / (cmax - cmin);
            let want = (want_lat + want_cost + cat.quality[i]) / 3.0;
            assert!((c.latency_term - want_lat).abs() < 1e-12);
            assert!((c.cost_term - want_cost).abs() < 1e-12);
            assert!((c.score - want).abs() < 1e-12, "{} {}", c.score, want);
        }
    }

    #[test]
    fn modes_pick_what_they_promise() {
        let st = trio();
        let best = |m: Mode| {
            let r = rank(&st, m.weights(), PROFILE, &Constraints::default(), 1).unwrap();
            ids(&st, &r)[0].clone()
        };
        assert_eq!(best(Mode::Speed), "fast/small");
        assert_eq!(best(Mode::Cost), "free/model");
        assert_eq!(best(Mode::Quality), "big/frontier");
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
    fn approx_ln_stays_within_its_bound() {
        let mut x = 1e-12;
        while x < 1e6 {
            assert!((approx_ln(ln_table(), x) - x.ln()).abs() < 5e-4, "{x}");
            x *= 1.000_37;
        }
    }
}
