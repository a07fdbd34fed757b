"""Shared pytest fixtures: where the built programs are and where the C tests
left their outputs. tests/run_all.sh sets CP_BIN and CP_TEST_OUT; run from the
repository root."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))


def _bin_dir():
    return os.path.abspath(os.environ.get("CP_BIN", os.path.join(ROOT, "bin")))


@pytest.fixture(scope="session")
def bindir():
    d = _bin_dir()
    if not os.path.exists(os.path.join(d, "inspect")):
        pytest.fail(f"{d}/inspect not found: build first with `make` (or set CP_BIN)")
    return d


@pytest.fixture(scope="session")
def test_out():
    d = os.environ.get("CP_TEST_OUT")
    if not d:
        pytest.fail("CP_TEST_OUT is not set: run the suite with `make test` (tests/run_all.sh)")
    return os.path.abspath(d)


def run_prog(bindir, *args):
    return subprocess.run([os.path.join(bindir, args[0]), *args[1:]], capture_output=True, text=True)


def inspect_json(bindir, path, *extra):
    r = run_prog(bindir, "inspect", "--json", path, *extra)
    assert r.returncode == 0, f"inspect {path} failed: {r.stderr.strip()}"
    return json.loads(r.stdout)
