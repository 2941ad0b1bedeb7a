"""Prefect flows, one module per user-facing job; each reads as the recipe."""
