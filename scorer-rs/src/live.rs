//! Live per-model statistics laid over the catalogue's priors.

use crate::catalogue::{check_latency, Catalogue};
use crate::constraints::Constraint;
use crate::error::ScoreError;

/// What the router has observed of one model; `None` leaves the catalogue's prior in force.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LiveStats {
    pub ttft_s: Option<f64>,
    pub ttft_p95_s: Option<f64>,
    pub tokens_per_s: Option<f64>,
    pub error_rate: Option<f64>,
    pub circuit_open: bool,
}

impl LiveStats {
    pub fn check(&self, id: &str) -> Result<(), ScoreError> {
        let bad = |what: &str| ScoreError::InvalidRequest(format!("stats for {id:?}: {what}"));
        check_latency(self.ttft_s, self.tokens_per_s).map_err(&bad)?;
        check_latency(self.ttft_p95_s, None).map_err(&bad)?;
        if self.error_rate.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
            return Err(bad("error_rate must lie in [0, 1]"));
        }
        Ok(())
    }
}

fn static_exclusion(cat: &Catalogue, i: usize, circuit_open: bool) -> Option<Constraint> {
    if cat.has_dynamic_price(i) {
        Some(Constraint::DynamicPrice)
    } else if !cat.text_output[i] {
        Some(Constraint::NonTextOutput)
    } else if !cat.realtime[i] {
        Some(Constraint::NotRealtime)
    } else if circuit_open {
        Some(Constraint::CircuitOpen)
    } else {
        None
    }
}

/// The figures the scorer uses for each model: priors overlaid with live stats, by index.
#[derive(Clone, Debug)]
pub struct Live {
    pub ttft_s: Vec<f64>,
    pub tokens_per_s: Vec<f64>,
    pub latency_estimated: Vec<bool>,
    pub circuit_open: Vec<bool>,
    /// Why a model can never be a candidate whatever the request, if it cannot.
    pub excluded: Vec<Option<Constraint>>,
    pub stats: Vec<Option<LiveStats>>,
}

impl Live {
    /// Nothing observed yet: every figure is the catalogue's prior.
    pub fn priors(cat: &Catalogue) -> Live {
        Live {
            ttft_s: cat.ttft_s.clone(),
            tokens_per_s: cat.tokens_per_s.clone(),
            latency_estimated: cat.latency_estimated.clone(),
            circuit_open: vec![false; cat.len()],
            excluded: (0..cat.len())
                .map(|i| static_exclusion(cat, i, false))
                .collect(),
            stats: vec![None; cat.len()],
        }
    }

    fn set(&mut self, cat: &Catalogue, i: usize, stats: LiveStats) {
        self.ttft_s[i] = stats.ttft_s.unwrap_or(cat.ttft_s[i]);
        self.tokens_per_s[i] = stats.tokens_per_s.unwrap_or(cat.tokens_per_s[i]);
        self.latency_estimated[i] =
            cat.latency_estimated[i] && stats.ttft_s.is_none() && stats.tokens_per_s.is_none();
        self.circuit_open[i] = stats.circuit_open;
        self.excluded[i] = static_exclusion(cat, i, stats.circuit_open);
        self.stats[i] = Some(stats);
    }

    /// A copy with `updates` applied; all or nothing: any unknown id or bad figure refuses the lot.
    pub fn updated(
        &self,
        cat: &Catalogue,
        updates: &[(String, LiveStats)],
    ) -> Result<Live, ScoreError> {
        let mut resolved = Vec::with_capacity(updates.len());
        for (id, stats) in updates {
            let i = *cat.by_id.get(id.as_str()).ok_or_else(|| {
                ScoreError::InvalidRequest(format!(
                    "stats for {id:?}: no such model in the catalogue"
                ))
            })?;
            stats.check(id)?;
            resolved.push((i, *stats));
        }
        let mut next = self.clone();
        for (i, stats) in resolved {
            next.set(cat, i, stats);
        }
        Ok(next)
    }

    /// Stats of models that survive into a new catalogue, carried over by id.
    pub fn carried_over(&self, old: &Catalogue, new: &Catalogue) -> Live {
        let mut next = Live::priors(new);
        for (j, id) in new.ids.iter().enumerate() {
            if let Some(stats) = old.by_id.get(id).and_then(|&i| self.stats[i]) {
                next.set(new, j, stats);
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::tests::spec;

    #[test]
    fn stats_override_priors_and_carry_over() {
        let cat = Catalogue::new("v", vec![spec("a/a"), spec("b/b")]).unwrap();
        let live = Live::priors(&cat)
            .updated(
                &cat,
                &[(
                    "b/b".to_string(),
                    LiveStats {
                        ttft_s: Some(3.0),
                        circuit_open: true,
                        ..LiveStats::default()
                    },
                )],
            )
            .unwrap();
        assert_eq!(live.ttft_s, vec![0.5, 3.0]);
        assert_eq!(live.tokens_per_s, vec![100.0, 100.0]);
        assert_eq!(live.circuit_open, vec![false, true]);
        let newer = Catalogue::new("w", vec![spec("b/b"), spec("c/c")]).unwrap();
        let carried = live.carried_over(&cat, &newer);
        assert_eq!(carried.ttft_s, vec![3.0, 0.5]);
        assert_eq!(carried.circuit_open, vec![true, false]);
    }

    #[test]
    fn bad_updates_apply_nothing() {
        let cat = Catalogue::new("v", vec![spec("a/a")]).unwrap();
        let live = Live::priors(&cat);
        for update in [
            ("x/x", LiveStats::default()),
            (
                "a/a",
                LiveStats {
                    tokens_per_s: Some(0.0),
                    ..LiveStats::default()
                },
            ),
            (
                "a/a",
                LiveStats {
                    error_rate: Some(1.5),
                    ..LiveStats::default()
                },
            ),
        ] {
            let err = live.updated(&cat, &[(update.0.to_string(), update.1)]);
            assert!(matches!(err, Err(ScoreError::InvalidRequest(_))));
        }
    }
}
