//! Hard constraints: which models a request may use at all, decided before any scoring.

use crate::catalogue::{modality_bit, Catalogue, Kind, TEXT_ONLY};
use crate::engine::State;
use crate::error::{shown, ScoreError};

/// Each reason a model can be removed, in the order they are checked; a removed model is
/// counted under the first constraint it fails. The first four hold whatever the request; the
/// next three define a chat route, which a request may widen (output modalities, ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Constraint {
    DynamicPrice,
    NotRealtime,
    CircuitOpen,
    FreeQuota,
    OutputModalities,
    MetaRouter,
    GuardModel,
    ContextWindow,
    InputModalities,
    RequiredParameters,
    AllowModels,
    DenyModels,
    AllowProviders,
    DenyProviders,
    FreeOnly,
    ExcludeFree,
    MaxPromptPrice,
    MaxCompletionPrice,
    MaxTimeToFirstToken,
    MaxRequestCost,
}

impl Constraint {
    pub const ALL: [Constraint; 20] = [
        Constraint::DynamicPrice,
        Constraint::NotRealtime,
        Constraint::CircuitOpen,
        Constraint::FreeQuota,
        Constraint::OutputModalities,
        Constraint::MetaRouter,
        Constraint::GuardModel,
        Constraint::ContextWindow,
        Constraint::InputModalities,
        Constraint::RequiredParameters,
        Constraint::AllowModels,
        Constraint::DenyModels,
        Constraint::AllowProviders,
        Constraint::DenyProviders,
        Constraint::FreeOnly,
        Constraint::ExcludeFree,
        Constraint::MaxPromptPrice,
        Constraint::MaxCompletionPrice,
        Constraint::MaxTimeToFirstToken,
        Constraint::MaxRequestCost,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Constraint::DynamicPrice => "dynamic_price",
            Constraint::NotRealtime => "not_realtime",
            Constraint::CircuitOpen => "circuit_open",
            Constraint::FreeQuota => "free_quota",
            Constraint::OutputModalities => "output_modalities",
            Constraint::MetaRouter => "meta_router",
            Constraint::GuardModel => "guard_model",
            Constraint::ContextWindow => "context_window",
            Constraint::InputModalities => "input_modalities",
            Constraint::RequiredParameters => "required_parameters",
            Constraint::AllowModels => "allow_models",
            Constraint::DenyModels => "deny_models",
            Constraint::AllowProviders => "allow_providers",
            Constraint::DenyProviders => "deny_providers",
            Constraint::FreeOnly => "free_only",
            Constraint::ExcludeFree => "exclude_free",
            Constraint::MaxPromptPrice => "max_prompt_price",
            Constraint::MaxCompletionPrice => "max_completion_price",
            Constraint::MaxTimeToFirstToken => "max_ttft",
            Constraint::MaxRequestCost => "max_request_cost",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FreeFilter {
    #[default]
    Any,
    Only,
    Exclude,
}

/// What the caller demands of a model. Prices are USD per million tokens, cost in USD, time in seconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Constraints {
    pub min_context: u64,
    pub input_modalities: Vec<String>,
    /// Empty for a chat route (text only); else what the model must produce.
    pub output_modalities: Vec<String>,
    pub required_parameters: Vec<String>,
    pub max_prompt_price_per_mtok: Option<f64>,
    pub max_completion_price_per_mtok: Option<f64>,
    pub max_request_cost_usd: Option<f64>,
    pub max_ttft_s: Option<f64>,
    pub allow_models: Vec<String>,
    pub deny_models: Vec<String>,
    pub allow_providers: Vec<String>,
    pub deny_providers: Vec<String>,
    pub free: FreeFilter,
}

/// A model pattern: an exact id, or `author/*` for every model of that author.
fn matches_model(pattern: &str, id: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(author) => {
            id.len() > author.len() + 1
                && id.starts_with(author)
                && id.as_bytes()[author.len()] == b'/'
        }
        None => pattern == id,
    }
}

/// The bits of the named modalities; `what` (input or output) names them in the error.
fn modality_bits(names: &[String], what: &str) -> Result<u64, ScoreError> {
    names.iter().try_fold(0u64, |bits, m| {
        let bit = modality_bit(m).ok_or_else(|| {
            ScoreError::InvalidRequest(format!(
                "unknown {what} modality {m:?}; expected one of text, image, file, audio, video"
            ))
        })?;
        Ok(bits | bit)
    })
}

/// Why model `i` is no candidate for a route that wants `outputs` (0: a chat route, text only;
/// else those, text allowed beside them) and admits the other kinds of model in `named`, if it
/// is not.
pub fn outside_route(
    cat: &Catalogue,
    i: usize,
    outputs: u8,
    named: &[usize],
) -> Option<Constraint> {
    let out = cat.outputs[i];
    let outputs_fit = if outputs == 0 {
        out == TEXT_ONLY
    } else {
        out & outputs == outputs && out & !(outputs | TEXT_ONLY) == 0
    };
    if !outputs_fit {
        return Some(Constraint::OutputModalities);
    }
    match cat.kinds[i] {
        Kind::Chat => None,
        _ if named.contains(&i) => None,
        Kind::MetaRouter => Some(Constraint::MetaRouter),
        Kind::Guard => Some(Constraint::GuardModel),
    }
}

fn check_limit(value: Option<f64>, what: &str) -> Result<Option<f64>, ScoreError> {
    match value {
        Some(v) if !(v.is_finite() && v >= 0.0) => Err(ScoreError::InvalidRequest(format!(
            "{what} must be a non-negative number, got {v}"
        ))),
        _ => Ok(value),
    }
}

fn check_patterns(patterns: &[String], what: &str) -> Result<(), ScoreError> {
    for p in patterns {
        let body = p.strip_suffix("/*").unwrap_or(p);
        if body.is_empty() || body.contains('*') {
            return Err(ScoreError::InvalidRequest(format!(
                "{what}: {} is not a model id or an author/* pattern",
                shown(p)
            )));
        }
    }
    Ok(())
}

/// Constraints resolved against one catalogue, ready for the per-model check.
pub struct Compiled<'a> {
    raw: &'a Constraints,
    modalities: u64,
    /// Requested output modality bits; 0 for a chat route.
    outputs: u8,
    /// Models of another kind than chat that the caller named by id.
    named_kinds: Vec<usize>,
    params: u64,
    /// A required parameter no model of the catalogue supports.
    unknown_param: bool,
    max_prompt_price: Option<f64>,
    max_completion_price: Option<f64>,
    max_ttft: Option<f64>,
    max_request_cost: Option<f64>,
    /// Whether any constraint beyond context, modalities and parameters is set.
    rare: bool,
}

impl<'a> Compiled<'a> {
    pub fn new(raw: &'a Constraints, cat: &Catalogue) -> Result<Self, ScoreError> {
        let modalities = modality_bits(&raw.input_modalities, "input")?;
        // Modality bits fit in a byte: the catalogue's output column is one.
        let outputs = modality_bits(&raw.output_modalities, "output")? as u8;
        let named_kinds = raw
            .allow_models
            .iter()
            .filter_map(|id| cat.by_id.get(id.as_str()).copied())
            .filter(|&i| cat.kinds[i] != Kind::Chat)
            .collect();
        let mut params = 0u64;
        let mut unknown_param = false;
        for p in &raw.required_parameters {
            match cat.param_bit(p) {
                Some(bit) => params |= bit,
                None => unknown_param = true,
            }
        }
        check_patterns(&raw.allow_models, "allow_models")?;
        check_patterns(&raw.deny_models, "deny_models")?;
        let per_token = |v: Option<f64>| v.map(|p| p / 1e6);
        let max_prompt_price = per_token(check_limit(
            raw.max_prompt_price_per_mtok,
            "max_prompt_price_per_mtok",
        )?);
        let max_completion_price = per_token(check_limit(
            raw.max_completion_price_per_mtok,
            "max_completion_price_per_mtok",
        )?);
        let max_request_cost = check_limit(raw.max_request_cost_usd, "max_request_cost_usd")?;
        let max_ttft = check_limit(raw.max_ttft_s, "max_ttft_s")?;
        let rare = !(raw.allow_models.is_empty()
            && raw.deny_models.is_empty()
            && raw.allow_providers.is_empty()
            && raw.deny_providers.is_empty())
            || raw.free != FreeFilter::Any
            || max_prompt_price.is_some()
            || max_completion_price.is_some()
            || max_request_cost.is_some()
            || max_ttft.is_some();
        Ok(Compiled {
            raw,
            modalities,
            outputs,
            named_kinds,
            params,
            unknown_param,
            max_prompt_price,
            max_completion_price,
            max_ttft,
            max_request_cost,
            rare,
        })
    }

    /// This request's constraints bound to one snapshot, for the per-model check.
    pub fn bind<'s>(&'s self, state: &'s State, needed_context: u64) -> Check<'s> {
        let n = state.catalogue.len();
        let caps_needed = if self.unknown_param {
            u64::MAX
        } else {
            self.modalities | self.params
        };
        let chat_route = self.outputs == 0 && self.named_kinds.is_empty();
        Check {
            compiled: self,
            state,
            needed_context,
            // No model has every bit (some modality bits are unused): a widened route takes
            // the slow path for every model.
            required_caps: if chat_route { caps_needed } else { u64::MAX },
            caps_needed,
            rare: self.rare,
            chat_route,
            excluded: &state.live.excluded[..n],
            context: &state.catalogue.context[..n],
            caps: &state.catalogue.caps[..n],
        }
    }

    /// What a request that widens the chat route (other output modalities, other kinds named by
    /// id) makes of model `i`: the exclusions that always hold, then its own route's.
    #[cold]
    #[inline(never)]
    fn widened_failure(
        &self,
        check: &Check<'_>,
        i: usize,
        expected_cost: f64,
    ) -> Option<Constraint> {
        let cat = &*check.state.catalogue;
        let route = || outside_route(cat, i, self.outputs, &self.named_kinds);
        match check.state.live.blocked(cat, i) {
            Some(Constraint::CircuitOpen) => check.behind_open_circuit(i, expected_cost, route()),
            blocked => blocked.or_else(|| check.request_failure(i, expected_cost, route())),
        }
    }

    #[inline(never)]
    fn rare_failure(&self, state: &State, i: usize, expected_cost: f64) -> Option<Constraint> {
        let raw = self.raw;
        let cat = &*state.catalogue;
        let id = cat.ids[i].as_str();
        let author = cat.authors[i].as_str();
        if !raw.allow_models.is_empty() && !raw.allow_models.iter().any(|p| matches_model(p, id)) {
            return Some(Constraint::AllowModels);
        }
        if raw.deny_models.iter().any(|p| matches_model(p, id)) {
            return Some(Constraint::DenyModels);
        }
        if !raw.allow_providers.is_empty() && !raw.allow_providers.iter().any(|p| p == author) {
            return Some(Constraint::AllowProviders);
        }
        if raw.deny_providers.iter().any(|p| p == author) {
            return Some(Constraint::DenyProviders);
        }
        let free = cat.is_free(i);
        match raw.free {
            FreeFilter::Only if !free => return Some(Constraint::FreeOnly),
            FreeFilter::Exclude if free => return Some(Constraint::ExcludeFree),
            _ => {}
        }
        if self
            .max_prompt_price
            .is_some_and(|max| cat.prompt_price[i] > max)
        {
            return Some(Constraint::MaxPromptPrice);
        }
        if self
            .max_completion_price
            .is_some_and(|max| cat.completion_price[i] > max)
        {
            return Some(Constraint::MaxCompletionPrice);
        }
        if self.max_ttft.is_some_and(|max| state.live.ttft_s[i] > max) {
            return Some(Constraint::MaxTimeToFirstToken);
        }
        if self.max_request_cost.is_some_and(|max| expected_cost > max) {
            return Some(Constraint::MaxRequestCost);
        }
        None
    }
}

/// The columns the common constraints read, sliced to the catalogue's length.
pub struct Check<'s> {
    compiled: &'s Compiled<'s>,
    state: &'s State,
    needed_context: u64,
    /// Required modality and parameter bits; all bits when a required parameter is unknown
    /// to the catalogue, which no model then has.
    caps_needed: u64,
    /// `caps_needed` for a chat route; all bits for a widened one.
    required_caps: u64,
    rare: bool,
    /// A plain chat route, which the precomputed exclusions describe exactly.
    chat_route: bool,
    excluded: &'s [Option<Constraint>],
    context: &'s [u64],
    caps: &'s [u64],
}

impl Check<'_> {
    /// Why model `i` fails the fast check: a widened route checks every model this way.
    #[cold]
    #[inline(never)]
    fn failure(&self, i: usize, expected_cost: f64) -> Option<Constraint> {
        if !self.chat_route {
            return self.compiled.widened_failure(self, i, expected_cost);
        }
        match self.excluded[i] {
            Some(Constraint::CircuitOpen) => {
                let route = outside_route(&self.state.catalogue, i, 0, &[]);
                self.behind_open_circuit(i, expected_cost, route)
            }
            excluded => excluded.or_else(|| self.fit_failure(i)),
        }
    }

    /// Why model `i`, whose circuit is open, is removed: the request's own constraint when it
    /// fails one, else its circuit. "circuit_open" then counts only the models the request
    /// would have taken, which tells an upstream outage from an unsatisfiable request.
    fn behind_open_circuit(
        &self,
        i: usize,
        expected_cost: f64,
        route: Option<Constraint>,
    ) -> Option<Constraint> {
        let (live, cat) = (&self.state.live, &*self.state.catalogue);
        if !live.free_available && cat.free_variant[i] {
            return Some(Constraint::FreeQuota);
        }
        self.request_failure(i, expected_cost, route)
            .or(Some(Constraint::CircuitOpen))
    }

    /// The first of the request's constraints model `i` fails, `route` (what the route is
    /// for) first.
    fn request_failure(
        &self,
        i: usize,
        expected_cost: f64,
        route: Option<Constraint>,
    ) -> Option<Constraint> {
        route.or_else(|| self.fit_failure(i)).or_else(|| {
            if self.compiled.rare {
                self.compiled.rare_failure(self.state, i, expected_cost)
            } else {
                None
            }
        })
    }

    /// Which of context window, input modalities and required parameters model `i` fails, if
    /// any.
    fn fit_failure(&self, i: usize) -> Option<Constraint> {
        let modalities = self.compiled.modalities;
        if self.context[i] < self.needed_context {
            Some(Constraint::ContextWindow)
        } else if self.caps[i] & modalities != modalities {
            Some(Constraint::InputModalities)
        } else if self.caps[i] & self.caps_needed != self.caps_needed {
            Some(Constraint::RequiredParameters)
        } else {
            None
        }
    }

    /// The first constraint model `i` fails, given the expected cost of this request on it.
    #[inline(always)]
    pub fn first_failure(&self, i: usize, expected_cost: f64) -> Option<Constraint> {
        let fits = self.excluded[i].is_none()
            & (self.context[i] >= self.needed_context)
            & (self.caps[i] & self.required_caps == self.required_caps);
        if !fits {
            return self.failure(i, expected_cost);
        }
        if self.rare {
            self.compiled.rare_failure(self.state, i, expected_cost)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_patterns() {
        assert!(matches_model("openai/*", "openai/gpt-4o"));
        assert!(!matches_model("openai/*", "openai-community/x"));
        assert!(!matches_model("openai/*", "openai/"));
        assert!(matches_model("openai/gpt-4o", "openai/gpt-4o"));
        assert!(!matches_model("openai/gpt-4o", "openai/gpt-4o-mini"));
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = Constraint::ALL.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Constraint::ALL.len());
    }
}
