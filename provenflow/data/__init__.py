"""The data side: reading sources (dialects, JSON Lines, Parquet types), dataset versions, column
roles and features, validation suites and the checks a run's data gets."""
