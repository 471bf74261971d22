"""Benchmarks and reproducible result tables for aeloops (not part of the test suite)."""
