"""dalitrain: train video action-recognition transformers on several datasets at once on DALI pipelines."""
__version__ = "0.1.0"
