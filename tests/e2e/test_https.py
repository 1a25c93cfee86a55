"""The edge serves HTTPS from a certificate in its settings, says so with HSTS, and can refuse
plain HTTP (a TLS-terminating proxy in front, trusted, says what the client used)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.stack import Stack
from tests.e2e.tls import self_signed


def test_https_from_settings_and_plain_http_refused(stack: Stack, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    tls = stack.add_edge("api-tls", TLS_CERT_FILE=str(cert), TLS_KEY_FILE=str(key)).start()
    strict = stack.add_edge("api-strict", REQUIRE_HTTPS="1", TRUSTED_PROXIES="127.0.0.1").start()
    tls_port, strict_port = tls.port, strict.port
    try:
        with httpx.Client(verify=str(cert), timeout=10) as client:
            signed_up = client.post(f"https://127.0.0.1:{tls_port}/v1/accounts")
            assert signed_up.status_code == 201
            master = signed_up.json()["master_key"]["key"]
            jobs = client.get(
                f"https://127.0.0.1:{tls_port}/v1/jobs", headers={"X-API-Key": master}
            )
            assert jobs.status_code == 200
            assert jobs.headers["strict-transport-security"] == "max-age=31536000"
            plain = client.get(
                f"http://127.0.0.1:{strict_port}/v1/jobs", headers={"X-API-Key": master}
            )
            assert plain.status_code == 403
            assert plain.json()["error"]["code"] == "HTTPS_REQUIRED"
            assert "strict-transport-security" not in plain.headers  # never over plain HTTP
            proxied = client.get(
                f"http://127.0.0.1:{strict_port}/v1/jobs",
                headers={"X-API-Key": master, "X-Forwarded-Proto": "https"},
            )  # a TLS-terminating proxy in front, which the edge trusts (TRUSTED_PROXIES)
            assert proxied.status_code == 200
            assert proxied.headers["strict-transport-security"] == "max-age=31536000"
    finally:
        tls.stop()
        strict.stop()
