"""The model side: training pipelines, the registry and its seals, sweeps, and reproduction."""
