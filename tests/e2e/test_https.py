"""The edge serves HTTPS from a certificate in its settings, and can refuse plain HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.stack import Stack
from tests.e2e.tls import self_signed


def test_https_from_settings_and_plain_http_refused(stack: Stack, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    tls = stack.add_edge("api-tls", TLS_CERT_FILE=str(cert), TLS_KEY_FILE=str(key)).start()
    strict = stack.add_edge("api-strict", REQUIRE_HTTPS="1").start()
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
            plain = client.get(
                f"http://127.0.0.1:{strict_port}/v1/jobs", headers={"X-API-Key": master}
            )
            assert plain.status_code == 403
            assert plain.json()["error"]["code"] == "HTTPS_REQUIRED"
            proxied = client.get(
                f"http://127.0.0.1:{strict_port}/v1/jobs",
                headers={"X-API-Key": master, "X-Forwarded-Proto": "https"},
            )  # a TLS-terminating proxy in front (the edge trusts its local proxy)
            assert proxied.status_code == 200
    finally:
        tls.stop()
        strict.stop()
