"""Accessibility and layout probes for the browser tests.

- ``axe_violations(page)`` runs the vendored axe-core (tests/e2e/vendor, never a CDN) on the page and returns the
  serious and critical violations as readable lines.
- ``layout_problems(page)`` reports what makes the page scroll sideways: any element whose right edge is past the
  viewport, unless it sits inside a container that scrolls or clips on its own (a table's
  ``.overflow-auto`` box); and header links pushed off-screen.

axe is injected as a script tag, so the context must be created with ``bypass_csp=True`` (the portal's CSP allows
no inline script, rightly).
"""

from __future__ import annotations

from pathlib import Path

AXE_PATH = Path(__file__).parent / "vendor" / "axe-core-4.10.3" / "axe.min.js"
BLOCKING_IMPACTS = ("serious", "critical")

_RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
    targets: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ' — ' + (n.failureSummary || '').split('\\n')[1])}));
}"""

_LAYOUT = """() => {
  const width = document.documentElement.clientWidth;
  const problems = [];
  if (document.documentElement.scrollWidth > width + 1) {
    problems.push(`page is ${document.documentElement.scrollWidth}px wide in a ${width}px viewport`);
  }
  const contained = (el) => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const style = getComputedStyle(p);
      if (['auto', 'scroll', 'hidden', 'clip'].includes(style.overflowX) && p.clientWidth <= width) return true;
    }
    return false;
  };
  for (const el of document.body.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0 || getComputedStyle(el).visibility === 'hidden') continue;
    if (box.right > width + 1 && !contained(el)) {
      const parentBox = el.parentElement.getBoundingClientRect();
      if (el.parentElement !== document.body && parentBox.right > width + 1 && !contained(el.parentElement)) continue;  // report the outermost
      const name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
        (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
      problems.push(`${name} reaches ${Math.round(box.right)}px: "${(el.innerText || '').trim().slice(0, 40)}"`);
    }
  }
  for (const link of document.querySelectorAll('header a, header button')) {
    const box = link.getBoundingClientRect();
    if (box.right > width + 1 || box.left < -1) problems.push(`header control "${link.innerText.trim()}" is off-screen`);
  }
  return problems.slice(0, 12);
}"""


def axe_violations(page) -> list[str]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE_PATH))
    found = page.evaluate(_RUN_AXE)
    return [f"{v['impact']} {v['id']}: {v['help']} — {'; '.join(v['targets'])}"
            for v in found if v["impact"] in BLOCKING_IMPACTS]


def layout_problems(page) -> list[str]:
    return page.evaluate(_LAYOUT)
