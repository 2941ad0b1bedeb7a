"""The content-addressed store and its upkeep: objects named by their BLAKE3, which of them the ledger
refers to, garbage collection and verification."""
