"""Data side of dalitrain: manifests, scanning, dataset specs, sampling plans, the synthetic corpus."""
