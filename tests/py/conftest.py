"""Shared pytest fixtures: where the built programs are and where the C tests
left their outputs. tests/run_all.sh sets CP_BIN and CP_TEST_OUT; run from the
repository root."""
import json
import os
import signal
import subprocess
import sys
import time

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


def train_killed(bindir, args, out, min_epochs=3, timeout=60):
    """Start `train ARGS --out OUT`, SIGKILL it once its manifest holds at
    least min_epochs epochs (or after `timeout` seconds), and return the
    number of epochs the manifest holds after the kill."""
    p = subprocess.Popen([os.path.join(bindir, "train"), *args, "--out", out], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    man = os.path.join(out, "manifest.json")
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if len(json.load(open(man))["epochs"]) >= min_epochs:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    return len(json.load(open(man))["epochs"])
