"""Tools for other libraries' test suites: backends, a pytest plugin, assertions, strategies."""

from .backends import Backend, selected_backends

__all__ = ["Backend", "selected_backends"]
