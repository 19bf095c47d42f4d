"""Disruptions under load: plans, local and kubectl disruptions, the harness (``burstbench resilience``)."""
