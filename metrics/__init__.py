"""Metrics: the end-to-end cycle-time report across every stage. Issue 5."""
