"""Test doubles and helpers for tests and benchmarks. Production code never imports this package."""
