"""Watching a model in production: drift, performance from labels (and estimated before them),
ground-truth feedback, shadow comparisons and the stored reports."""
