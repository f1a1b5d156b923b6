"""shiftkit.render: markdown tables and the figures of every report (no clipped titles, amounts from 0)."""
from __future__ import annotations

from PIL import Image

from shiftkit.render import draw_lines, figure, line_plot, markdown_table, set_title

LONG = "vgg11_bn_width0.25: shifted accuracy (drift + corruptions), mean ± std over seeds, every arm at every sparsity"


def test_markdown_table():
    assert markdown_table(["a", "b"], [[1, "x"], [2.5, ""]]) == "| a | b |\n|---|---|\n| 1 | x |\n| 2.5 |  |"


def test_long_titles_wrap_inside_the_figure(tmp_path):
    with figure(tmp_path / "t.png", ncols=2, size=(8, 3)) as axes:
        for ax in axes:
            set_title(ax, LONG)
            ax.plot([0, 1], [0, 1])
        fig = axes[0].get_figure()
        fig.tight_layout()
        fig.canvas.draw()
        for ax in axes:
            box = ax.title.get_window_extent()
            assert "\n" in ax.title.get_text() and box.x0 >= 0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1
    assert (tmp_path / "t.png").is_file()


def test_memory_style_plot_starts_at_zero_on_a_log2_axis(tmp_path):
    series = {"grasp": ([2, 8, 64], [400.0, 401.0, 402.0], None), "fusion": ([2, 8, 16], [420.0, 700.0, 1500.0], None)}
    with figure(tmp_path / "m.png") as (ax,):
        draw_lines(ax, series, title="peak RSS vs K", xlabel="K", ylabel="MiB", logx=True, y_from_zero=True)
        assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 1500
        assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "8", "16", "64"]
    line_plot({}, tmp_path / "empty.png", title="nothing measured", xlabel="x", ylabel="y")  # no legend, no warning
    with Image.open(tmp_path / "m.png") as im:
        assert im.size == (720, 480)
