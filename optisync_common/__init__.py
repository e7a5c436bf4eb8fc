"""Shared plumbing for every OptiSync service: settings, Kafka clients, logging, metrics, health.

Nothing domain-specific lives here; the event contract is in `schemas/`.
"""
