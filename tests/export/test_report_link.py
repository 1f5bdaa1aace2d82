"""REPORT.md links make compare's COMPARE.md: written in by export when it exists, added by compare afterwards."""

from __future__ import annotations

from edgetune.rundir import RunDir
from export.report import COMPARE_HEADING, compare_section, link_compare


def test_link_only_when_compare_exists_and_only_once(tmp_path):
    run_dir = RunDir(tmp_path / "r")
    (run_dir.bundle).mkdir(parents=True)
    (run_dir.bundle / "REPORT.md").write_text("# Export report\n\nbody\n")
    assert compare_section(run_dir) == [] and link_compare(run_dir) is False  # nothing to link yet
    run_dir.compare.mkdir()
    (run_dir.compare / "COMPARE.md").write_text("# Compare\n")
    assert link_compare(run_dir) is True
    text = (run_dir.bundle / "REPORT.md").read_text()
    assert text.startswith("# Export report\n\nbody\n") and COMPARE_HEADING in text
    assert "[../compare/COMPARE.md](../compare/COMPARE.md)" in text
    assert link_compare(run_dir) is False and (run_dir.bundle / "REPORT.md").read_text() == text
