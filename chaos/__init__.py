"""Fault-injection suite: real processes under load, faults injected, nothing lost or leaked."""
