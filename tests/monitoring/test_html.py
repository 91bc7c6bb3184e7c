"""The HTML monitoring report: well-formed, escaped, self-contained, atomic, seen by a browser."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import matplotlib
import pytest

from shipyard.core.exceptions import InvalidArgumentError
from shipyard.monitoring.html import MAX_OVERLAYS, render_report, write_report
from shipyard.statistics.drift import ColumnDrift, DriftReport
from shipyard.statistics.quality import ColumnQuality, QualityReport, TypeChange
from shipyard.statistics.report import MonitoringReport, Performance, ReportWindow

_VOID = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "area", "base", "source"}


class _Page(HTMLParser):
    """Checks that every element is closed in order; collects tags, ids and link targets."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.starts: list[str] = []
        self.ids: list[str] = []
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._attrs(tag, attrs)
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._attrs(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def _attrs(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.starts.append(tag)
        for name, value in attrs:
            if name == "id" and value:
                self.ids.append(value)
            if name in {"href", "xlink:href", "src"} and value is not None:
                self.links.append(value)


def parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    return parser


def numeric(reference: list[int], current: list[int], low: float = 0.0) -> dict[str, Any]:
    edges = [low + i for i in range(len(reference) + 1)]
    return {"kind": "numeric", "edges": edges, "reference": reference, "current": current}


def categorical(categories: list[Any], reference: list[int], current: list[int]) -> dict[str, Any]:
    return {
        "kind": "categorical",
        "categories": categories,
        "reference": reference,
        "current": current,
    }


def column(name: str, score: float, drifted: bool, **extra: Any) -> ColumnDrift:
    entry = {
        "column": name,
        "kind": "numeric",
        "method": "wasserstein",
        "score": score,
        "threshold": 0.1,
        "drifted": drifted,
        "source": "data",
        "bound": None,
    }
    return ColumnDrift(**{**entry, **extra})


def with_columns(report: MonitoringReport, columns: Sequence[ColumnDrift]) -> MonitoringReport:
    """``report`` with these drift results (its drift share unchanged)."""
    return replace(report, drift=replace(report.drift, columns=tuple(columns)))


EVIL = '<b>"plan"&</b>'


@pytest.fixture
def report() -> MonitoringReport:
    """A report with drifted numeric and categorical columns, no predictions, no labels."""
    drift = (
        column("tenure", 0.31, True, source="profile", bound=0.004),
        column(EVIL, 0.22, True, kind="categorical", method="jensenshannon"),
        column("charges", 0.02, False, source="profile", bound=0.0),
    )
    quality = QualityReport(
        rows=1532,
        columns=(
            ColumnQuality(EVIL, 3, 0.002, 0, 0, 2, ("<gold>",)),
            ColumnQuality("tenure", 0, 0.0, 0, 0, 0),
        ),
        duplicates=0,
        missing_columns=(),
        extra_columns=("promo",),
        changed_types=(TypeChange("tenure", "int64", "object", "signature"),),
        failing_rows=12,
        failing_share=0.0078,
    )
    return MonitoringReport(
        model="churn",
        version=3,
        computed_at=datetime(2026, 12, 1, 14, tzinfo=UTC),
        window=ReportWindow(
            datetime(2026, 11, 30, 14, tzinfo=UTC), datetime(2026, 12, 1, 14, tzinfo=UTC)
        ),
        reference="profile of churn:3 (registration, 2,000 rows)",
        current="prediction log, last 1d (1,532 rows)",
        reference_rows=2000,
        current_rows=1532,
        drift=DriftReport(drift, 0.6666, True, 0.5, 2000, 1532),
        prediction_drift=None,
        quality=quality,
        performance=None,
        psi={},
        settings={},
        alerts=(
            {"rule": "drift", "message": "dataset drift: 67% of columns drifted", "state": "fired"},
        ),
    )


@pytest.fixture
def distributions() -> dict[str, dict[str, Any]]:
    return {
        "tenure": numeric([5, 20, 40, 25, 10], [2, 5, 20, 40, 33]),
        EVIL: categorical(["basic", "<pro>", None], [60, 30, 10], [30, 50, 20]),
        "charges": numeric([1, 2, 3], [1, 2, 3]),  # not drifted: not plotted
        "score": numeric([10, 30, 10], [5, 20, 35]),
    }


@pytest.fixture
def full_report(report: MonitoringReport) -> MonitoringReport:
    """The same report with prediction drift and performance against a baseline."""
    return replace(
        report,
        prediction_drift=DriftReport((column("score", 0.4, True),), 1.0, True, 0.5, 2000, 1532),
        performance=Performance(
            task="classification",
            rows=400,
            metrics={"accuracy": 0.81, "f1": 0.7},
            comparison={
                "f1": {
                    "current": 0.7,
                    "baseline": 0.75,
                    "change": -0.05,
                    "relative_change": -0.0667,
                }
            },
            value={"net_per_period": 1200.0},
        ),
    )


START = datetime(2026, 11, 20, 14, tzinfo=UTC)


def history(points: int) -> list[dict[str, Any]]:
    return [
        {
            "computed_at": (START + timedelta(days=day)).isoformat(),
            "drift_share": day / points,
            "dataset_drift": day / points >= 0.5,
            "columns": {"tenure": 0.05 * day, EVIL: 0.03 * day, "charges": 0.02},
            "performance": {"accuracy": 0.85 - 0.01 * day, "f1": 0.75 - 0.01 * day},
        }
        for day in range(points)
    ]


def test_page_is_well_formed_with_one_svg_per_drifted_column(
    report: MonitoringReport, distributions: dict[str, dict[str, Any]]
) -> None:
    page = render_report(report, distributions)

    parsed = parse(page)
    assert parsed.starts.count("svg") == 2  # tenure and the categorical column; not charges
    assert len(parsed.ids) == len(set(parsed.ids))
    text = " ".join(" ".join(parsed.text).split())
    assert "Monitoring report: churn" in text
    assert "Dataset drift: yes." in text
    assert "66.7% of columns drifted (2 of 3); the threshold is 50%" in text
    assert "2026-11-30 14:00 UTC → 2026-12-01 14:00 UTC" in text
    assert "≈ ±0.004 (from profile)" in text
    assert "exact (from profile)" in text
    assert "dataset drift: 67% of columns drifted" in text
    assert "tenure: int64 → object (against signature)" in text
    assert "No prediction drift in this report." in text
    assert "No ground truth yet" in text
    assert "Trends need at least 2 reports in the history; it has 0." in text


def test_every_piece_of_text_is_escaped(
    report: MonitoringReport, distributions: dict[str, dict[str, Any]]
) -> None:
    alert = {"rule": "drift", "message": "<img src=x onerror=alert(1)>", "state": "fired"}
    report = replace(report, model="<script>alert(1)</script>", alerts=(alert,))

    page = render_report(report, distributions)

    parsed = parse(page)
    assert "script" not in parsed.starts
    assert "img" not in parsed.starts
    assert "b" not in parsed.starts  # the column name <b>…</b> stays text, in tables and plots
    assert "<b>" not in page
    assert "&lt;b&gt;&quot;plan&quot;&amp;&lt;/b&gt;" in page
    text = "".join(parsed.text)
    assert "<script>alert(1)</script>" in text
    assert "<gold>" in text
    assert "<pro>" in text  # a category label inside the SVG


def test_page_is_self_contained(
    full_report: MonitoringReport, distributions: dict[str, dict[str, Any]]
) -> None:
    page = render_report(full_report, distributions, history(5))

    parsed = parse(page)
    assert "<script" not in page.lower()
    assert 'src="http' not in page
    assert "url(http" not in page
    assert "@import" not in page
    assert {"script", "link", "img", "iframe", "object"}.isdisjoint(parsed.starts)
    assert all(link.startswith("#") for link in parsed.links), parsed.links
    assert "<?xml" not in page
    assert "<!DOCTYPE svg" not in page


def test_full_report_plots_predictions_and_trends(
    full_report: MonitoringReport, distributions: dict[str, dict[str, Any]]
) -> None:
    page = render_report(full_report, distributions, history(5))

    parsed = parse(page)
    # 2 feature overlays + 1 prediction overlay + drift share + scores (wasserstein,
    # jensenshannon) + accuracy + f1
    assert parsed.starts.count("svg") == 8
    assert len(parsed.ids) == len(set(parsed.ids))
    text = " ".join(" ".join(parsed.text).split())
    assert "Prediction drift: yes (100% of columns drifted)." in text
    assert "f1 0.7 0.75 -0.05 -6.7%" in text
    assert "net_per_period" in text
    assert "1,200" in text
    assert "Share of drifted columns" in text


def test_only_the_columns_that_drifted_most_are_plotted(report: MonitoringReport) -> None:
    report = with_columns(report, [column(f"c{i:02d}", 0.1 + 0.01 * i, True) for i in range(20)])
    shapes = {f"c{i:02d}": numeric([1, 2, 3], [3, 2, 1]) for i in range(20)}

    page = render_report(report, shapes)

    parsed = parse(page)
    assert parsed.starts.count("svg") == MAX_OVERLAYS
    assert f"The {MAX_OVERLAYS} of 20 drifted columns that drifted most" in page
    assert 'aria-label="c19: ' in page
    assert 'aria-label="c07: ' not in page  # the 13th highest


def test_p_values_rank_lowest_first_and_missing_shapes_are_named(report: MonitoringReport) -> None:
    report = with_columns(
        report,
        [
            column("mild", 0.04, True, method="ks", threshold=0.05),
            column("severe", 0.0001, True, method="ks", threshold=0.05),
            column("unbinned", 0.5, True),
        ],
    )
    shapes = {"mild": numeric([1, 2], [2, 1]), "severe": numeric([1, 2], [2, 1])}

    page = render_report(report, shapes)

    assert page.index('aria-label="severe') < page.index('aria-label="mild')
    assert "No distribution recorded for: unbinned." in page


def test_awkward_columns_render(report: MonitoringReport) -> None:
    report = with_columns(
        report,
        [
            column("$price$ in $", 0.5, True),  # would be mathtext to matplotlib
            column("open", 0.5, True),
            column("many", 0.5, True, kind="categorical"),
        ],
    )
    shapes = {
        "$price$ in $": numeric([1, 2, 3], [3, 2, 1]),
        "open": {
            "kind": "numeric",
            "edges": [float("-inf"), 0.0, 1.0, float("inf")],
            "reference": [1, 5, 1],
            "current": [0, 0, 0],  # an empty window: zero shares, no division by zero
        },
        "many": categorical([f"value {i}" for i in range(40)], list(range(40)), [1] * 40),
    }

    page = render_report(report, shapes)

    assert parse(page).starts.count("svg") == 3
    assert "$price$ in $" in page
    assert "(other 21)" in page


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (numeric([1, 2], [1, 2, 3]), "as many reference as current counts but got 2 and 3"),
        (
            {"kind": "numeric", "edges": [0, 1], "reference": [1, 2], "current": [1, 2]},
            r"one more value than the counts \(3\) but got 2",
        ),
        (categorical(["a"], [1, 2], [1, 2]), r"one count per category \(1 categories\)"),
        ({"kind": "text", "reference": [1], "current": [1]}, "'numeric' or 'categorical'"),
        ({"kind": "numeric", "edges": [0, 1], "current": [1]}, r"\['reference'\] must be a list"),
    ],
)
def test_malformed_distribution_says_what_is_wrong(
    report: MonitoringReport, shape: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        render_report(report, {"tenure": shape})


def test_history_needs_iso_timestamps(
    report: MonitoringReport, distributions: dict[str, dict[str, Any]]
) -> None:
    points = history(3)
    points[1]["computed_at"] = "yesterday"
    with pytest.raises(
        InvalidArgumentError,
        match=r"history\[1\]\['computed_at'\] must be an ISO 8601 timestamp but got 'yesterday'",
    ):
        render_report(report, distributions, points)


def test_rendering_is_deterministic(
    full_report: MonitoringReport, distributions: dict[str, dict[str, Any]]
) -> None:
    more = [column(f"c{i}", 0.2 + 0.01 * i, True) for i in range(10)]
    full_report = with_columns(full_report, [*full_report.drift.columns, *more])
    shapes = {**distributions, **{f"c{i}": numeric([5, 9, 4, 2], [1, 4, 9, 6]) for i in range(10)}}
    render_report(full_report, shapes)  # warm-up: fonts and matplotlib's caches

    # Speed is not asserted here (a loaded machine makes wall-clock limits flaky): about 1 s
    # for these 18 plots on the 2-core development machine.
    page = render_report(full_report, shapes, history(10))

    assert parse(page).starts.count("svg") == 12 + 1 + 1 + 2 + 2
    assert page == render_report(full_report, shapes, history(10))


def test_rendering_changes_no_global_state(
    full_report: MonitoringReport, distributions: dict[str, dict[str, Any]]
) -> None:
    before = dict(matplotlib.rcParams)

    render_report(full_report, distributions, history(3))

    assert dict(matplotlib.rcParams) == before


def test_write_report_writes_atomically(
    tmp_path: Path, report: MonitoringReport, distributions: dict[str, dict[str, Any]]
) -> None:
    target = tmp_path / "churn.html"
    target.write_text("old report", encoding="utf-8")

    written = write_report(target, report, distributions)

    assert written == target
    assert target.read_text(encoding="utf-8") == render_report(report, distributions)
    assert target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["churn.html"]


def test_write_report_keeps_the_old_page_when_anything_fails(
    tmp_path: Path,
    report: MonitoringReport,
    distributions: dict[str, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = tmp_path / "churn.html"
    target.write_text("old report", encoding="utf-8")
    with pytest.raises(InvalidArgumentError):
        write_report(target, report, {"tenure": {"kind": "numeric"}})

    def refuse(source: str, destination: str) -> None:
        assert Path(source).parent == tmp_path  # a rename within one folder: atomic
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_report(target, report, distributions)

    assert target.read_text(encoding="utf-8") == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["churn.html"]


def test_write_report_needs_an_existing_folder(
    tmp_path: Path, report: MonitoringReport, distributions: dict[str, dict[str, Any]]
) -> None:
    with pytest.raises(InvalidArgumentError, match=r"its folder .*nowhere.* does not exist"):
        write_report(tmp_path / "nowhere" / "churn.html", report, distributions)


# ----------------------------------------------------------------------------- in a browser


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium binary (CI installs Debian's chromium in .ci/run)")


def _headless(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'profile'}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def _distinct_bytes(png: Path) -> int:
    """How many distinct byte values the PNG's pixel data holds: a blank page has very few."""
    data, position, pixels = png.read_bytes(), 8, b""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        if kind == b"IDAT":
            pixels += data[position + 8 : position + 8 + length]
        position += 12 + length
    return len(set(zlib.decompress(pixels)))


def test_a_browser_renders_the_page(
    tmp_path: Path, full_report: MonitoringReport, distributions: dict[str, dict[str, Any]]
) -> None:
    page = write_report(tmp_path / "report.html", full_report, distributions, history(5))

    dom = _headless(tmp_path, "--dump-dom", page.as_uri()).stdout
    screenshot = tmp_path / "report.png"
    _headless(tmp_path, f"--screenshot={screenshot}", "--window-size=1280,2000", page.as_uri())

    parsed = parse(dom)
    assert parsed.starts.count("svg") == 8
    assert "Dataset drift: yes." in " ".join(parsed.text)
    assert "b" not in parsed.starts
    assert EVIL in "".join(parsed.text)
    assert _distinct_bytes(screenshot) > 32
