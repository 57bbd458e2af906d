"""Scaled rule files keep their shape and stay valid for promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from alerts.catalog import load_rule_file, rule_files
from alerts.scale import scale_expr, scale_rule_file, scaled, seconds


def test_durations() -> None:
    assert seconds("1h30m") == 5400
    assert scaled("10m", 60) == "10000ms"
    assert scaled("5m", 600) == "500ms"
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        seconds("5 minutes")


def test_ranges_and_offsets_are_scaled_and_nothing_else() -> None:
    expr = 'rate(x_total{le="0.5"}[5m]) < 0.5 * (y offset 1d) and sum_over_time(z[3d]) > 300'
    assert scale_expr(expr, 60) == (
        'rate(x_total{le="0.5"}[5000ms]) < 0.5 * (y offset 1440000ms) '
        "and sum_over_time(z[4320000ms]) > 300"
    )


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_every_scaled_file_passes_promtool(tmp_path: Path) -> None:
    for path in rule_files():
        out = tmp_path / path.name
        out.write_text(yaml.safe_dump(scale_rule_file(load_rule_file(path), 60)))
        result = subprocess.run(
            ["promtool", "check", "rules", str(out)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
