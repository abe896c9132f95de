"""Shared pytest configuration: fixture plugins for personas, the Celery worker, the local Hub
and the local cluster."""

from pathlib import Path

import pytest

_FIXTURES = Path(__file__).parent / "fixtures"

# Each fixture module is a plugin so test packages can use them without importing.
pytest_plugins = [
    f"tests.fixtures.{path.stem}"
    for path in sorted(_FIXTURES.glob("*.py"))
    if path.stem != "__init__"
]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: pytest.FixtureRequest) -> None:
    # PBKDF2's deliberate slowness is for production; tests create many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # type: ignore[attr-defined]
