"""Exact and near-duplicate images: fingerprints and the index that groups them, and the dedup report."""
