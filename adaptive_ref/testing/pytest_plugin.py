"""pytest plugin: a ``backend`` / ``xp`` fixture over every installed array backend.

Use it from another project's ``conftest.py`` with ``pytest_plugins =
["adaptive_ref.testing.pytest_plugin"]``. Backends that are not installed are skipped with the
reason; ``ADAPTIVE_REF_BACKENDS`` narrows the set.
"""

from __future__ import annotations

import pytest

from .backends import Backend, selected_backends


def _params():
    return [pytest.param(b, id=b.value) for b in selected_backends()]


@pytest.fixture(params=_params())
def backend(request) -> Backend:
    """One array backend; skipped (with the reason) where it is not installed."""
    b: Backend = request.param
    reason = b.missing_reason()
    if reason is not None:
        pytest.skip(reason)
    b.setup()
    return b


@pytest.fixture
def xp(backend):
    """The array-API namespace of ``backend``."""
    return backend.xp


# ---- golden cases ----------------------------------------------------------------------------
def pytest_configure(config):
    config.addinivalue_line(
        "markers", "golden(optimizer=None, *, profile=None, dtype=None, kind=None): parametrise "
        "the test's `golden_case` argument over the committed golden cases (adaptive_ref.testing)")


def pytest_generate_tests(metafunc):
    """``@pytest.mark.golden("adam", profile="torch")`` + a ``golden_case`` argument: one test
    per golden case, with the case id as the test id."""
    if "golden_case" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("golden")
    args = marker.args if marker else ()
    kwargs = dict(marker.kwargs) if marker else {}
    from .golden import load_golden_cases

    cases = load_golden_cases(*args, **kwargs)
    metafunc.parametrize("golden_case", cases, ids=[c.id for c in cases])
