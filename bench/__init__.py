"""Benchmarks: run each as ``python -m bench.<name>``."""


def markdown_table(rows: list[list[str]], headers: list[str]) -> str:
    """The benchmarks' result tables, as Markdown (pasted as is into docs and closing notes)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    return "\n".join(lines)
