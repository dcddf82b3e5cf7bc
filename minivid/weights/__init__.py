"""Shipped pretrained weights (float16) with a JSON beside each: SHA-256, training recipe, measured metrics."""
