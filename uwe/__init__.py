"""uwe: Unified Work Embeddings — WorkBench curation, metrics, baselines and the UWE ranker.

Nothing happens on import: no device probing, no seeding, no logging configuration.
"""

__version__ = "0.1.0"
