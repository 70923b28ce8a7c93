"""bench/memory.py measures the measuring process: a child process does not report its parent's memory (which
``ru_maxrss`` does), and ``reset_peak`` starts a new measurement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")


def test_a_child_process_does_not_report_its_parents_memory():
    """Linux keeps ``ru_maxrss`` across fork + exec: a child started from a big parent reports the parent's RSS at
    the fork (how the sync bench's child read 203 MB while it peaked at 95 MB). VmHWM is the child's own."""
    block = bytearray(160 * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    child = subprocess.run(
        [sys.executable, "-c", "import json, resource; from bench import memory; "
         "print(json.dumps({'maxrss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "
         "'hwm': memory.peak_mb()}))"],
        capture_output=True, text=True, check=True, cwd=str(Path(__file__).resolve().parents[2]))
    del block
    figures = json.loads(child.stdout)
    assert figures["maxrss"] >= 150  # what the benches used to print
    assert figures["hwm"] < figures["maxrss"] - 100


def test_reset_peak_starts_a_new_measurement():
    block = bytearray(96 * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    high = memory.peak_mb()
    del block
    if not memory.reset_peak():
        pytest.skip("clear_refs is not writable here")
    assert memory.peak_mb() < high - 60
    assert memory.current_mb() <= memory.peak_mb() + 1
