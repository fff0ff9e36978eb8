"""Explanations of a prediction: the interface (base), LIME, Grad-CAM, overlays, the review page, the pointing game."""
