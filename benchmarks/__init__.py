"""Benchmark scripts, one per benchmark; `dalitrain bench NAME` runs them."""
