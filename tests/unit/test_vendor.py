"""The vendored front-end files are the pinned releases (nobody swaps them silently) and nothing uses a CDN."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PINNED = {
    "static/vendor/htmx-2.0.11/htmx.min.js": "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717",
    "static/vendor/pico-2.1.1/pico.min.css": "fbc9a63fc9fc9f72d12fd7fc9806e11fa9f77ae4f9cad146b27003a1119ba3db",
}


def test_vendored_files_match_their_pinned_hashes():
    for path, digest in PINNED.items():
        assert hashlib.sha256((ROOT / path).read_bytes()).hexdigest() == digest, path
    assert (ROOT / "static/vendor/htmx-2.0.11/LICENSE").exists()
    assert (ROOT / "static/vendor/pico-2.1.1/LICENSE.md").exists()


def test_no_template_or_static_file_loads_from_the_internet():
    pattern = re.compile(r"(src|href)=[\"']https?://", re.I)
    for path in list((ROOT / "templates").rglob("*.html")) + list((ROOT / "static/js").rglob("*.js")):
        assert not pattern.search(path.read_text()), path
