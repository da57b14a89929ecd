"""``python -m facetrust``: the same command line as ``facetrust``."""

from facetrust.cli import main

main()
