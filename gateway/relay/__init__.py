"""Relay: per-destination workers that drain the outbox to upstream APIs."""
