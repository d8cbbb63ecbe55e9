"""Edges of the product: Redis serving store, website publisher, audit."""
