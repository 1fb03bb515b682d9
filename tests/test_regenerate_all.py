"""benchmarks/regenerate_all.py: every benchmark in the plan, and its selection options."""

import pathlib

import pytest

from benchmarks import regenerate_all

BENCHMARKS = pathlib.Path(regenerate_all.__file__).resolve().parent


def test_every_benchmark_script_is_in_the_plan():
    scripts = {p.name for p in BENCHMARKS.glob("bench_*.py")}
    planned = {script for script, _ in regenerate_all.PLAN.values()}
    assert scripts == planned, (scripts - planned, planned - scripts)


def test_dry_run_prints_the_selected_commands(capsys):
    assert regenerate_all.main(["--dry-run", "--only", "sweep", "weak"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["sweep", "weak"]
    assert lines[0].endswith("bench_sweep.py")
    assert regenerate_all.main(["--dry-run", "--skip", "gpu"]) == 0
    names = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    assert names == [n for n in regenerate_all.PLAN if n != "gpu"]


def test_unknown_names_are_refused_by_name():
    with pytest.raises(SystemExit, match="nosuch"):
        regenerate_all.main(["--dry-run", "--only", "nosuch"])
    with pytest.raises(SystemExit, match="other"):
        regenerate_all.main(["--dry-run", "--skip", "other"])
