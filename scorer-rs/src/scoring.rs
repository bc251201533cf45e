//! Normalisation, the score formula and top-k selection.

use std::cmp::Ordering;

use crate::catalogue::Catalogue;
use crate::constraints::{Compiled, Constraint, Constraints};
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

pub fn expected_cost(cat: &Catalogue, i: usize, profile: Profile) -> f64 {
    profile.prompt_tokens as f64 * cat.prompt_price[i]
        + profile.output_tokens as f64 * cat.completion_price[i]
}

pub fn expected_latency(cat: &Catalogue, i: usize, profile: Profile) -> f64 {
    cat.ttft_s[i] + profile.output_tokens as f64 / cat.tokens_per_s[i]
}

/// Min–max normalisation that maps a degenerate range to zero instead of dividing by it.
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

pub fn rank(
    cat: &Catalogue,
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
    let compiled = Compiled::new(constraints, cat)?;
    let needed_context = constraints
        .min_context
        .max(profile.prompt_tokens + profile.output_tokens);
    let mut removed = [0usize; Constraint::ALL.len()];
    let mut pool: Vec<Candidate> = Vec::with_capacity(cat.len());
    let (mut cost_min, mut cost_max) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut lat_min, mut lat_max) = (f64::INFINITY, f64::NEG_INFINITY);
    for i in 0..cat.len() {
        let expected_cost_usd = expected_cost(cat, i, profile);
        let failure = compiled.first_failure(cat, i, needed_context).or_else(|| {
            compiled
                .max_request_cost
                .filter(|max| expected_cost_usd > *max)
                .map(|_| Constraint::MaxRequestCost)
        });
        if let Some(c) = failure {
            removed[c as usize] += 1;
            continue;
        }
        let log_cost = expected_cost_usd.max(COST_FLOOR_USD).ln();
        let expected_latency_s = expected_latency(cat, i, profile);
        cost_min = cost_min.min(log_cost);
        cost_max = cost_max.max(log_cost);
        lat_min = lat_min.min(expected_latency_s);
        lat_max = lat_max.max(expected_latency_s);
        pool.push(Candidate {
            index: i,
            score: 0.0,
            latency_term: 0.0,
            cost_term: log_cost,
            quality_term: cat.quality[i],
            expected_cost_usd,
            expected_latency_s,
        });
    }
    let removed: Vec<(Constraint, usize)> = Constraint::ALL
        .iter()
        .zip(removed)
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| (*c, n))
        .collect();
    if pool.is_empty() {
        return Err(ScoreError::NoEligibleModel(removed));
    }
    for c in &mut pool {
        c.cost_term = 1.0 - normalise(c.cost_term, cost_min, cost_max);
        c.latency_term = 1.0 - normalise(c.expected_latency_s, lat_min, lat_max);
        c.score = weights.latency * c.latency_term
            + weights.cost * c.cost_term
            + weights.quality * c.quality_term;
    }
    let eligible = pool.len();
    if top_k < pool.len() {
        pool.select_nth_unstable_by(top_k - 1, |a, b| better(cat, a, b));
        pool.truncate(top_k);
    }
    pool.sort_unstable_by(|a, b| better(cat, a, b));
    Ok(Ranking {
        candidates: pool,
        eligible,
        removed,
        weights,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::tests::spec;
    use crate::catalogue::ModelSpec;

    const PROFILE: Profile = Profile {
        prompt_tokens: 1000,
        output_tokens: 500,
    };

    fn ids(cat: &Catalogue, r: &Ranking) -> Vec<String> {
        r.candidates
            .iter()
            .map(|c| cat.ids[c.index].clone())
            .collect()
    }

    fn trio() -> Catalogue {
        Catalogue::new(
            "v",
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
            ],
        )
        .unwrap()
    }

    #[test]
    fn formula_by_hand() {
        let cat = trio();
        let w = Mode::Balanced.weights();
        let r = rank(&cat, w, PROFILE, &Constraints::default(), 3).unwrap();
        let lat: Vec<f64> = (0..3).map(|i| expected_latency(&cat, i, PROFILE)).collect();
        let cost: Vec<f64> = (0..3)
            .map(|i| expected_cost(&cat, i, PROFILE).max(COST_FLOOR_USD).ln())
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
        let cat = trio();
        let best = |m: Mode| {
            let r = rank(&cat, m.weights(), PROFILE, &Constraints::default(), 1).unwrap();
            ids(&cat, &r)[0].clone()
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
        let cat = Catalogue::new("v", vec![spec("only/one")]).unwrap();
        let r = rank(
            &cat,
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
        let cat = Catalogue::new("v", vec![spec("z/z"), spec("a/a"), spec("m/m")]).unwrap();
        let r = rank(
            &cat,
            Mode::Balanced.weights(),
            PROFILE,
            &Constraints::default(),
            2,
        )
        .unwrap();
        assert_eq!(ids(&cat, &r), vec!["a/a", "m/m"]);
        assert_eq!(r.eligible, 3);
    }

    #[test]
    fn constraints_remove_and_are_counted() {
        let cat = Catalogue::new(
            "v",
            vec![
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
            ],
        )
        .unwrap();
        let cons = Constraints {
            input_modalities: vec!["image".into()],
            ..Constraints::default()
        };
        let r = rank(&cat, Mode::Cost.weights(), PROFILE, &cons, 5).unwrap();
        assert_eq!(ids(&cat, &r), vec!["see/vision"]);
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
        let cat = Catalogue::new("v", vec![spec("a/a"), spec("b/b")]).unwrap();
        let cons = Constraints {
            deny_models: vec!["a/*".into()],
            required_parameters: vec!["no-such-parameter".into()],
            ..Constraints::default()
        };
        let err = rank(&cat, Mode::Cost.weights(), PROFILE, &cons, 1).unwrap_err();
        assert_eq!(
            err,
            ScoreError::NoEligibleModel(vec![(Constraint::RequiredParameters, 2)])
        );
        assert!(err.to_string().contains("required_parameters: 2"));
    }

    #[test]
    fn bad_requests_are_refused() {
        let cat = trio();
        let w = Mode::Cost.weights();
        assert!(rank(&cat, w, PROFILE, &Constraints::default(), 0).is_err());
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
                rank(&cat, w, PROFILE, &cons, 1),
                Err(ScoreError::InvalidRequest(_))
            ));
        }
    }
}
