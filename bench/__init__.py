"""Benchmarks for aclaudit (not part of the service). See bench/check.py."""
