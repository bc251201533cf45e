//! The scorer's state and its concurrency: readers rank a snapshot, writers swap in a new one.

use std::sync::{Arc, Mutex, RwLock};

use crate::catalogue::Catalogue;
use crate::constraints::{Constraint, Constraints};
use crate::error::ScoreError;
use crate::live::{Live, LiveStats};
use crate::scoring::{self, Profile, Ranking, Weights};

/// One consistent view: a catalogue and the live figures of its models.
#[derive(Debug)]
pub struct State {
    pub catalogue: Arc<Catalogue>,
    pub live: Live,
}

impl State {
    /// How many models a plain chat route may consider, and how many each rule keeps out.
    pub fn eligibility(&self) -> (usize, Vec<(Constraint, usize)>) {
        let mut counts = [0usize; Constraint::ALL.len()];
        for reason in self.live.excluded.iter().flatten() {
            counts[*reason as usize] += 1;
        }
        let routable = self.live.excluded.len() - counts.iter().sum::<usize>();
        let excluded = Constraint::ALL
            .iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .map(|(c, n)| (*c, n))
            .collect();
        (routable, excluded)
    }

    pub fn fresh(catalogue: Catalogue) -> State {
        let live = Live::priors(&catalogue);
        State {
            catalogue: Arc::new(catalogue),
            live,
        }
    }
}

/// Readers take the current snapshot in a few nanoseconds and never see half an update;
/// writers build the next snapshot aside, one at a time, and swap it in.
#[derive(Debug)]
pub struct Engine {
    current: RwLock<Arc<State>>,
    writer: Mutex<()>,
}

impl Engine {
    pub fn new(catalogue: Catalogue) -> Engine {
        Engine {
            current: RwLock::new(Arc::new(State::fresh(catalogue))),
            writer: Mutex::new(()),
        }
    }

    pub fn snapshot(&self) -> Arc<State> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn swap(&self, next: State) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
    }

    /// Replace the catalogue; live stats of models that remain are kept.
    pub fn replace_catalogue(&self, catalogue: Catalogue) {
        let _writing = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.snapshot();
        let live = old.live.carried_over(&old.catalogue, &catalogue);
        self.swap(State {
            catalogue: Arc::new(catalogue),
            live,
        });
    }

    /// Apply a batch of live stats at once; an invalid entry refuses the whole batch.
    pub fn update_stats<S: AsRef<str>>(
        &self,
        updates: &[(S, LiveStats)],
    ) -> Result<(), ScoreError> {
        let _writing = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.snapshot();
        let live = old.live.updated(&old.catalogue, updates)?;
        self.swap(State {
            catalogue: Arc::clone(&old.catalogue),
            live,
        });
        Ok(())
    }

    /// Let free variants be routed to, or stop them (their shared allowance is spent).
    pub fn set_free_available(&self, available: bool) {
        let _writing = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.snapshot();
        if old.live.free_available == available {
            return;
        }
        let live = old.live.with_free_available(&old.catalogue, available);
        self.swap(State {
            catalogue: Arc::clone(&old.catalogue),
            live,
        });
    }

    pub fn rank(
        &self,
        weights: Weights,
        profile: Profile,
        constraints: &Constraints,
        top_k: usize,
    ) -> Result<(Arc<State>, Ranking), ScoreError> {
        let state = self.snapshot();
        let ranking = scoring::rank(&state, weights, profile, constraints, top_k)?;
        Ok((state, ranking))
    }
}
