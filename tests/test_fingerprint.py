"""The fingerprint behind compare, nightly and history: real calibrate runs for the A/A
case and for options changed on the command line (workers, group cap), a temporary project
for the scenario's code hash, and crafted run.json dicts for what a test machine cannot
switch (the volume falling back to a local folder, another PostgreSQL server)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.analysis.compare import compare_runs, fingerprint_id, fingerprint_mismatches
from harness.analysis.history import previous_comparable
from harness.commands.exitcodes import EXIT_OK, EXIT_USAGE
from harness.metadata import fingerprint
from harness.records import RunData, load_run
from harness.sourcehash import code_hash
from tests.runhelp import run_scenario

FIXTURE = Path(__file__).parent / "fixtures" / "run_v1"
SMALL = {"units": 8, "cost_ms": 1}
MODES = ["serial", "threads", "grouped"]


def _run(out: Path, **config):
    return run_scenario(out, "calibrate", MODES, SMALL, **config)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    # In this order: history's "previous comparable run" looks backwards in time.
    return {"out": out, "a": _run(out), "a2": _run(out),
            "workers": _run(out, workers={"threads": 16}), "cap": _run(out, group_cap=5)}


def harness_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})


# ------------------------------------------------------------------------- real runs
def test_two_runs_of_the_same_config_have_one_fingerprint(runs):
    a, a2 = runs["a"], runs["a2"]
    assert fingerprint(a.run, a.cells) == fingerprint(a2.run, a2.cells)
    assert fingerprint_id(a) == fingerprint_id(a2)
    assert fingerprint_mismatches(a, a2) == {}
    assert compare_runs(a, a2).comparable
    # What makes it strong is recorded at the start: code, options per mode, the harness.
    scenario = a.run["scenario"]
    assert len(scenario["code_hash"]) == 16
    assert {"scenarios/calibrate.py", "harness/scenario.py"} <= set(scenario["code_files"])
    fp = fingerprint(a.run)  # run.json alone: the plan holds every mode's options
    assert fp["modes"]["threads"]["workers"] == 8 and fp["modes"]["grouped"]["group_cap"] == 3
    assert fp["harness"]["commit"] and "dirty" in fp["harness"]
    assert "psycopg" in fp["packages"] and fp["python"].startswith("CPython")


def test_changing_one_modes_workers_is_a_mismatch(runs):
    a, changed = runs["a"], runs["workers"]
    assert fingerprint_id(a) != fingerprint_id(changed)
    mismatches = fingerprint_mismatches(a, changed)
    # --workers threads=16 is the threads executor's count: the hybrid over threads too.
    assert mismatches == {"mode threads workers": (8, 16), "mode grouped workers": (8, 16),
                          "mode threads label": ("threads[8]", "threads[16]"),
                          "mode grouped label": ("threads[8]+capped(3,200ms)",
                                                 "threads[16]+capped(3,200ms)")}


def test_changing_the_group_cap_is_a_mismatch(runs):
    mismatches = fingerprint_mismatches(runs["a"], runs["cap"])
    assert mismatches["mode grouped group_cap"] == (3, 5)
    assert mismatches["mode grouped label"] == ("threads[8]+capped(3,200ms)",
                                                "threads[8]+capped(5,200ms)")


def test_compare_refuses_a_mismatch_naming_the_field_unless_allowed(runs):
    a, changed = str(runs["a"].path), str(runs["workers"].path)
    refused = harness_cli("compare", a, changed)
    assert refused.returncode == EXIT_USAGE, refused.stdout + refused.stderr
    assert "mode threads workers differs: 8 -> 16" in refused.stdout
    allowed = harness_cli("compare", a, changed, "--allow-mismatch", "--threshold", "500%")
    assert allowed.returncode == EXIT_OK, allowed.stdout + allowed.stderr
    assert "mode threads workers differs: 8 -> 16" in allowed.stdout
    assert "exit 0" in allowed.stdout  # the comparison itself ran


def test_nightly_and_history_pick_only_a_matching_run(runs):
    out = runs["out"]
    assert previous_comparable(out, "calibrate", runs["a2"].path) == runs["a"].path
    # The workers run matches neither earlier run; the cap run matches none of the three.
    assert previous_comparable(out, "calibrate", runs["workers"].path) is None
    assert previous_comparable(out, "calibrate", runs["cap"]) is None


# ------------------------------------------------------------------- the code hash
SCENARIO = '''
from harness.scenario import Unit

def units(ctx):
    return [Unit("u1")]

def work(unit, ctx):
    from helpers import maths   # a lazy import: seen in the bytecode, never executed
    return maths.double(1)
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A temporary project: ``scen/s.py`` imports ``helpers.maths`` from ``proj/``."""
    (tmp_path / "proj" / "helpers").mkdir(parents=True)
    (tmp_path / "proj" / "helpers" / "__init__.py").write_text("")
    (tmp_path / "proj" / "helpers" / "maths.py").write_text(
        "import json\n\ndef double(x):\n    return 2 * x\n")
    (tmp_path / "scen").mkdir()
    (tmp_path / "scen" / "s.py").write_text(SCENARIO)
    monkeypatch.syspath_prepend(str(tmp_path / "proj"))
    return tmp_path


def _hash(root: Path):
    return code_hash(root / "scen" / "s.py", roots=[root / "proj" / "helpers", root / "scen"])


def test_editing_an_imported_project_module_changes_the_code_hash(project):
    before = _hash(project)
    assert before.files == ["helpers/__init__.py", "helpers/maths.py", "scen/s.py"]  # no json
    helper = project / "proj" / "helpers" / "maths.py"
    helper.write_text(helper.read_text().replace("2 * x", "x + x"))
    after = _hash(project)
    assert after.files == before.files and after.digest != before.digest
    # The scenario file alone (its version) would not have seen that change.
    (project / "proj" / "helpers" / "maths.py").write_text(helper.read_text())
    assert _hash(project).digest == after.digest


def test_the_code_hash_does_not_depend_on_where_the_checkout_is(project, tmp_path_factory,
                                                                  monkeypatch):
    here = _hash(project)
    other = tmp_path_factory.mktemp("elsewhere")
    for part in ("proj", "scen"):
        shutil.copytree(project / part, other / part)
    monkeypatch.syspath_prepend(str(other / "proj"))  # the copy's helpers, as in its checkout
    there = _hash(other)
    assert there.files == here.files and there.digest == here.digest


def test_csv_ingest_hash_covers_its_workload_modules():
    files = code_hash(Path(__file__).parents[1] / "scenarios" / "csv_ingest.py").files
    assert {"scenarios/csv_ingest.py", "harness/workloads/pgload.py",
            "harness/workloads/csvvalidate.py", "harness/services/supplier_client.py"} <= set(files)
    assert not any("pandas" in f or f.startswith("harness/runner") for f in files)


# ------------------------------------------------------------ crafted run.json dicts
@pytest.fixture
def v1():
    return load_run(FIXTURE, details=False)


def _with(run: dict, **services) -> dict:
    run = copy.deepcopy(run)
    run["services"] = services
    return run


NAS_FUSE = {"available": True, "kind": "fuse", "path": "/s/mnt/csv_ingest-1",
            "latency_ms": 12.0, "slots": 8, "max_threads": 64}
NAS_LOCAL = {"available": False, "kind": "local", "path": "/s/data/csv_ingest",
             "reason": "/dev/fuse cannot be opened"}
PG = {"version": "16.4", "source": "embedded (pgserver) at .harness/pg",
      "settings": {"fsync": "on", "shared_buffers": "128MB"}}


def test_a_volume_that_fell_back_to_a_local_folder_is_a_mismatch(v1):
    fuse, local = _with(v1.run, nas=NAS_FUSE), _with(v1.run, nas=NAS_LOCAL)
    assert fingerprint_mismatches(fuse, local) == {"nas kind": ("fuse", "local")}
    # A record from before "kind" (available only) says the same.
    old_local = _with(v1.run, nas={k: v for k, v in NAS_LOCAL.items() if k != "kind"})
    assert fingerprint_mismatches(fuse, old_local) == {"nas kind": ("fuse", "local")}
    # Where it was mounted changes every run and is not a difference.
    moved = _with(v1.run, nas={**NAS_FUSE, "path": "/s/mnt/csv_ingest-2"})
    assert fingerprint_mismatches(fuse, moved) == {}
    assert fingerprint_mismatches(fuse, _with(v1.run, nas={**NAS_FUSE, "slots": 4})) == \
        {"nas slots": (8, 4)}


def test_another_postgres_server_is_a_mismatch(v1):
    base = _with(v1.run, postgres=PG)
    newer = _with(v1.run, postgres={**PG, "version": "17.2"})
    assert fingerprint_mismatches(base, newer) == {"postgres version": ("16.4", "17.2")}
    url = _with(v1.run, postgres={**PG, "source": "DATABASE_URL"})
    assert fingerprint_mismatches(base, url) == {"postgres source": ("embedded", "DATABASE_URL")}
    container = _with(v1.run, postgres={**PG, "source": "DATABASE_URL", "container": "pg-1"})
    assert fingerprint_mismatches(url, container) == \
        {"postgres source": ("DATABASE_URL", "container")}
    fsync_off = _with(v1.run, postgres={**PG, "settings": {**PG["settings"], "fsync": "off"}})
    assert fingerprint_mismatches(base, fsync_off) == {"postgres settings fsync": ("on", "off")}


def test_versions_and_commit_are_named_and_volatile_machine_fields_are_not(v1):
    other = copy.deepcopy(v1.run)
    meta = other["metadata"]
    meta["packages"]["psycopg"] = "3.4.0"
    meta["git"]["commit"] = "0" * 40
    meta["python"] = "3.12.1"
    meta["host"], meta["load_average"] = "another-name", [3.0, 2.0, 1.0]
    assert fingerprint_mismatches(v1.run, other) == {
        "harness commit": ("943ec09a690023f6e5ac746bb9a43641af6ded65", "0" * 40),
        "package psycopg": ("3.3.9", "3.4.0"),
        "python": ("CPython 3.11.7", "CPython 3.12.1")}


def test_a_new_option_field_and_the_dask_cluster_size_are_covered(v1):
    def dask_run(policy: str, threads: int, hosts: int) -> RunData:
        run = copy.deepcopy(v1.run)
        run["plan"] = [{"cell_id": "000-dask-r1", "mode": "dask", "label": "dask",
                        "options": {"workers": 2, "policy": policy}}]
        cells = [{"mode": "dask", "info": {"workers": 2, "threads": threads, "hosts": hosts}}]
        return RunData(v1.path, run, cells, {}, {})
    small, large = dask_run("fifo", 4, 1), dask_run("interleave", 8, 2)
    assert fingerprint(small.run, small.cells)["modes"]["dask"]["cluster"] == \
        {"threads": 4, "hosts": 1}
    assert fingerprint_mismatches(small, large) == {
        "mode dask cluster hosts": (1, 2), "mode dask cluster threads": (4, 8),
        "mode dask policy": ("fifo", "interleave")}


def test_an_old_run_folder_still_loads_and_compares(v1, tmp_path):
    assert compare_runs(v1, v1).comparable
    # A v1 folder has no code hash, services or plan options; a newer record with them is
    # not refused for what the old one never recorded, only for what both recorded.
    newer = copy.deepcopy(v1.run)
    newer["scenario"]["code_hash"] = "0123456789abcdef"
    newer["services"] = {"postgres": PG}
    newer["metadata"]["packages"]["SQLAlchemy"] = "2.0.40"
    assert fingerprint_mismatches(v1, newer) == {}
    folder = tmp_path / "newer"
    shutil.copytree(FIXTURE, folder)
    (folder / "run.json").write_text(json.dumps(dict(newer, schema_version=2)))
    assert compare_runs(v1, load_run(folder, details=False)).comparable
    newer["scenario"]["params"]["cost_ms"] = 50.0
    assert fingerprint_mismatches(v1, newer) == {"param cost_ms": (5.0, 50.0)}


def test_nightly_picks_the_latest_matching_run_and_allows_a_named_mismatch(runs, tmp_path):
    out = tmp_path / "results"
    shutil.copytree(runs["out"], out)
    args = ["nightly", "calibrate", "--modes", ",".join(MODES), "--repeat", "1",
            "--no-warmup", "--param", "units=8", "--param", "cost_ms=1", "--out", str(out),
            "--no-progress", "--no-report", "--threshold", "500%"]
    # Later runs with other workers or another cap are passed over: a2 is the baseline.
    auto = harness_cli(*args)
    assert auto.returncode == EXIT_OK, auto.stdout + auto.stderr
    assert f"baseline:  {out / 'calibrate' / runs['a2'].path.name}" in auto.stdout
    # An explicit baseline that differs is compared only when allowed, saying what differs.
    allowed = harness_cli(*args, "--workers", "threads=16", "--baseline",
                          str(runs["a"].path), "--allow-mismatch")
    assert allowed.returncode == EXIT_OK, allowed.stdout + allowed.stderr
    assert "mode threads workers differs: 8 -> 16" in allowed.stdout
