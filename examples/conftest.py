import pytest
from fastapi import FastAPI

from examples.full.main import app


@pytest.fixture
def cloudtasks_app() -> FastAPI:
    """Deliveries go to the full example app."""
    return app
