//! The model catalogue in columnar form: one vector per attribute, indexed by model.

use std::collections::HashMap;

use crate::error::ScoreError;

/// Input modalities a model can accept, in bit order; output modalities use the same bits.
pub const MODALITIES: [&str; 5] = ["text", "image", "file", "audio", "video"];

/// The output bit of a modality the router has no name for (embeddings, speech, …).
pub const OTHER_OUTPUT: u8 = 1 << MODALITIES.len();
/// The output of a chat model: text and nothing else.
pub const TEXT_ONLY: u8 = 1;

/// What a model is for, beyond its modalities: chat routes take only chat models unless the
/// caller names another kind by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Chat,
    /// Routes requests to other models itself (`openrouter/auto`, `openrouter/free`).
    MetaRouter,
    /// Classifies content instead of answering it (guard and safety models).
    Guard,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Chat, Kind::MetaRouter, Kind::Guard];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Chat => "chat",
            Kind::MetaRouter => "meta_router",
            Kind::Guard => "guard",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// One model as the service describes it; prices are USD per token, negative for dynamic pricing.
/// Python makes it as `service._scorer.ModelSpec` (see the bindings) and reads its fields.
#[cfg_attr(feature = "python", pyo3::pyclass(name = "ModelSpec", frozen, get_all))]
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub id: String,
    pub context_length: u64,
    pub prompt_price: f64,
    pub completion_price: f64,
    pub input_modalities: Vec<String>,
    pub output_modalities: Vec<String>,
    pub kind: Kind,
    /// False for rows not served in real time (batch endpoints, moving aliases).
    pub realtime: bool,
    pub supported_parameters: Vec<String>,
    pub quality: f64,
    pub quality_estimated: bool,
    pub ttft_s: f64,
    pub tokens_per_s: f64,
    pub latency_estimated: bool,
}

#[derive(Debug)]
pub struct Catalogue {
    pub version: String,
    pub ids: Vec<String>,
    pub authors: Vec<String>,
    pub context: Vec<u64>,
    pub prompt_price: Vec<f64>,
    pub completion_price: Vec<f64>,
    /// Input modalities in the low `MODALITY_BITS` bits, supported parameters above them.
    pub caps: Vec<u64>,
    pub quality: Vec<f64>,
    pub quality_estimated: Vec<bool>,
    pub ttft_s: Vec<f64>,
    pub tokens_per_s: Vec<f64>,
    pub latency_estimated: Vec<bool>,
    /// Output modalities in `MODALITIES` bit order, unknown ones as `OTHER_OUTPUT`.
    pub outputs: Vec<u8>,
    pub kinds: Vec<Kind>,
    /// OpenRouter's `:free` variants, which share one small allowance per account.
    pub free_variant: Vec<bool>,
    pub realtime: Vec<bool>,
    /// Model id to index.
    pub by_id: HashMap<String, usize>,
    param_bits: HashMap<String, u64>,
}

/// Low bits of a capability word reserved for input modalities.
pub const MODALITY_BITS: u32 = 8;

/// Output modalities as bits; a name the router does not know sets `OTHER_OUTPUT`.
pub fn output_bits(names: &[String]) -> u8 {
    names.iter().fold(0u8, |bits, m| {
        bits | modality_bit(m).map_or(OTHER_OUTPUT, |b| b as u8)
    })
}

pub fn modality_bit(name: &str) -> Option<u64> {
    MODALITIES
        .iter()
        .position(|m| *m == name)
        .map(|i| 1u64 << i)
}

/// Prices above this (a million USD per million tokens) are refused as nonsense.
pub const MAX_PRICE_PER_TOKEN: f64 = 1.0;
/// Time to first token is at most a day.
pub const MAX_TTFT_S: f64 = 86_400.0;
/// Throughput is at least one token in a thousand seconds.
pub const MIN_TOKENS_PER_S: f64 = 1e-3;

/// Bounds that keep every expected latency finite; the message names what is wrong.
pub fn check_latency(ttft_s: Option<f64>, tokens_per_s: Option<f64>) -> Result<(), &'static str> {
    if ttft_s.is_some_and(|t| !(0.0..=MAX_TTFT_S).contains(&t)) {
        return Err("time to first token must lie in [0, 86400] seconds");
    }
    if tokens_per_s.is_some_and(|t| !(t.is_finite() && t >= MIN_TOKENS_PER_S)) {
        return Err("throughput must be a number of at least 0.001 tokens per second");
    }
    Ok(())
}

fn invalid(id: &str, what: &str) -> ScoreError {
    ScoreError::InvalidCatalogue(format!("model {id:?}: {what}"))
}

impl ModelSpec {
    /// Refuses a malformed model: its id, a price, its quality, its latency figures or an input
    /// modality. (Whether ids are unique is the catalogue's to check.)
    pub fn check(&self) -> Result<(), ScoreError> {
        self.check_figures()?;
        self.input_bits().map(|_| ())
    }

    fn check_figures(&self) -> Result<(), ScoreError> {
        let id = self.id.as_str();
        match id.split_once('/') {
            Some((author, name)) if !author.is_empty() && !name.is_empty() => {}
            _ => return Err(invalid(id, "id must look like author/name")),
        }
        for (price, what) in [
            (self.prompt_price, "prompt price"),
            (self.completion_price, "completion price"),
        ] {
            if !(price.is_finite() && price <= MAX_PRICE_PER_TOKEN) {
                return Err(invalid(
                    id,
                    &format!(
                        "{what} must be a number of at most {MAX_PRICE_PER_TOKEN} USD per token"
                    ),
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.quality) {
            return Err(invalid(id, "quality must lie in [0, 1]"));
        }
        check_latency(Some(self.ttft_s), Some(self.tokens_per_s)).map_err(|what| invalid(id, what))
    }

    /// The input modalities as bits of a capability word.
    fn input_bits(&self) -> Result<u64, ScoreError> {
        self.input_modalities.iter().try_fold(0, |caps, m| {
            let bit = modality_bit(m)
                .ok_or_else(|| invalid(&self.id, &format!("unknown input modality {m:?}")))?;
            Ok(caps | bit)
        })
    }
}

impl Catalogue {
    pub fn new(version: impl Into<String>, specs: Vec<ModelSpec>) -> Result<Self, ScoreError> {
        let n = specs.len();
        let mut cat = Catalogue {
            version: version.into(),
            ids: Vec::with_capacity(n),
            authors: Vec::with_capacity(n),
            context: Vec::with_capacity(n),
            prompt_price: Vec::with_capacity(n),
            completion_price: Vec::with_capacity(n),
            caps: Vec::with_capacity(n),
            quality: Vec::with_capacity(n),
            quality_estimated: Vec::with_capacity(n),
            ttft_s: Vec::with_capacity(n),
            tokens_per_s: Vec::with_capacity(n),
            latency_estimated: Vec::with_capacity(n),
            outputs: Vec::with_capacity(n),
            kinds: Vec::with_capacity(n),
            free_variant: Vec::with_capacity(n),
            realtime: Vec::with_capacity(n),
            by_id: HashMap::with_capacity(n),
            param_bits: HashMap::new(),
        };
        for (i, spec) in specs.into_iter().enumerate() {
            spec.check_figures()?;
            if cat.by_id.insert(spec.id.clone(), i).is_some() {
                return Err(invalid(&spec.id, "listed twice"));
            }
            let mut caps = spec.input_bits()?;
            for p in &spec.supported_parameters {
                caps |= cat.param_bit_or_insert(&spec.id, p)?;
            }
            let author = spec.id.split_once('/').map(|(a, _)| a).unwrap_or_default();
            cat.authors.push(author.to_string());
            cat.context.push(spec.context_length);
            cat.prompt_price.push(spec.prompt_price);
            cat.completion_price.push(spec.completion_price);
            cat.caps.push(caps);
            cat.quality.push(spec.quality);
            cat.quality_estimated.push(spec.quality_estimated);
            cat.ttft_s.push(spec.ttft_s);
            cat.tokens_per_s.push(spec.tokens_per_s);
            cat.latency_estimated.push(spec.latency_estimated);
            cat.outputs.push(output_bits(&spec.output_modalities));
            cat.kinds.push(spec.kind);
            cat.free_variant.push(spec.id.ends_with(":free"));
            cat.realtime.push(spec.realtime);
            cat.ids.push(spec.id);
        }
        Ok(cat)
    }

    fn param_bit_or_insert(&mut self, id: &str, name: &str) -> Result<u64, ScoreError> {
        if let Some(bit) = self.param_bits.get(name) {
            return Ok(*bit);
        }
        let count = self.param_bits.len() as u32;
        if count >= 64 - MODALITY_BITS {
            return Err(invalid(
                id,
                "the catalogue names more than 56 distinct parameters",
            ));
        }
        let bit = 1u64 << (MODALITY_BITS + count);
        self.param_bits.insert(name.to_string(), bit);
        Ok(bit)
    }

    /// The bit of a supported parameter, or `None` when no model in the catalogue supports it.
    pub fn param_bit(&self, name: &str) -> Option<u64> {
        self.param_bits.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Dynamic routers price each request on the fly; their listed price is negative.
    pub fn has_dynamic_price(&self, i: usize) -> bool {
        self.prompt_price[i] < 0.0 || self.completion_price[i] < 0.0
    }

    pub fn is_free(&self, i: usize) -> bool {
        self.prompt_price[i] == 0.0 && self.completion_price[i] == 0.0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn spec(id: &str) -> ModelSpec {
        ModelSpec {
            id: id.to_string(),
            context_length: 128_000,
            prompt_price: 1e-6,
            completion_price: 2e-6,
            input_modalities: vec!["text".into()],
            output_modalities: vec!["text".into()],
            kind: Kind::Chat,
            realtime: true,
            supported_parameters: vec!["tools".into()],
            quality: 0.5,
            quality_estimated: false,
            ttft_s: 0.5,
            tokens_per_s: 100.0,
            latency_estimated: false,
        }
    }

    #[test]
    fn builds_columns_in_input_order() {
        let cat = Catalogue::new("v1", vec![spec("b/two"), spec("a/one")]).unwrap();
        assert_eq!(cat.ids, vec!["b/two", "a/one"]);
        assert_eq!(cat.authors, vec!["b", "a"]);
        assert_eq!(cat.len(), 2);
        assert_eq!(cat.param_bit("tools"), Some(1 << MODALITY_BITS));
        assert_eq!(cat.param_bit("seed"), None);
    }

    #[test]
    fn rejects_duplicates_and_bad_values() {
        let dup = Catalogue::new("v", vec![spec("a/x"), spec("a/x")]);
        assert!(matches!(dup, Err(ScoreError::InvalidCatalogue(m)) if m.contains("twice")));
        for broken in [
            ModelSpec {
                quality: 1.5,
                ..spec("a/x")
            },
            ModelSpec {
                tokens_per_s: 0.0,
                ..spec("a/x")
            },
            ModelSpec {
                prompt_price: f64::NAN,
                ..spec("a/x")
            },
            ModelSpec {
                id: "noslash".into(),
                ..spec("a/x")
            },
            ModelSpec {
                input_modalities: vec!["smell".into()],
                ..spec("a/x")
            },
        ] {
            assert!(Catalogue::new("v", vec![broken]).is_err());
        }
    }

    #[test]
    fn a_model_refuses_itself_as_the_catalogue_would() {
        assert_eq!(spec("a/x").check(), Ok(()));
        for broken in [
            ModelSpec {
                input_modalities: vec!["text".into(), "smell".into()],
                ..spec("a/x")
            },
            ModelSpec {
                completion_price: 2.0,
                ..spec("a/x")
            },
            ModelSpec {
                ttft_s: -1.0,
                ..spec("a/x")
            },
        ] {
            let alone = broken.check();
            assert!(matches!(alone, Err(ScoreError::InvalidCatalogue(_))));
            assert_eq!(alone, Catalogue::new("v", vec![broken]).map(|_| ()));
        }
    }

    #[test]
    fn output_modalities_become_bits() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(output_bits(&names(&["text"])), TEXT_ONLY);
        assert_eq!(output_bits(&names(&["image", "text"])), 0b11);
        assert_eq!(output_bits(&names(&["embeddings"])), OTHER_OUTPUT);
        assert_eq!(output_bits(&[]), 0);
    }

    #[test]
    fn negative_price_marks_a_dynamic_router() {
        let cat = Catalogue::new(
            "v",
            vec![ModelSpec {
                prompt_price: -1.0,
                completion_price: -1.0,
                ..spec("openrouter/auto")
            }],
        )
        .unwrap();
        assert!(cat.has_dynamic_price(0));
        assert!(!cat.is_free(0));
    }
}
