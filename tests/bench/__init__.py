"""Benchmarks (`make bench`): not part of the test pass/fail; each compares against a baseline in the same run."""
