//! The Python face of the scorer: a thin layer of conversions over the pure-Rust core.

use std::convert::Infallible;
use std::sync::{Arc, LazyLock, OnceLock};

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::catalogue::{self, Catalogue, Kind, ModelSpec};
use crate::constraints::{Constraints, FreeFilter};
use crate::engine::{Engine, State};
use crate::error::ScoreError;
use crate::live::LiveStats;
use crate::scoring::{self, Candidate, Mode, Normalisation, Profile, Ranking, Weights};

create_exception!(
    _scorer,
    ScorerError,
    PyValueError,
    "Base of every error the scorer raises."
);
create_exception!(
    _scorer,
    InvalidCatalogue,
    ScorerError,
    "The catalogue handed to the scorer is malformed."
);
create_exception!(
    _scorer,
    InvalidRequest,
    ScorerError,
    "The weights, profile or constraints of a request are malformed."
);
create_exception!(
    _scorer,
    NoEligibleModel,
    ScorerError,
    "The constraints removed every model of the catalogue."
);

impl From<ScoreError> for PyErr {
    fn from(err: ScoreError) -> PyErr {
        let msg = err.to_string();
        match err {
            ScoreError::InvalidCatalogue(_) => InvalidCatalogue::new_err(msg),
            ScoreError::InvalidRequest(_) => InvalidRequest::new_err(msg),
            ScoreError::NoEligibleModel(removed) => {
                let err = NoEligibleModel::new_err(msg);
                // `removed`: how many models each constraint removed, by name.
                Python::attach(|py| {
                    let counts = PyDict::new(py);
                    for (constraint, n) in &removed {
                        counts.set_item(constraint.name(), n)?;
                    }
                    err.value(py).setattr("removed", counts)
                })
                .map_or_else(|failed| failed, |()| err)
            }
        }
    }
}

/// A model's kind as Python reads it: its name.
impl<'py> IntoPyObject<'py> for Kind {
    type Target = PyString;
    type Output = Bound<'py, PyString>;
    type Error = Infallible;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        Ok(PyString::intern(py, self.name()))
    }
}

#[pymethods]
impl ModelSpec {
    /// Checked when it is made: a malformed model raises InvalidCatalogue.
    #[new]
    #[pyo3(signature = (
        *,
        id,
        context_length,
        prompt_price,
        completion_price,
        input_modalities,
        output_modalities,
        kind = "chat",
        realtime = true,
        supported_parameters,
        quality,
        quality_estimated,
        ttft_s,
        tokens_per_s,
        latency_estimated,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: String,
        context_length: u64,
        prompt_price: f64,
        completion_price: f64,
        input_modalities: Vec<String>,
        output_modalities: Vec<String>,
        kind: &str,
        realtime: bool,
        supported_parameters: Vec<String>,
        quality: f64,
        quality_estimated: bool,
        ttft_s: f64,
        tokens_per_s: f64,
        latency_estimated: bool,
    ) -> PyResult<Self> {
        let kind = Kind::parse(kind).ok_or_else(|| {
            ScoreError::InvalidCatalogue(format!(
                "model {id:?}: kind must be chat, meta_router or guard, got {kind:?}"
            ))
        })?;
        let spec = ModelSpec {
            id,
            context_length,
            prompt_price,
            completion_price,
            input_modalities,
            output_modalities,
            kind,
            realtime,
            supported_parameters,
            quality,
            quality_estimated,
            ttft_s,
            tokens_per_s,
            latency_estimated,
        };
        spec.check()?;
        Ok(spec)
    }
}

fn build_catalogue(
    version: String,
    models: &[PyRef<'_, ModelSpec>],
) -> Result<Catalogue, ScoreError> {
    Catalogue::new(
        version,
        models.iter().map(|m| ModelSpec::clone(m)).collect(),
    )
}

#[pyclass(name = "Constraints", frozen)]
struct PyConstraints {
    inner: Constraints,
}

#[pymethods]
impl PyConstraints {
    #[new]
    #[pyo3(signature = (
        *,
        min_context = 0,
        input_modalities = Vec::new(),
        output_modalities = Vec::new(),
        required_parameters = Vec::new(),
        max_prompt_price_per_mtok = None,
        max_completion_price_per_mtok = None,
        max_request_cost_usd = None,
        max_ttft_s = None,
        allow_models = Vec::new(),
        deny_models = Vec::new(),
        allow_providers = Vec::new(),
        deny_providers = Vec::new(),
        free = "any",
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        min_context: u64,
        input_modalities: Vec<String>,
        output_modalities: Vec<String>,
        required_parameters: Vec<String>,
        max_prompt_price_per_mtok: Option<f64>,
        max_completion_price_per_mtok: Option<f64>,
        max_request_cost_usd: Option<f64>,
        max_ttft_s: Option<f64>,
        allow_models: Vec<String>,
        deny_models: Vec<String>,
        allow_providers: Vec<String>,
        deny_providers: Vec<String>,
        free: &str,
    ) -> PyResult<Self> {
        let free = match free {
            "any" => FreeFilter::Any,
            "only" => FreeFilter::Only,
            "exclude" => FreeFilter::Exclude,
            other => {
                return Err(InvalidRequest::new_err(format!(
                    "free must be one of any, only, exclude; got {other:?}"
                )))
            }
        };
        Ok(PyConstraints {
            inner: Constraints {
                min_context,
                input_modalities,
                output_modalities,
                required_parameters,
                max_prompt_price_per_mtok,
                max_completion_price_per_mtok,
                max_request_cost_usd,
                max_ttft_s,
                allow_models,
                deny_models,
                allow_providers,
                deny_providers,
                free,
            },
        })
    }
}

/// What the router has observed of one model, checked when it is made.
#[pyclass(name = "LiveStats", frozen)]
struct PyLiveStats {
    id: String,
    stats: LiveStats,
}

#[pymethods]
impl PyLiveStats {
    #[new]
    #[pyo3(signature = (
        id,
        *,
        ttft_s = None,
        tokens_per_s = None,
        circuit_open = false,
        latency_estimated = None,
    ))]
    fn new(
        id: String,
        ttft_s: Option<f64>,
        tokens_per_s: Option<f64>,
        circuit_open: bool,
        latency_estimated: Option<bool>,
    ) -> PyResult<Self> {
        let stats = LiveStats {
            ttft_s,
            tokens_per_s,
            circuit_open,
            latency_estimated,
        };
        stats.check(&id)?;
        Ok(PyLiveStats { id, stats })
    }

    #[getter]
    fn id(&self) -> &str {
        &self.id
    }

    #[getter]
    fn ttft_s(&self) -> Option<f64> {
        self.stats.ttft_s
    }

    #[getter]
    fn tokens_per_s(&self) -> Option<f64> {
        self.stats.tokens_per_s
    }

    #[getter]
    fn circuit_open(&self) -> bool {
        self.stats.circuit_open
    }

    #[getter]
    fn latency_estimated(&self) -> Option<bool> {
        self.stats.latency_estimated
    }
}

/// One ranked model with the terms of its score.
#[pyclass(name = "Candidate", frozen, get_all)]
struct PyCandidate {
    model_id: String,
    score: f64,
    latency_term: f64,
    cost_term: f64,
    quality_term: f64,
    expected_cost_usd: f64,
    expected_latency_s: f64,
    quality_estimated: bool,
    latency_estimated: bool,
    ttft_s: f64,
    tokens_per_s: f64,
}

impl PyCandidate {
    fn of(state: &State, c: &Candidate) -> PyCandidate {
        let (cat, live) = (&state.catalogue, &state.live);
        PyCandidate {
            model_id: cat.ids[c.index].clone(),
            score: c.score,
            latency_term: c.latency_term,
            cost_term: c.cost_term,
            quality_term: c.quality_term,
            expected_cost_usd: c.expected_cost_usd,
            expected_latency_s: c.expected_latency_s,
            quality_estimated: cat.quality_estimated[c.index],
            latency_estimated: live.latency_estimated[c.index],
            ttft_s: c.ttft_s,
            tokens_per_s: c.tokens_per_s,
        }
    }
}

fn bounds(n: &Normalisation) -> (f64, f64, f64, f64) {
    (
        n.latency_min_s,
        n.latency_max_s,
        n.cost_floor_usd,
        n.cost_max_usd,
    )
}

/// A ranking as the scorer returned it; Python objects are made only for what is read.
#[pyclass(name = "Ranking", frozen)]
struct PyRanking {
    state: Arc<State>,
    ranking: Ranking,
    candidates: OnceLock<Py<PyList>>,
}

#[pymethods]
impl PyRanking {
    #[getter]
    fn best(&self) -> &str {
        &self.state.catalogue.ids[self.ranking.candidates[0].index]
    }

    #[getter]
    fn candidates<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        if let Some(list) = self.candidates.get() {
            return Ok(list.bind(py).clone());
        }
        let items = self
            .ranking
            .candidates
            .iter()
            .map(|c| Py::new(py, PyCandidate::of(&self.state, c)))
            .collect::<PyResult<Vec<_>>>()?;
        let list = PyList::new(py, items)?;
        Ok(self
            .candidates
            .get_or_init(|| list.clone().unbind())
            .bind(py)
            .clone())
    }

    #[getter]
    fn eligible(&self) -> usize {
        self.ranking.eligible
    }

    #[getter]
    fn removed<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let removed = PyDict::new(py);
        for (c, n) in &self.ranking.removed {
            removed.set_item(c.name(), n)?;
        }
        Ok(removed)
    }

    #[getter]
    fn weights(&self) -> (f64, f64, f64) {
        let w = self.ranking.weights;
        (w.latency, w.cost, w.quality)
    }

    #[getter]
    fn catalogue_version(&self) -> &str {
        &self.state.catalogue.version
    }

    /// (latency_min_s, latency_max_s, cost_floor_usd, cost_max_usd)
    #[getter]
    fn normalisation(&self) -> (f64, f64, f64, f64) {
        bounds(&self.ranking.normalisation)
    }
}

/// Where one model stands in a request's whole ranking, beside the winner.
#[pyclass(name = "Explanation", frozen, get_all)]
struct PyExplanation {
    winner: Py<PyCandidate>,
    subject: Option<Py<PyCandidate>>,
    rank: usize,
    excluded_by: Option<&'static str>,
    eligible: usize,
    weights: (f64, f64, f64),
    normalisation: (f64, f64, f64, f64),
    catalogue_version: String,
}

static NO_CONSTRAINTS: LazyLock<Constraints> = LazyLock::new(Constraints::default);

/// A request's weights (scaled), profile and constraints as the core takes them.
fn request<'a>(
    weights: (f64, f64, f64),
    prompt_tokens: u64,
    output_tokens: u64,
    constraints: &'a Option<PyRef<'_, PyConstraints>>,
) -> Result<(Weights, Profile, &'a Constraints), ScoreError> {
    let weights = Weights::normalised(weights.0, weights.1, weights.2)?;
    let profile = Profile {
        prompt_tokens,
        output_tokens,
    };
    let constraints = constraints.as_ref().map_or(&*NO_CONSTRAINTS, |c| &c.inner);
    Ok((weights, profile, constraints))
}

/// Holds the current catalogue and live stats and ranks them; both are swapped whole.
#[pyclass(name = "Scorer", frozen)]
struct PyScorer {
    engine: Engine,
}

/// Below this many models a ranking takes a few microseconds: cheaper than releasing the GIL.
const DETACH_ABOVE_MODELS: usize = 2_000;

#[pymethods]
impl PyScorer {
    #[new]
    fn new(version: String, models: Vec<PyRef<'_, ModelSpec>>) -> PyResult<Self> {
        Ok(PyScorer {
            engine: Engine::new(build_catalogue(version, &models)?),
        })
    }

    #[getter]
    fn version(&self) -> String {
        self.engine.snapshot().catalogue.version.clone()
    }

    fn __len__(&self) -> usize {
        self.engine.snapshot().catalogue.len()
    }

    fn model_ids(&self) -> Vec<String> {
        self.engine.snapshot().catalogue.ids.clone()
    }

    fn replace_catalogue(
        &self,
        py: Python<'_>,
        version: String,
        models: Vec<PyRef<'_, ModelSpec>>,
    ) -> PyResult<()> {
        let catalogue = build_catalogue(version, &models)?;
        py.detach(|| self.engine.replace_catalogue(catalogue));
        Ok(())
    }

    fn update_stats(&self, py: Python<'_>, stats: Vec<PyRef<'_, PyLiveStats>>) -> PyResult<()> {
        let updates: Vec<(&str, LiveStats)> =
            stats.iter().map(|s| (s.id.as_str(), s.stats)).collect();
        py.detach(|| self.engine.update_stats(&updates))?;
        Ok(())
    }

    fn set_free_available(&self, available: bool) {
        self.engine.set_free_available(available);
    }

    /// (models, routable, {rule: models it keeps out}) for a plain chat route.
    fn eligibility(&self) -> (usize, usize, Vec<(&'static str, usize)>) {
        let state = self.engine.snapshot();
        let (routable, excluded) = state.eligibility();
        let excluded = excluded.into_iter().map(|(c, n)| (c.name(), n)).collect();
        (state.catalogue.len(), routable, excluded)
    }

    #[pyo3(signature = (weights, model_id, *, prompt_tokens, output_tokens, constraints = None))]
    fn explain(
        &self,
        py: Python<'_>,
        weights: (f64, f64, f64),
        model_id: &str,
        prompt_tokens: u64,
        output_tokens: u64,
        constraints: Option<PyRef<'_, PyConstraints>>,
    ) -> PyResult<PyExplanation> {
        let (weights, profile, constraints) =
            request(weights, prompt_tokens, output_tokens, &constraints)?;
        let state = self.engine.snapshot();
        let index = *state.catalogue.by_id.get(model_id).ok_or_else(|| {
            InvalidRequest::new_err(format!("no model {model_id:?} in the catalogue"))
        })?;
        let e = scoring::explain(&state, weights, profile, constraints, index)?;
        Ok(PyExplanation {
            winner: Py::new(py, PyCandidate::of(&state, &e.winner))?,
            subject: e
                .subject
                .map(|c| Py::new(py, PyCandidate::of(&state, &c)))
                .transpose()?,
            rank: e.rank,
            excluded_by: e.excluded_by.map(|c| c.name()),
            eligible: e.eligible,
            weights: (e.weights.latency, e.weights.cost, e.weights.quality),
            normalisation: bounds(&e.normalisation),
            catalogue_version: state.catalogue.version.clone(),
        })
    }

    #[pyo3(signature = (weights, *, prompt_tokens, output_tokens, top_k = 5, constraints = None))]
    fn rank(
        &self,
        py: Python<'_>,
        weights: (f64, f64, f64),
        prompt_tokens: u64,
        output_tokens: u64,
        top_k: usize,
        constraints: Option<PyRef<'_, PyConstraints>>,
    ) -> PyResult<PyRanking> {
        let (weights, profile, constraints) =
            request(weights, prompt_tokens, output_tokens, &constraints)?;
        let state = self.engine.snapshot();
        let rank = || scoring::rank(&state, weights, profile, constraints, top_k);
        let ranking = if state.catalogue.len() > DETACH_ABOVE_MODELS {
            py.detach(rank)
        } else {
            rank()
        }?;
        Ok(PyRanking {
            state,
            ranking,
            candidates: OnceLock::new(),
        })
    }
}

#[pymodule]
fn _scorer(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let modes = PyDict::new(py);
    for mode in Mode::ALL {
        let w = mode.weights();
        modes.set_item(mode.name(), (w.latency, w.cost, w.quality))?;
    }
    m.add("MODE_WEIGHTS", modes)?;
    m.add("COST_FLOOR_USD", scoring::COST_FLOOR_USD)?;
    m.add("LATENCY_FLOOR_S", scoring::LATENCY_FLOOR_S)?;
    m.add("LATENCY_SPAN", scoring::LATENCY_SPAN)?;
    m.add("LATENCY_RANK", scoring::LATENCY_RANK)?;
    m.add("LATENCY_OUTLIER", scoring::LATENCY_OUTLIER)?;
    m.add("LATENCY_OUTLIER_POOL", scoring::LATENCY_OUTLIER_POOL)?;
    m.add("MAX_PRICE_PER_TOKEN", catalogue::MAX_PRICE_PER_TOKEN)?;
    m.add("MAX_TTFT_S", catalogue::MAX_TTFT_S)?;
    m.add("MIN_TOKENS_PER_S", catalogue::MIN_TOKENS_PER_S)?;
    m.add("ScorerError", py.get_type::<ScorerError>())?;
    m.add("InvalidCatalogue", py.get_type::<InvalidCatalogue>())?;
    m.add("InvalidRequest", py.get_type::<InvalidRequest>())?;
    m.add("NoEligibleModel", py.get_type::<NoEligibleModel>())?;
    m.add_class::<PyScorer>()?;
    m.add_class::<ModelSpec>()?;
    m.add_class::<PyLiveStats>()?;
    m.add_class::<PyConstraints>()?;
    m.add_class::<PyCandidate>()?;
    m.add_class::<PyRanking>()?;
    m.add_class::<PyExplanation>()?;
    Ok(())
}
