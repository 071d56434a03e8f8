"""Settings read from the environment: defaults, and errors that name the variable."""

from __future__ import annotations

import pytest

from services.shared.settings import PlatformSettings, SettingsError

BASE = {"INTERNAL_TOKEN": "t", "S3_ACCESS_KEY": "a", "S3_SECRET_KEY": "s"}


def test_service_urls_default_to_localhost_and_lose_a_trailing_slash() -> None:
    settings = PlatformSettings.from_env({**BASE, "COMMUNICATION_URL": "http://communication:8001/"})
    assert settings.main_url == "http://127.0.0.1:8000"
    assert settings.communication_url == "http://communication:8001"


@pytest.mark.parametrize("value", ["communication:8001", "ws://communication:8001", "http://", "ftp://host"])
def test_a_service_url_that_is_not_http_names_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="COMMUNICATION_URL must be an http"):
        PlatformSettings.from_env({**BASE, "COMMUNICATION_URL": value})
