"""mriscan scan: the pipeline (predict, flag, row), the flags, the results CSV writer."""
