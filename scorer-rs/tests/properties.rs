//! Properties of the ranking that must hold for any catalogue and any request.

use proptest::prelude::*;
use router_scorer::catalogue::Kind;
use router_scorer::{
    rank, Catalogue, Constraints, FreeFilter, LiveStats, Mode, ModelSpec, Profile, Ranking,
    ScoreError, State, Weights,
};

const AUTHORS: [&str; 4] = ["acme", "bolt", "core", "dyna"];
const PARAMS: [&str; 3] = ["tools", "seed", "response_format"];
const MODALITIES: [&str; 3] = ["text", "image", "file"];

fn price() -> impl Strategy<Value = f64> {
    prop_oneof![
        2 => Just(0.0),
        1 => Just(-1.0),
        2 => prop::sample::select(vec![1e-7, 5e-7, 1e-6, 3e-6, 1.5e-5]),
        5 => 1e-9..1e-4f64,
    ]
}

fn model(k: usize) -> impl Strategy<Value = ModelSpec> {
    (
        prop::sample::select(AUTHORS.to_vec()),
        prop::sample::select(vec![4_096u64, 32_768, 128_000, 1_000_000]),
        price(),
        price(),
        prop::sample::subsequence(MODALITIES.to_vec(), 0..=3),
        prop::sample::subsequence(PARAMS.to_vec(), 0..=3),
        prop_oneof![Just(0.5), 0.0..=1.0f64],
        prop_oneof![Just(1.0), 0.0..5.0f64],
        prop_oneof![Just(60.0), 1.0..400.0f64],
        prop_oneof![
            6 => Just(vec!["text"]),
            1 => Just(vec!["image", "text"]),
            1 => Just(vec!["audio"]),
        ],
        prop_oneof![8 => Just(Kind::Chat), 1 => Just(Kind::MetaRouter), 1 => Just(Kind::Guard)],
    )
        .prop_map(
            move |(
                author,
                context_length,
                prompt_price,
                completion_price,
                mods,
                params,
                quality,
                ttft_s,
                tokens_per_s,
                outputs,
                kind,
            )| {
                ModelSpec {
                    id: format!("{author}/m{k}"),
                    context_length,
                    prompt_price,
                    completion_price,
                    input_modalities: mods.into_iter().map(String::from).collect(),
                    output_modalities: outputs.into_iter().map(String::from).collect(),
                    kind,
                    realtime: k % 5 != 4,
                    supported_parameters: params.into_iter().map(String::from).collect(),
                    quality,
                    quality_estimated: false,
                    ttft_s,
                    tokens_per_s,
                    latency_estimated: false,
                }
            },
        )
}

fn catalogue() -> impl Strategy<Value = Vec<ModelSpec>> {
    (1usize..40).prop_flat_map(|n| (0..n).map(model).collect::<Vec<_>>())
}

fn weights() -> impl Strategy<Value = Weights> {
    prop_oneof![
        prop::sample::select(Mode::ALL.to_vec()).prop_map(Mode::weights),
        (0.0..1.0f64, 0.0..1.0f64, 0.01..1.0f64)
            .prop_map(|(l, c, q)| Weights::normalised(l, c, q).unwrap()),
    ]
}

fn profile() -> impl Strategy<Value = Profile> {
    (0u64..20_000, 0u64..4_000).prop_map(|(prompt_tokens, output_tokens)| Profile {
        prompt_tokens,
        output_tokens,
    })
}

fn constraints() -> impl Strategy<Value = Constraints> {
    (
        prop::sample::subsequence(vec!["image", "file"], 0..=1),
        prop::sample::subsequence(PARAMS.to_vec(), 0..=1),
        prop::option::of(prop::sample::select(vec![0.1, 1.0, 10.0])),
        prop::option::of(prop::sample::select(vec![0.001, 0.1])),
        prop::option::of(0.5..4.0f64),
        prop::sample::subsequence(vec!["acme/*", "bolt/m1", "core/*"], 0..=2),
        prop::sample::subsequence(AUTHORS.to_vec(), 0..=1),
        prop::sample::select(vec![FreeFilter::Any, FreeFilter::Only, FreeFilter::Exclude]),
        prop::sample::subsequence(vec!["image", "audio"], 0..=1),
        prop::sample::subsequence(vec!["acme/m2", "core/m3", "dyna/m4"], 0..=2),
    )
        .prop_map(
            |(
                mods,
                params,
                max_prompt,
                max_cost,
                max_ttft,
                deny,
                providers,
                free,
                outputs,
                allow,
            )| Constraints {
                output_modalities: outputs.into_iter().map(String::from).collect(),
                allow_models: allow.into_iter().map(String::from).collect(),
                input_modalities: mods.into_iter().map(String::from).collect(),
                required_parameters: params.into_iter().map(String::from).collect(),
                max_prompt_price_per_mtok: max_prompt,
                max_request_cost_usd: max_cost,
                max_ttft_s: max_ttft,
                deny_models: deny.into_iter().map(String::from).collect(),
                allow_providers: providers.into_iter().map(String::from).collect(),
                free,
                ..Constraints::default()
            },
        )
}

fn state(specs: Vec<ModelSpec>) -> State {
    State::fresh(Catalogue::new("v", specs).unwrap())
}

fn ids(st: &State, r: &Ranking) -> Vec<String> {
    r.candidates
        .iter()
        .map(|c| st.catalogue.ids[c.index].clone())
        .collect()
}

fn satisfies(spec: &ModelSpec, c: &Constraints, p: Profile, cost: f64) -> bool {
    let author = spec.id.split('/').next().unwrap();
    let free = spec.prompt_price == 0.0 && spec.completion_price == 0.0;
    let matches = |pat: &String| match pat.strip_suffix("/*") {
        Some(a) => author == a,
        None => *pat == spec.id,
    };
    let outputs: Vec<&str> = spec.output_modalities.iter().map(String::as_str).collect();
    let wanted: Vec<&str> = c.output_modalities.iter().map(String::as_str).collect();
    let outputs_fit = if wanted.is_empty() {
        outputs == ["text"]
    } else {
        wanted.iter().all(|m| outputs.contains(m))
            && outputs.iter().all(|m| *m == "text" || wanted.contains(m))
    };
    spec.prompt_price >= 0.0
        && spec.completion_price >= 0.0
        && spec.realtime
        && outputs_fit
        && (spec.kind == Kind::Chat || c.allow_models.contains(&spec.id))
        && (c.allow_models.is_empty() || c.allow_models.iter().any(matches))
        && spec.context_length >= c.min_context.max(p.prompt_tokens + p.output_tokens)
        && c.input_modalities
            .iter()
            .all(|m| spec.input_modalities.contains(m))
        && c.required_parameters
            .iter()
            .all(|m| spec.supported_parameters.contains(m))
        && !c.deny_models.iter().any(matches)
        && (c.allow_providers.is_empty() || c.allow_providers.iter().any(|a| a == author))
        && match c.free {
            FreeFilter::Any => true,
            FreeFilter::Only => free,
            FreeFilter::Exclude => !free,
        }
        && c.max_prompt_price_per_mtok
            .is_none_or(|m| spec.prompt_price <= m / 1e6)
        && c.max_request_cost_usd.is_none_or(|m| cost <= m)
        && c.max_ttft_s.is_none_or(|m| spec.ttft_s <= m)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn sorted_deterministic_and_within_constraints(
        specs in catalogue(), w in weights(), p in profile(), c in constraints(), k in 1usize..8,
    ) {
        let st = state(specs.clone());
        match rank(&st, w, p, &c, k) {
            Ok(r) => {
                prop_assert_eq!(&r, &rank(&st, w, p, &c, k).unwrap());
                prop_assert!(r.candidates.len() == k.min(r.eligible));
                for pair in r.candidates.windows(2) {
                    let (a, b) = (&pair[0], &pair[1]);
                    prop_assert!(a.score > b.score
                        || (a.score == b.score && st.catalogue.ids[a.index] < st.catalogue.ids[b.index]));
                }
                for cand in &r.candidates {
                    prop_assert!(satisfies(&specs[cand.index], &c, p, cand.expected_cost_usd));
                    for term in [cand.latency_term, cand.cost_term, cand.quality_term] {
                        prop_assert!((0.0..=1.0).contains(&term));
                    }
                }
                let eligible = specs.iter().enumerate().filter(|(i, s)| {
                    let cost = p.prompt_tokens as f64 * s.prompt_price + p.output_tokens as f64 * s.completion_price;
                    let _ = i;
                    satisfies(s, &c, p, cost)
                }).count();
                prop_assert_eq!(r.eligible, eligible);
                prop_assert_eq!(r.eligible + r.removed.iter().map(|(_, n)| n).sum::<usize>(), specs.len());
            }
            Err(ScoreError::NoEligibleModel(removed)) => {
                prop_assert_eq!(removed.iter().map(|(_, n)| n).sum::<usize>(), specs.len());
            }
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }

    #[test]
    fn shortlist_finds_the_exact_top_k(
        specs in catalogue(), w in weights(), p in profile(), k in 1usize..8,
    ) {
        let st = state(specs);
        if let Ok(all) = rank(&st, w, p, &Constraints::default(), usize::MAX) {
            let top = rank(&st, w, p, &Constraints::default(), k).unwrap();
            prop_assert_eq!(&top.candidates[..], &all.candidates[..k.min(all.candidates.len())]);
        }
    }

    /// Near-ties that the cheap logarithm cannot separate: the shortlist must still be exact.
    #[test]
    fn shortlist_is_exact_among_near_ties(
        spread in prop::collection::vec((0.0..1.0f64, 0.0..1.0f64), 50..150),
        w in weights(), k in 1usize..6,
    ) {
        let mut specs: Vec<ModelSpec> = spread
            .iter()
            .enumerate()
            .map(|(i, (u, v))| ModelSpec {
                id: format!("near/m{i}"),
                context_length: 1_000_000,
                prompt_price: 1e-6 * (1.0 + u * 1e-3),
                completion_price: 2e-6 * (1.0 + u * 1e-3),
                input_modalities: vec![],
                output_modalities: vec!["text".into()],
                kind: Kind::Chat,
                realtime: true,
                supported_parameters: vec![],
                quality: 0.5 + v * 1e-4,
                quality_estimated: false,
                ttft_s: 1.0,
                tokens_per_s: 50.0,
                latency_estimated: false,
            })
            .collect();
        for (id, price) in [("anchor/cheap", 1e-9), ("anchor/dear", 1e-3)] {
            specs.push(ModelSpec {
                id: id.to_string(),
                prompt_price: price,
                completion_price: price,
                quality: 0.0,
                ..specs[0].clone()
            });
        }
        let st = state(specs);
        let p = Profile { prompt_tokens: 1000, output_tokens: 500 };
        let all = rank(&st, w, p, &Constraints::default(), usize::MAX).unwrap();
        let top = rank(&st, w, p, &Constraints::default(), k).unwrap();
        prop_assert_eq!(&top.candidates[..], &all.candidates[..k]);
    }

    #[test]
    fn catalogue_order_does_not_matter(
        specs in catalogue(), w in weights(), p in profile(), c in constraints(), seed in any::<u64>(),
    ) {
        let mut shuffled = specs.clone();
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let (a, b) = (state(specs), state(shuffled));
        match (rank(&a, w, p, &c, 5), rank(&b, w, p, &c, 5)) {
            (Ok(ra), Ok(rb)) => {
                prop_assert_eq!(ids(&a, &ra), ids(&b, &rb));
                let scores = |r: &Ranking| r.candidates.iter().map(|c| c.score).collect::<Vec<_>>();
                prop_assert_eq!(scores(&ra), scores(&rb));
                prop_assert_eq!(ra.removed, rb.removed);
            }
            (Err(ea), Err(eb)) => prop_assert_eq!(ea, eb),
            (ra, rb) => prop_assert!(false, "{ra:?} vs {rb:?}"),
        }
    }

    #[test]
    fn cheaper_never_lowers_the_cost_term_and_better_never_lowers_the_score(
        specs in catalogue(), w in weights(), p in profile(), pick in any::<prop::sample::Index>(),
        cheaper in 0.0..=1.0f64, better in 0.0..=1.0f64,
    ) {
        let before = state(specs.clone());
        let Ok(r0) = rank(&before, w, p, &Constraints::default(), usize::MAX) else { return Ok(()); };
        let target = r0.candidates[pick.index(r0.candidates.len())].clone();
        let term = |r: &Ranking| r.candidates.iter().find(|c| c.index == target.index).unwrap().clone();

        let mut lowered = specs.clone();
        lowered[target.index].prompt_price *= cheaper;
        lowered[target.index].completion_price *= cheaper;
        let r1 = rank(&state(lowered), w, p, &Constraints::default(), usize::MAX).unwrap();
        prop_assert!(term(&r1).cost_term >= target.cost_term);

        let mut raised = specs;
        let q = &mut raised[target.index].quality;
        *q += (1.0 - *q) * better;
        let r2 = rank(&state(raised), w, p, &Constraints::default(), usize::MAX).unwrap();
        prop_assert!(term(&r2).score >= target.score);
    }

    #[test]
    fn a_model_that_gets_faster_never_drops_in_speed_mode(
        specs in catalogue(), p in profile(), pick in any::<prop::sample::Index>(),
        sooner in 0.0..=1.0f64, quicker in 1.0..=50.0f64,
    ) {
        let w = Mode::Speed.weights();
        let Ok(r0) = rank(&state(specs.clone()), w, p, &Constraints::default(), usize::MAX) else { return Ok(()); };
        let position = pick.index(r0.candidates.len());
        let target = r0.candidates[position].index;
        let mut faster = specs;
        faster[target].ttft_s *= sooner;
        faster[target].tokens_per_s *= quicker;
        let r1 = rank(&state(faster), w, p, &Constraints::default(), usize::MAX).unwrap();
        let after = r1.candidates.iter().position(|c| c.index == target).unwrap();
        prop_assert!(after <= position, "rank {position} -> {after}");
    }

    /// Cheaper while still paid: a model that turns free is as good on cost as the cheapest
    /// paid model, no better, so the floor moves with it (see the README).
    #[test]
    fn a_model_that_gets_cheaper_never_drops_in_cost_mode(
        specs in catalogue(), p in profile(), pick in any::<prop::sample::Index>(),
        cheaper in 1e-3..=1.0f64,
    ) {
        let w = Mode::Cost.weights();
        let Ok(r0) = rank(&state(specs.clone()), w, p, &Constraints::default(), usize::MAX) else { return Ok(()); };
        let position = pick.index(r0.candidates.len());
        let target = r0.candidates[position].index;
        let mut lowered = specs;
        lowered[target].prompt_price *= cheaper;
        lowered[target].completion_price *= cheaper;
        let r1 = rank(&state(lowered), w, p, &Constraints::default(), usize::MAX).unwrap();
        let after = r1.candidates.iter().position(|c| c.index == target).unwrap();
        prop_assert!(after <= position, "rank {position} -> {after}");
    }

    #[test]
    fn free_models_are_no_better_on_cost_than_the_cheapest_paid_one(
        specs in catalogue(), w in weights(), p in profile(),
    ) {
        let st = state(specs);
        let Ok(r) = rank(&st, w, p, &Constraints::default(), usize::MAX) else { return Ok(()); };
        let cheapest_paid = r.candidates.iter()
            .filter(|c| c.expected_cost_usd > 0.0)
            .min_by(|a, b| a.expected_cost_usd.total_cmp(&b.expected_cost_usd));
        for c in &r.candidates {
            prop_assert!(c.cost_term <= 1.0);
            if c.expected_cost_usd == 0.0 {
                prop_assert_eq!(c.cost_term, 1.0);
            }
        }
        if let Some(paid) = cheapest_paid {
            prop_assert_eq!(paid.cost_term, 1.0);
        }
    }

    /// The shortlist's cached latencies must follow every update of the figures.
    #[test]
    fn the_shortlist_follows_live_updates(
        specs in catalogue(), p in profile(), pick in any::<prop::sample::Index>(),
        ttft in 0.0..1.0f64, k in 1usize..4,
    ) {
        let engine = router_scorer::Engine::new(Catalogue::new("v", specs.clone()).unwrap());
        let w = Mode::Speed.weights();
        let none = Constraints::default();
        let _ = engine.rank(w, p, &none, k);
        let id = specs[pick.index(specs.len())].id.clone();
        let quick = LiveStats { ttft_s: Some(ttft), tokens_per_s: Some(1e4), ..LiveStats::default() };
        engine.update_stats(&[(id, quick)]).unwrap();
        if let (Ok((_, top)), Ok((_, all))) = (engine.rank(w, p, &none, k), engine.rank(w, p, &none, usize::MAX)) {
            prop_assert_eq!(&top.candidates[..], &all.candidates[..k.min(all.candidates.len())]);
        }
    }

    #[test]
    fn an_open_circuit_counts_only_a_model_the_request_would_take(
        specs in catalogue(), p in profile(), c in constraints(), pick in any::<prop::sample::Index>(),
    ) {
        let engine = router_scorer::Engine::new(Catalogue::new("v", specs.clone()).unwrap());
        let spec = &specs[pick.index(specs.len())];
        let open = LiveStats { circuit_open: true, ..LiveStats::default() };
        engine.update_stats(&[(spec.id.clone(), open)]).unwrap();
        let removed = match engine.rank(Mode::Speed.weights(), p, &c, usize::MAX) {
            Ok((_, r)) => r.removed,
            Err(ScoreError::NoEligibleModel(removed)) => removed,
            Err(other) => return Err(TestCaseError::fail(format!("unexpected error {other}"))),
        };
        let resting: usize = removed.iter().filter(|(k, _)| k.name() == "circuit_open").map(|(_, n)| n).sum();
        let cost = p.prompt_tokens as f64 * spec.prompt_price + p.output_tokens as f64 * spec.completion_price;
        prop_assert_eq!(resting, usize::from(satisfies(spec, &c, p, cost)));
    }

    #[test]
    fn open_circuits_and_live_latency_are_honoured(
        specs in catalogue(), p in profile(), pick in any::<prop::sample::Index>(), ttft in 0.0..10.0f64,
    ) {
        let engine = router_scorer::Engine::new(Catalogue::new("v", specs.clone()).unwrap());
        let id = specs[pick.index(specs.len())].id.clone();
        let slow = LiveStats { ttft_s: Some(ttft), ..LiveStats::default() };
        engine.update_stats(&[(id.clone(), slow)]).unwrap();
        if let Ok((st, r)) = engine.rank(Mode::Speed.weights(), p, &Constraints::default(), usize::MAX) {
            if let Some(c) = r.candidates.iter().find(|c| st.catalogue.ids[c.index] == id) {
                prop_assert_eq!(c.expected_latency_s, ttft + p.output_tokens as f64 / specs[c.index].tokens_per_s);
            }
        }
        let open = LiveStats { circuit_open: true, ..LiveStats::default() };
        engine.update_stats(&[(id.clone(), open)]).unwrap();
        if let Ok((st, r)) = engine.rank(Mode::Speed.weights(), p, &Constraints::default(), usize::MAX) {
            prop_assert!(r.candidates.iter().all(|c| st.catalogue.ids[c.index] != id));
        }
    }
}
