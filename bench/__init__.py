"""Benchmarks of the router (`make bench`)."""
