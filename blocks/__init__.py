"""Custom Prefect blocks: configuration and credentials users edit in the Prefect UI."""
