"""Fault-injection tests: real damage to real cache files, real processes killed mid-write.

Every test under tests/faults carries the ``faults`` marker (``-m faults`` runs only them,
``-m 'not faults'`` skips them). tests/faults is a package (``__init__.py``) so this file is
imported as ``faults.conftest`` and ``from conftest import ...`` still finds tests/conftest.py.
"""

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.faults)
