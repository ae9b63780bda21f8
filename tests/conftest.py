import pytest


@pytest.fixture
def output_dir(request, tmp_path_factory):
    """A folder for a test's artefacts (screenshots, logs) that survives the run: test-output/."""
    from tests.support.db import ROOT

    path = ROOT / "test-output" / request.node.name
    path.mkdir(parents=True, exist_ok=True)
    return path
