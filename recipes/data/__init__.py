"""Datasets by name (:mod:`recipes.data.registry`). Importing anything under ``recipes.data`` registers every dataset:
the registry first, then the text modules, each of which registers its own (``text_json``; ``text_mds``, ``c4``;
``glue``)."""

from recipes.data import registry  # noqa: F401  (first: the text modules register into it)
from recipes.data.text import glue_data, text_data, text_streaming  # noqa: F401
