"""Command-line scripts: data preparation, weight conversion, benchmarks, README tables."""
