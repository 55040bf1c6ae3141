import pytest

from examples.full.main import app


@pytest.fixture
def cloudtasks_app():
    """Deliveries go to the full example app."""
    return app
