"""d360calling's benchmarks: ``python -m benchmarks`` (see docs/benchmarks.md)."""
