"""MultiTrain losses: projection, informative, uncertainty weighting."""
