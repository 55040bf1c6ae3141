"""Runnable examples: `simple` (the 0.1 README's app) and `full` (every feature)."""
