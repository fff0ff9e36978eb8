"""Reading inputs: find candidate files, read each by its content (one reader per format), hash, write atomically."""
