"""Static files carry the same security headers as pages (issue 27): WhiteNoise answers /static/ itself,
so the header middleware sits above it."""

import pytest


@pytest.fixture
def static_client(settings, client):
    settings.WHITENOISE_USE_FINDERS = True  # serve from the apps' static folders, as in development
    settings.WHITENOISE_AUTOREFRESH = True
    return client


@pytest.mark.parametrize("path", ["/static/tutor/session.js", "/static/tutor/playback-worklet.js", "/static/css/parla.css"])
def test_static_responses_carry_csp_and_framing_headers(static_client, path):
    response = static_client.get(path)
    assert response.status_code == 200
    assert type(response).__name__ == "WhiteNoiseFileResponse"  # answered by WhiteNoise, not a view
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["Permissions-Policy"].startswith("microphone=(self)")
    assert response["X-Content-Type-Options"] == "nosniff"


def test_pages_keep_them(client):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
