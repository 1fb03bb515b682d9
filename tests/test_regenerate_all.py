"""benchmarks/regenerate_all.py: every benchmark in the plan, and its selection options."""

import pathlib

import pytest

from benchmarks import regenerate_all

BENCHMARKS = pathlib.Path(regenerate_all.__file__).resolve().parent


def test_every_benchmark_script_is_in_the_plan():
    scripts = {p.name for p in BENCHMARKS.glob("bench_*.py")}
    planned = {bench.script for bench in regenerate_all.PLAN.values()}
    assert scripts == planned, (scripts - planned, planned - scripts)


def test_dry_run_prints_the_selected_commands(capsys):
    assert regenerate_all.main(["--dry-run", "--only", "sweep", "weak_speed"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["sweep", "weak_speed"]
    assert lines[0].endswith("bench_sweep.py")
    assert lines[1].endswith("bench_weak.py --part speed")
    assert regenerate_all.main(["--dry-run", "--skip", "gpu"]) == 0
    names = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    assert names == [n for n in regenerate_all.PLAN if n != "gpu"]


def test_unknown_names_are_refused_by_name():
    with pytest.raises(SystemExit, match="nosuch"):
        regenerate_all.main(["--dry-run", "--only", "nosuch"])
    with pytest.raises(SystemExit, match="other"):
        regenerate_all.main(["--dry-run", "--skip", "other"])


def test_the_timed_benchmarks_run_first_and_the_untimed_ones_are_accuracy_only(capsys):
    assert regenerate_all.main(["--dry-run"]) == 0
    names = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    timed = [n for n in names if regenerate_all.PLAN[n].timed]
    assert names[: len(timed)] == timed
    assert {n for n in names if not regenerate_all.PLAN[n].timed} == {"quality", "weak_quality"}
    # the weakly supervised benchmark's two parts write weak_speed.* and weak_quality.*
    assert regenerate_all.PLAN["weak_speed"].args == ("--part", "speed")
    assert regenerate_all.PLAN["weak_quality"].args == ("--part", "quality")


def test_a_run_records_every_benchmark_and_fails_when_one_does(tmp_path, monkeypatch):
    scripts = tmp_path / "benchmarks"
    scripts.mkdir()
    (scripts / "ok.py").write_text("print('fine')\n")
    (scripts / "bad.py").write_text("raise SystemExit(3)\n")
    (scripts / "slow.py").write_text("import time; time.sleep(0.2)\n")
    (scripts / "env.py").write_text("import os, sys; sys.exit(os.environ.get('MJ_X') != '1')\n")
    monkeypatch.setattr(regenerate_all, "HERE", scripts)
    monkeypatch.setattr(regenerate_all, "RESULTS", tmp_path)
    monkeypatch.setattr(regenerate_all, "_has_gpu", lambda env: False)
    B = regenerate_all.Bench
    plan = {
        "ok": B("ok.py"),
        "gpu": B("ok.py", needs_gpu=True),
        "bad": B("bad.py", timed=False),
        "slow": B("slow.py", timed=False),
        "env": B("env.py", env=(("MJ_X", "1"),)),  # set for this benchmark only
        "noenv": B("env.py"),
    }
    monkeypatch.setattr(regenerate_all, "PLAN", plan)
    assert regenerate_all.main([]) == 1
    report = (tmp_path / "regenerate.md").read_text()
    rows = {
        line.split(" | ")[0].strip("| "): line
        for line in report.splitlines()
        if line.startswith("| ")
    }
    assert "| timed |" in rows["ok"] and "| 0 |" in rows["ok"]
    assert "| `benchmarks/ok.py` |" in rows["ok"]  # repository-relative, no local paths
    assert "skipped: no GPU" in rows["gpu"]
    assert "untimed" in rows["bad"] and "| 3 |" in rows["bad"]
    assert "| 0 |" in rows["slow"]
    assert "| MJ_X=1 | 0 |" in rows["env"] and "| - | 1 |" in rows["noenv"]
    assert "- commit: " in report
    assert regenerate_all.main(["--only", "ok", "slow", "env"]) == 0
