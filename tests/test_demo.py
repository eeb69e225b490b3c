"""`robotrl demo`, the main job, on a tiny budget: every stage runs, the report names all four
policies, and a second run resumes instead of redoing the work."""

import json

import pytest

from robotrl.cli.main import main

pytestmark = pytest.mark.xdist_group("demo")


def test_demo_pipeline_writes_the_report_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--demos", "2", "--train-steps", "3"]
    argv += ["--distill-steps", "2", "--eval-episodes", "1"]
    assert main(argv) == 0
    report = (out / "report.md").read_text()
    for name in ("diffusion DDIM-10", "consistency 1-step", "consistency 1-step cold"):
        assert f"| {name} |" in report
    summary = json.loads((out / "summary.json").read_text())
    assert [r["network_evals"] for r in summary["rows"]] == [10, 1, 1, 3]
    assert all(r["median_ms"] > 0 for r in summary["rows"])
    for name in ("comparison.png", "rollout.mp4", "diffusion/curves.png", "consistency/policy"):
        assert (out / name).exists(), name
    capsys.readouterr()

    assert main(argv) == 0  # everything done: nothing is re-recorded or re-trained
    captured = capsys.readouterr()
    printed = captured.out + captured.err  # collect's status line is on stderr
    assert "resuming" in printed and "saved" not in printed
    from robotrl.data.dataset import Dataset

    assert Dataset(out / "data").num_episodes == 2
