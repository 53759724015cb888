"""Benchmark of commit-to-delivery throughput and latency, run by `make bench`."""
