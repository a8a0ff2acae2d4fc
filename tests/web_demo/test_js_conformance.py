"""Runs the JavaScript client's conformance tests (tests/conformance/*.test.js) with node, so
the main test command covers the JS client too."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_js_client_passes_the_shared_conformance_cases() -> None:
    node = shutil.which("node")
    assert node is not None, "node is needed for the JS client's tests (apt-get install nodejs)"
    tests = sorted(str(p) for p in (ROOT / "tests" / "conformance").glob("*.test.js"))
    assert tests, "no JS conformance tests found"
    done = subprocess.run([node, "--test", *tests], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
