"""MkDocs hooks (mkdocs.yml ``hooks:``): the benchmark chart, which lives outside docs/.

``python -m benchmarks --report docs/benchmarks.md`` writes the chart to
``benchmarks/results/latest.png`` and links it from the page as
``../benchmarks/results/latest.png``, which works on GitHub but points outside the site. The
site gets a copy of the chart at ``assets/benchmarks/latest.png``, and the page's link is
pointed there while it is built (the file in docs/ is not changed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

_ROOT = Path(__file__).resolve().parents[2]
_RESULTS = "../benchmarks/results/"
_ASSETS = "assets/benchmarks/"


def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    for chart in sorted((_ROOT / "benchmarks" / "results").glob("*.png")):
        files.append(File.generated(config, _ASSETS + chart.name, abs_src_path=str(chart)))
    return files


def on_page_markdown(markdown: str, page: Page, **kwargs: Any) -> str:
    if page.file.src_uri == "benchmarks.md":
        return markdown.replace(f"]({_RESULTS}", f"]({_ASSETS}")
    return markdown
