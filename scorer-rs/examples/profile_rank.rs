use router_scorer::*;
use std::time::Instant;
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(10000);
    let mut seed = 7u64;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 1_000_000) as f64 / 1e6
    };
    let specs: Vec<ModelSpec> = (0..n)
        .map(|k| ModelSpec {
            id: format!("a{}/m{}", k % 50, k),
            context_length: 128000,
            prompt_price: 1e-7 + rnd() * 1e-5,
            completion_price: 1e-7 + rnd() * 5e-5,
            input_modalities: vec!["text".into()],
            text_output: true,
            supported_parameters: vec!["tools".into()],
            quality: rnd(),
            quality_estimated: false,
            ttft_s: 0.2 + rnd() * 3.0,
            tokens_per_s: 20.0 + rnd() * 300.0,
            latency_estimated: false,
        })
        .collect();
    let st = State::fresh(Catalogue::new("v", specs).unwrap());
    let c = Constraints::default();
    let p = Profile {
        prompt_tokens: 1000,
        output_tokens: 500,
    };
    let w = Mode::Speed.weights();
    let iters: usize = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(20_000_000 / n);
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let r = rank(&st, w, p, &c, 1).unwrap();
        std::hint::black_box(&r);
        times.push(t.elapsed().as_nanos());
    }
    times.sort();
    println!(
        "n={n} min={}ns p50={}ns per-model(min)={:.2}ns",
        times[0],
        times[iters / 2],
        times[0] as f64 / n as f64
    );
}
