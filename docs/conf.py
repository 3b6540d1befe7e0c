"""Sphinx configuration for the adaptive-ref docs.

Build (warnings are errors, as in CI)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
    python -m sphinx -W --keep-going -b doctest docs docs/_build/doctest

The per-optimizer pages (``docs/optimizers/``) and the generated tables (``docs/_generated/``)
are written by ``docs/_ext/registry_pages.py`` at the start of every build, from
:data:`adaptive_ref.REGISTRY`; they are git-ignored. The figures are drawn by the scripts in
``docs/figures/`` through matplotlib's ``plot`` directive while the pages are read.

Writing a page (MyST Markdown): math as ``$...$``, ``$$...$$`` or a ``{math}`` block; a check that
must run as ``{doctest}`` fenced block (a plain ```` ```python ```` block with ``>>>`` is not run);
``:skipif: torch is None`` (also ``jax``, ``da``) for a block that needs an optional backend;
reST-only directives such as ``plot`` inside an ``{eval-rst}`` block. New top-level pages and
``derivations/*`` are picked up by the toctrees that ``registry_pages.more_toctree`` writes.
"""

from __future__ import annotations

import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
sys.path.insert(0, ROOT)  # the package, importable without installing it
sys.path.insert(0, os.path.join(DOCS, "_ext"))

os.environ.setdefault("MPLBACKEND", "Agg")

import adaptive_ref  # noqa: E402

project = "adaptive-ref"
author = "adaptive-ref contributors"
copyright = "adaptive-ref contributors"  # noqa: A001
release = adaptive_ref.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    "matplotlib.sphinxext.plot_directive",
    "registry_pages",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store", "**/README.md"]
templates_path: list[str] = []

# MyST: $...$ and $$...$$ math, amsmath environments, ::: fences, definition lists,
# anchors on headings down to ###.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist", "substitution"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# autodoc: signatures as written; type hints in the description, not the signature.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
napoleon_google_docstring = False
napoleon_numpy_docstring = True

# doctest: every ``{doctest}`` block and every ``>>>`` example in a docstring runs.
doctest_global_setup = """
import numpy as np
try:
    import torch
except ImportError:
    torch = None
try:
    import jax
except ImportError:
    jax = None
try:
    import dask.array as da
except ImportError:
    da = None
"""
doctest_default_flags = (
    __import__("doctest").ELLIPSIS
    | __import__("doctest").NORMALIZE_WHITESPACE
    | __import__("doctest").DONT_ACCEPT_TRUE_FOR_1
)

# Figures: one PNG per plot (the build stays fast); the link to each figure's source is shown.
plot_formats = [("png", 110)]
plot_html_show_formats = False
plot_html_show_source_link = True
plot_include_source = False
plot_rcparams = {"figure.autolayout": False, "savefig.bbox": "tight"}
plot_apply_rcparams = True
plot_basedir = DOCS

html_theme = "furo"
html_title = f"adaptive-ref {release}"
html_static_path: list[str] = []
html_show_sourcelink = True

# No network during the build: MathJax is referenced from the theme's default location and only
# fetched by the reader's browser.
