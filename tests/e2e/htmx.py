"""Waiting for htmx in browser tests.

htmx wires up swapped-in content when it settles (20 ms after the swap); a key press or change event
inside that window reaches an element htmx does not know yet and is lost.
"""

from __future__ import annotations


def settled(page) -> None:
    """Wait until htmx has no request, swap or settle going on."""
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")
