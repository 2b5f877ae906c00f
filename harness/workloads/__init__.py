"""Workload building blocks shared by scenarios (data generators, validators, loaders)."""
