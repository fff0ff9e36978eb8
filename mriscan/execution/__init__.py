"""Where work runs: local worker processes (local) or an existing Dask cluster (cluster)."""
