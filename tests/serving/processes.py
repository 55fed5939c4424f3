"""A real `velox serve` process on its own port, for tests with several edges."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tests.streams.harness import VeloxProcess


class EdgeProcess(VeloxProcess):
    command = "serve"

    def get(self, path: str, **params: object) -> tuple[int, Any]:
        url = f"{self.settings.edge_url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def post(self, path: str, body: dict[str, Any]) -> int:
        request = urllib.request.Request(f"{self.settings.edge_url}{path}", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)

    def wait_ready(self, timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()
            try:
                status, body = self.get("/readyz")
                if status == 200:
                    return dict(body)
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"edge not ready within {timeout} s; see {self.log}")
