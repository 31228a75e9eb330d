"""`dosewatch serve --workers 2`: two processes on one database answer the same, and a token from
one is good at the other (they share the server key file in the data folder)."""
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from dosewatch.store import demo
from test_server_support import free_port, wait_until_up


def _get(url: str, token: str | None = None) -> tuple[int, dict | list]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture()
def served(tmp_path):
    port = free_port()
    exe = Path(sys.executable).with_name("dosewatch")
    env = {**os.environ, "DOSEWATCH_DATA": str(tmp_path)}
    env.pop("DOSEWATCH_DB", None)
    proc = subprocess.Popen([str(exe), "serve", "--demo", "--workers", "2", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    wait_until_up(proc, base)
    yield base
    proc.terminate()
    proc.communicate(timeout=30)


def test_two_workers_share_the_database_and_the_key(served):
    form = urllib.parse.urlencode({"username": "nurse", "password": demo.PASSWORD}).encode()
    with urllib.request.urlopen(f"{served}/api/token", data=form, timeout=10) as r:
        token = json.loads(r.read())["access_token"]
    # Many requests on fresh connections: both workers answer, and each accepts the token.
    answers = [_get(f"{served}/api/trials/demo/patients/seed-1/assessment", token) for _ in range(20)]
    assert {status for status, _ in answers} == {200}
    assert len({json.dumps(body, sort_keys=True) for _, body in answers}) == 1
    assert answers[0][1]["patient_id"] == "seed-1"
    status, patients = _get(f"{served}/api/trials/demo/patients", token)
    assert status == 200 and {p["patient_id"] for p in patients} == {"seed-1", "seed-2", "seed-3", "seed-4"}
    assert _get(f"{served}/api/trials/demo/patients/north-1/assessment", token)[0] == 404  # scoping holds
