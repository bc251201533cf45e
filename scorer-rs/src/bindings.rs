//! The Python face of the scorer: a thin layer of conversions over the pure-Rust core.

use std::sync::{Arc, RwLock};

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::catalogue::{Catalogue, ModelSpec};
use crate::constraints::{Constraints, FreeFilter};
use crate::error::ScoreError;
use crate::scoring::{self, Mode, Profile, Weights};

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
            ScoreError::NoEligibleModel(_) => NoEligibleModel::new_err(msg),
        }
    }
}

#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct PyModelSpec {
    id: String,
    context_length: u64,
    prompt_price: f64,
    completion_price: f64,
    input_modalities: Vec<String>,
    text_output: bool,
    supported_parameters: Vec<String>,
    quality: f64,
    quality_estimated: bool,
    ttft_s: f64,
    tokens_per_s: f64,
    latency_estimated: bool,
}

impl From<PyModelSpec> for ModelSpec {
    fn from(m: PyModelSpec) -> ModelSpec {
        ModelSpec {
            id: m.id,
            context_length: m.context_length,
            prompt_price: m.prompt_price,
            completion_price: m.completion_price,
            input_modalities: m.input_modalities,
            text_output: m.text_output,
            supported_parameters: m.supported_parameters,
            quality: m.quality,
            quality_estimated: m.quality_estimated,
            ttft_s: m.ttft_s,
            tokens_per_s: m.tokens_per_s,
            latency_estimated: m.latency_estimated,
        }
    }
}

fn build_catalogue(version: String, models: Vec<PyModelSpec>) -> Result<Catalogue, ScoreError> {
    Catalogue::new(version, models.into_iter().map(ModelSpec::from).collect())
}

#[pyclass(name = "Constraints", frozen, from_py_object)]
#[derive(Clone)]
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
}

#[pyclass(name = "Ranking", frozen, get_all)]
struct PyRanking {
    candidates: Vec<Py<PyCandidate>>,
    eligible: usize,
    removed: Py<PyDict>,
    weights: (f64, f64, f64),
    catalogue_version: String,
}

/// Holds the current catalogue and ranks it; the catalogue is swapped whole, never edited.
#[pyclass(name = "Scorer", frozen)]
struct PyScorer {
    catalogue: RwLock<Arc<Catalogue>>,
}

impl PyScorer {
    fn current(&self) -> Arc<Catalogue> {
        Arc::clone(&self.catalogue.read().unwrap_or_else(|e| e.into_inner()))
    }
}

#[pymethods]
impl PyScorer {
    #[new]
    fn new(version: String, models: Vec<PyModelSpec>) -> PyResult<Self> {
        Ok(PyScorer {
            catalogue: RwLock::new(Arc::new(build_catalogue(version, models)?)),
        })
    }

    #[getter]
    fn version(&self) -> String {
        self.current().version.clone()
    }

    fn __len__(&self) -> usize {
        self.current().len()
    }

    fn model_ids(&self) -> Vec<String> {
        self.current().ids.clone()
    }

    fn replace_catalogue(&self, version: String, models: Vec<PyModelSpec>) -> PyResult<()> {
        let fresh = Arc::new(build_catalogue(version, models)?);
        *self.catalogue.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    #[pyo3(signature = (weights, *, prompt_tokens, output_tokens, top_k = 5, constraints = None))]
    fn rank(
        &self,
        py: Python<'_>,
        weights: (f64, f64, f64),
        prompt_tokens: u64,
        output_tokens: u64,
        top_k: usize,
        constraints: Option<PyConstraints>,
    ) -> PyResult<PyRanking> {
        let weights = Weights::normalised(weights.0, weights.1, weights.2)?;
        let profile = Profile {
            prompt_tokens,
            output_tokens,
        };
        let constraints = constraints.map(|c| c.inner).unwrap_or_default();
        let cat = self.current();
        let ranking = py.detach(|| scoring::rank(&cat, weights, profile, &constraints, top_k))?;
        let removed = PyDict::new(py);
        for (c, n) in &ranking.removed {
            removed.set_item(c.name(), n)?;
        }
        let candidates = ranking
            .candidates
            .iter()
            .map(|c| {
                Py::new(
                    py,
                    PyCandidate {
                        model_id: cat.ids[c.index].clone(),
                        score: c.score,
                        latency_term: c.latency_term,
                        cost_term: c.cost_term,
                        quality_term: c.quality_term,
                        expected_cost_usd: c.expected_cost_usd,
                        expected_latency_s: c.expected_latency_s,
                        quality_estimated: cat.quality_estimated[c.index],
                        latency_estimated: cat.latency_estimated[c.index],
                    },
                )
            })
            .collect::<PyResult<_>>()?;
        Ok(PyRanking {
            candidates,
            eligible: ranking.eligible,
            removed: removed.unbind(),
            weights: (weights.latency, weights.cost, weights.quality),
            catalogue_version: cat.version.clone(),
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
    m.add("ScorerError", py.get_type::<ScorerError>())?;
    m.add("InvalidCatalogue", py.get_type::<InvalidCatalogue>())?;
    m.add("InvalidRequest", py.get_type::<InvalidRequest>())?;
    m.add("NoEligibleModel", py.get_type::<NoEligibleModel>())?;
    m.add_class::<PyScorer>()?;
    m.add_class::<PyConstraints>()?;
    m.add_class::<PyCandidate>()?;
    m.add_class::<PyRanking>()?;
    Ok(())
}
