"""Real datasets, sequence files and the Lightning data module."""

from d3lm.data import (
    recipes,  # noqa: F401  (registers the dataset recipes)
    synthetic,  # noqa: F401  (registers the synthetic sets with known entropy)
)
