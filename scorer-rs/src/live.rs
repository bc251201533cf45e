//! Live per-model statistics laid over the catalogue's priors.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::catalogue::{check_latency, Catalogue};
use crate::constraints::{outside_route, Constraint};
use crate::error::ScoreError;

/// What the router has observed of one model; `None` leaves the catalogue's prior in force.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LiveStats {
    pub ttft_s: Option<f64>,
    pub tokens_per_s: Option<f64>,
    pub circuit_open: bool,
    /// Whether the figures are still a prior (e.g. rescaled); by default they are measured
    /// when they give a time to first token or a throughput.
    pub latency_estimated: Option<bool>,
}

impl LiveStats {
    /// Refuses a figure out of range, naming the model `id` the stats are for.
    pub fn check(&self, id: &str) -> Result<(), ScoreError> {
        check_latency(self.ttft_s, self.tokens_per_s)
            .map_err(|what| ScoreError::InvalidRequest(format!("stats for {id:?}: {what}")))
    }
}

/// Why model `i` can never be a candidate, whatever the request, if it cannot.
fn blocked(
    cat: &Catalogue,
    i: usize,
    circuit_open: bool,
    free_available: bool,
) -> Option<Constraint> {
    if cat.has_dynamic_price(i) {
        Some(Constraint::DynamicPrice)
    } else if !cat.realtime[i] {
        Some(Constraint::NotRealtime)
    } else if circuit_open {
        Some(Constraint::CircuitOpen)
    } else if !free_available && cat.free_variant[i] {
        Some(Constraint::FreeQuota)
    } else {
        None
    }
}

/// Why model `i` is no candidate for a chat route (text out, a chat model), if it is not.
fn outside_chat_route(cat: &Catalogue, i: usize) -> Option<Constraint> {
    outside_route(cat, i, 0, &[])
}

/// A number no other set of figures had, so that what was derived from figures can be kept
/// exactly as long as they last.
fn next_figures_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The figures the scorer uses for each model: priors overlaid with live stats, by index.
#[derive(Clone, Debug)]
pub struct Live {
    /// Changes whenever `ttft_s` or `tokens_per_s` may have.
    pub figures_id: u64,
    pub ttft_s: Vec<f64>,
    pub tokens_per_s: Vec<f64>,
    pub latency_estimated: Vec<bool>,
    pub circuit_open: Vec<bool>,
    /// False while `:free` variants may not be called (their shared allowance is spent).
    pub free_available: bool,
    /// Why a model is no candidate for a chat route, if it is not.
    pub excluded: Vec<Option<Constraint>>,
    pub stats: Vec<Option<LiveStats>>,
}

impl Live {
    /// Nothing observed yet: every figure is the catalogue's prior.
    pub fn priors(cat: &Catalogue) -> Live {
        Live {
            figures_id: next_figures_id(),
            ttft_s: cat.ttft_s.clone(),
            tokens_per_s: cat.tokens_per_s.clone(),
            latency_estimated: cat.latency_estimated.clone(),
            circuit_open: vec![false; cat.len()],
            free_available: true,
            excluded: (0..cat.len())
                .map(|i| blocked(cat, i, false, true).or_else(|| outside_chat_route(cat, i)))
                .collect(),
            stats: vec![None; cat.len()],
        }
    }

    /// Why model `i` can never be a candidate now, whatever the request, if it cannot.
    pub fn blocked(&self, cat: &Catalogue, i: usize) -> Option<Constraint> {
        blocked(cat, i, self.circuit_open[i], self.free_available)
    }

    fn exclude(&mut self, cat: &Catalogue, i: usize) {
        self.excluded[i] = self.blocked(cat, i).or_else(|| outside_chat_route(cat, i));
    }

    /// A copy in which free variants may (or may not) be called.
    pub fn with_free_available(&self, cat: &Catalogue, available: bool) -> Live {
        let mut next = self.clone();
        next.free_available = available;
        for i in (0..cat.len()).filter(|&i| cat.free_variant[i]) {
            next.exclude(cat, i);
        }
        next
    }

    fn set(&mut self, cat: &Catalogue, i: usize, stats: LiveStats) {
        self.ttft_s[i] = stats.ttft_s.unwrap_or(cat.ttft_s[i]);
        self.tokens_per_s[i] = stats.tokens_per_s.unwrap_or(cat.tokens_per_s[i]);
        self.latency_estimated[i] = stats.latency_estimated.unwrap_or(
            cat.latency_estimated[i] && stats.ttft_s.is_none() && stats.tokens_per_s.is_none(),
        );
        self.circuit_open[i] = stats.circuit_open;
        self.exclude(cat, i);
        self.stats[i] = Some(stats);
    }

    /// A copy with `updates` applied; all or nothing: any unknown id or bad figure refuses the lot.
    pub fn updated<S: AsRef<str>>(
        &self,
        cat: &Catalogue,
        updates: &[(S, LiveStats)],
    ) -> Result<Live, ScoreError> {
        let mut resolved = Vec::with_capacity(updates.len());
        for (id, stats) in updates {
            let id = id.as_ref();
            let i = *cat.by_id.get(id).ok_or_else(|| {
                ScoreError::InvalidRequest(format!(
                    "stats for {id:?}: no such model in the catalogue"
                ))
            })?;
            stats.check(id)?;
            resolved.push((i, *stats));
        }
        let mut next = self.clone();
        next.figures_id = next_figures_id();
        for (i, stats) in resolved {
            next.set(cat, i, stats);
        }
        Ok(next)
    }

    /// Stats of models that survive into a new catalogue, carried over by id.
    pub fn carried_over(&self, old: &Catalogue, new: &Catalogue) -> Live {
        // A new id: `priors` made one, and `with_free_available` keeps it.
        let mut next = Live::priors(new).with_free_available(new, self.free_available);
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
                    ttft_s: Some(f64::NAN),
                    ..LiveStats::default()
                },
            ),
        ] {
            let err = live.updated(&cat, &[update]);
            assert!(matches!(err, Err(ScoreError::InvalidRequest(_))));
        }
    }
}
