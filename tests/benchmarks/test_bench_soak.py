"""The soak benchmark's trend: hand-made RSS series, and a short real run."""
import json

import pytest

from dalitrain.benchmarks.bench_soak import main, soak_report


def series(rss_of_minute):
    return [{"elapsed_s": 60.0 * i, "rss_mb": rss_of_minute(i)} for i in range(0, 31)]


def test_a_leak_is_its_slope_after_warm_up_and_a_flat_run_is_zero():
    # warm-up jump in the first third, then +2 MB per minute = +120 MB/hour
    leaking = soak_report(series(lambda i: 500.0 + (300 if i > 3 else 0) + 2.0 * i))
    assert leaking["growth_mb_per_hour"] == pytest.approx(120.0)
    flat = soak_report(series(lambda i: 800.0 if i > 5 else 300.0 + 100 * i))
    assert flat["growth_mb_per_hour"] == pytest.approx(0.0, abs=1e-9)
    assert len(flat["intervals"]) == 8 and flat["intervals"][-1]["minute"] == 30


def test_too_few_records_are_refused():
    with pytest.raises(ValueError, match="too few"):
        soak_report(series(lambda i: 1.0)[:4])


def test_a_short_soak_reports_memory_over_time(tmp_path, capsys):
    assert main(["--minutes", "0.5", "--out", str(tmp_path), "--json", str(tmp_path / "soak.json")]) == 0
    result = json.loads((tmp_path / "soak.json").read_text())
    assert result["records"] >= 6 and all(p["rss_mb"] > 100 for p in result["intervals"])
    assert "MB/hour" in capsys.readouterr().out
