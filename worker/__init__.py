"""Webhook worker: signing, retry policy, egress checks and the HTTP delivery attempt."""
