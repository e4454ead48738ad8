"""Data quality: Great Expectations suites and the per-partition quality score."""
