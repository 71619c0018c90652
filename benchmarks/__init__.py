"""d360calling's benchmarks: ``python -m benchmarks`` (see README, "Benchmarks")."""
