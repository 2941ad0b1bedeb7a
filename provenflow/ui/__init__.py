"""What provenflow shows in the Prefect UI, rendered from the ledger as plain values (rows, markdown,
SVG pictures): run names, the experiment leaderboard, lineage and model cards, drift histograms.
Pure functions over ledger rows and dicts; nothing here imports Prefect."""
