"""Shared test set-up. Unit tests need nothing special; emulation tests need root."""
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_collection_modifyitems(config, items):
    """Every test under tests/emulation/ needs root: skip it, saying why, when not root."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="emulation test: needs root to create network namespaces "
                                   "(run `sudo make test`)")
    for item in items:
        if "emulation" in Path(str(item.fspath)).parts:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir():
    return DATA


@pytest.fixture(scope="session")
def tshark():
    """Path of tshark. Missing tshark is a failure, not a skip: the install step provides
    it, and the outside-reference tests must run in CI."""
    path = shutil.which("tshark")
    if path is None:
        pytest.fail("tshark is not installed: run `sudo make install`")
    return path
