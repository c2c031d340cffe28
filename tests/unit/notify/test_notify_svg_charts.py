"""Server-side SVG charts: an image with a title, bars in proportion, labels escaped, and
nothing the dashboard's Content-Security-Policy would block (no script, no inline style)."""

import re

from services.notify.adapters import svg_charts


def test_grouped_bars_are_an_image_with_a_title_and_bars_in_proportion():
    svg = str(svg_charts.grouped_bars("c", "Title <b>", ["w1", "w2"], [("a", [2, 4]), ("b", [None, 1])]))
    assert svg.startswith("<svg") and 'role="img"' in svg and 'aria-labelledby="c-title"' in svg
    assert '<title id="c-title">Title &lt;b&gt;</title>' in svg
    heights = [float(h) for h in re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)"', svg)]
    assert len(heights) == 3 + 2  # three bars (None draws none) and two legend swatches
    bars = heights[:3]
    assert bars[1] == 2 * bars[0] and bars[2] == bars[0] / 2
    assert "style=" not in svg and "<script" not in svg


def test_count_axes_step_in_whole_numbers_and_empty_charts_still_draw():
    svg = str(svg_charts.grouped_bars("c", "t", ["w1"], [("a", [2])]))
    ticks = re.findall(r'text-anchor="end" fill="#1a1a1a">([^<]+)<', svg)
    assert ticks == ["0", "1", "2", "3", "4"]
    assert "<svg" in str(svg_charts.grouped_bars("e", "t", [], []))
    assert "<svg" in str(svg_charts.horizontal_bars("h", "t", []))


def test_horizontal_bars_label_each_row_with_its_value():
    svg = str(svg_charts.horizontal_bars("h", "t", [("Handover refused & more", 3), ("Other", 1)]))
    assert "Handover refused &amp; more" in svg and ">3</text>" in svg and ">1</text>" in svg


def test_nice_ceiling():
    assert [svg_charts.nice_ceiling(v) for v in (0, 0.7, 3, 7, 12, 260)] == [1, 1, 5, 10, 20, 500]


def test_a_long_legend_wraps_onto_more_rows_inside_the_chart():
    names = [f"A rather long series name {n}" for n in range(5)]
    svg = str(svg_charts.grouped_bars("c", "t", ["w1"], [(name, [1]) for name in names], width=720))
    height = int(re.search(r'viewBox="0 0 720 (\d+)"', svg).group(1))
    assert height > 280  # grown for the extra rows
    for x in re.findall(r'<text x="(\d+)" y="[\d.]+" fill="#1a1a1a">A rather', svg):
        assert int(x) + 7 * len(names[0]) <= 720
