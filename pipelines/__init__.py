"""DALI graphs (`@pipeline_def`) and the iterator that turns their outputs into a `Batch`."""
