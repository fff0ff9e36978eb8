"""From decoded pixels to model inputs: the one preprocessing path, quality facts, loading, splits."""
