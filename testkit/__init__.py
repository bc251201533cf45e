"""What the tests and the benchmarks share: the fake OpenRouter (`testkit.fake_openrouter`), the
plain-Python reference of the scorer (`testkit.reference_scorer`) and the router's gRPC server in
a thread (`testkit.servers`). Nothing here is a test; nothing in the router imports it."""
