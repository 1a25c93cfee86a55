"""Scenario N's server: nginx in front of the same sample Coordinator, as an operator would put
a proxy there with the least it takes to check a key and limit it. The anchor for the proxy
hop's cost: what a C proxy leaves of the upstream, against what the edge (B) leaves.

One process (`master_process off`: the process that accepts is the one that proxies, as one
worker would, and the benchmark pins that one process like the other servers), no access log
(the edge's uvicorn has none either), keep-alive connections to the upstream, the API key
mapped to its account (a `map` of every load key: a key not in it is refused with 401),
`limit_req` per key with a rate no load reaches (the lookup and the count are paid, nothing
is refused), and the account passed on. The Coordinator believes only signed identities:
nginx cannot sign one, so the load sends the same signed identities as the direct scenario
(A) beside each key, and nginx passes them on as they are: the Coordinator does A's work.
"""

from __future__ import annotations

import shutil
from pathlib import Path

HEALTH = "/nginx-health"

CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
error_log {root}/nginx-error.log warn;
pid {root}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    map_hash_bucket_size 128;
    client_body_temp_path {root}/nginx-body;
    proxy_temp_path {root}/nginx-proxy;
    map $http_x_api_key $aitbc_account {{
        default "";
        include {root}/nginx-keys.map;
    }}
    limit_req_zone $http_x_api_key zone=per_key:16m rate=1000000r/s;
    upstream coordinator {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = {health} {{ return 200; }}
        location /v1/ {{
            if ($aitbc_account = "") {{ return 401; }}
            limit_req zone=per_key burst=1000000 nodelay;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-API-Key "";
            proxy_pass http://coordinator;
        }}
    }}
}}
"""


def binary() -> str | None:
    """nginx, where it is installed (Debian's is in /usr/sbin, which a user's PATH may lack)."""
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    return found if Path(found).exists() else None


def write_config(root: Path, port: int, upstream_port: int, keys: list[tuple[str, str]]) -> Path:
    """nginx's configuration for scenario N, and its map of `keys` ((account id, key) each)."""
    for folder in ("nginx-body", "nginx-proxy"):
        (root / folder).mkdir(exist_ok=True)
    (root / "nginx-keys.map").write_text("".join(f"{key} {account};\n" for account, key in keys))
    path = root / "nginx.conf"
    text = CONFIG.format(root=root, port=port, upstream_port=upstream_port, health=HEALTH)
    path.write_text(text)
    return path
