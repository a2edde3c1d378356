"""Across the air gap: bundles exported from one site and imported at another."""
