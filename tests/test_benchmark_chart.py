"""The benchmark chart's legend covers no bar (it once sat over the requests/s panel)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from benchmarks.__main__ import chart_figure

REPORT = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "latest.json"


def test_the_legend_lies_outside_both_panels() -> None:
    import matplotlib.pyplot as plt

    fig = chart_figure(json.loads(REPORT.read_text()))
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        (legend,) = fig.legends
        box = legend.get_window_extent(renderer)
        panels = [ax.get_window_extent(renderer) for ax in fig.axes]
        assert len(panels) == 2
        assert not any(box.overlaps(panel) for panel in panels)
        labels = [text.get_text() for text in legend.get_texts()]
        assert len(labels) == len(set(labels))  # each client once, not once per panel
        assert "AsyncClient" in labels
    finally:
        plt.close(fig)
