"""Micro-benchmarks for fastapi-cloud-tasks: `python -m benchmarks` runs them all."""
