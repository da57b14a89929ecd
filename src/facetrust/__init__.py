"""facetrust."""
