"""mriscan: brain-tumour triage for 2-D MRI slices (a research and triage aid, not a diagnostic device)."""

__version__ = "0.1.0"
