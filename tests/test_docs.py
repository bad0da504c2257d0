"""The docs: README is a front page whose links resolve, and the MkDocs site builds strictly
(a broken link, a missing anchor or a stale API reference fails)."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_readme_is_a_front_page_whose_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert "bash scripts/test.sh" in text  # the test command CI runs (.ci/run)
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "#")):
            continue
        path = target.split("#", 1)[0]
        assert (ROOT / path).exists(), f"README.md links to {target}, which does not exist"


def test_every_docs_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert pages and all(re.search(rf":\s*{re.escape(p)}\s*$", nav, re.M) for p in pages), \
        sorted(p for p in pages if p not in nav)


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is in the dev extra: pip install -e '.[dev]'")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    page = (tmp_path / "site" / "config" / "index.html").read_text()
    # the config reference is generated from the schema: every dm_ssl key is on the page
    from dm_ssl.config import DM_SSL_SCHEMA

    for key in DM_SSL_SCHEMA:
        assert f"<code>{key}</code>" in page, key


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "scripts"))  # the scripts import each other
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return module


#: the results tables the docs render from docs/records/ (scripts/docs_tables.py)
RESULTS_TABLES = {"demo", "dm_guard", "ll_gradients", "A1_digits", "ramp_ll_colour",
                  "ramp_ll_digits"}


def test_results_tables_equal_the_rendering_of_their_records():
    pytest.importorskip("semilearn")  # the sweep tables' definitions import it
    tables = _script("docs_tables")
    found = {name for path in tables.doc_files() for name, _ in tables.blocks(path.read_text())}
    assert found == RESULTS_TABLES
    assert tables.stale() == [], "run: .venv/bin/python scripts/docs_tables.py --write"


def test_a_hand_edited_results_table_is_stale(tmp_path):
    pytest.importorskip("semilearn")
    tables = _script("docs_tables")
    page = tmp_path / "results.md"
    text = (ROOT / "docs" / "results.md").read_text()
    page.write_text(text)
    assert tables.stale([page]) == []
    # one digit changed inside the demo's block: the check names the page and the table
    start = text.index("<!-- results-table: demo -->")
    digit = next(i for i in range(start, len(text)) if text[i] in "0123456789" and
                 text[i - 1] == " " and text[i + 1] in "0123456789")
    page.write_text(text[:digit] + str((int(text[digit]) + 1) % 10) + text[digit + 1:])
    assert tables.stale([page]) == ["results.md: demo"]
    page.write_text(text.replace("<!-- results-table: demo -->", "<!-- results-table: nope -->"))
    assert tables.stale([page]) == ["results.md: nope (no records: docs/records/nope)"]


@pytest.mark.slow
def test_the_demo_reproduces_its_record(tmp_path, torch_threads):
    """One cell of the demo table run again (``FixMatch + DM(CE)``, the record's first seed),
    its schedule still the whole run's. With the record's torch, thread count, CPU and
    instruction set: its first 50 steps, each evaluation's accuracy and loss the record's bit
    for bit (the pseudo-label mask opens at step 16 and is about half open by 30, so the DM
    term has acted; the loss moves with every weight while the accuracy is still at chance).
    Elsewhere (other float reductions, another run): its first half, the accuracy at step 150
    within 5 points of the record's."""
    pytest.importorskip("semilearn")
    demo = _script("demo_digits")
    record = json.loads((ROOT / "docs" / "records" / "demo.json").read_text())
    meta, name = record["meta"], "FixMatch + DM(CE)"
    want_run = record["results"][name][0]
    torch_threads(meta["torch_threads"])
    same = demo.same_machine(meta, meta["torch_threads"])
    until = 50 if same else meta["iters"] // 2
    cfg = demo.method_config(name, meta["seeds"][0], meta["iters"], meta["num_labels"], tmp_path)
    run = demo.run_one({**cfg, **meta["set"]}, until=until)
    got, want = (demo.curve_until(r["curve"], until) for r in (run, want_run))
    assert len(want) >= 2 and want[-1][0] == until, want      # evaluations to compare
    if same:
        assert got == want
        assert demo.curve_until(run["eval_loss"], until) == demo.curve_until(
            want_run["eval_loss"], until)
    else:
        assert abs(got[-1][1] - want[-1][1]) <= 0.05, (got, want)


def test_store_copies_a_sweeps_finished_records_and_refuses_a_part_run(tmp_path, monkeypatch):
    tables = _script("docs_tables")
    monkeypatch.setattr(tables, "RECORDS", tmp_path / "records")
    runs = tmp_path / "runs" / "A1_digits"

    def run(name: str, status: str) -> None:
        (runs / name).mkdir(parents=True)
        (runs / name / "run.json").write_text(json.dumps(
            {"seed": 0, "experiment": {"table": "A1_digits", "cell": name[:-3]}}))
        (runs / name / "results.json").write_text(json.dumps({"status": status,
                                                               "final_acc": 0.5}))
        (runs / name / "latest_model.pth").write_bytes(b"weights")

    run("no_mixing_s0", "finished")
    run("mixup_mce_s0", "interrupted")
    with pytest.raises(SystemExit, match="mixup_mce_s0"):
        tables.store("A1_digits", tmp_path / "runs")
    assert not (tmp_path / "records").exists()               # refused: nothing copied
    (runs / "mixup_mce_s0" / "results.json").write_text('{"status": "finished"}')
    tables.store("A1_digits", tmp_path / "runs", "A1_digits_device")
    stored = tmp_path / "records" / "A1_digits_device"
    assert sorted(p.relative_to(stored).as_posix() for p in stored.rglob("*") if p.is_file()) \
        == ["mixup_mce_s0/results.json", "mixup_mce_s0/run.json", "no_mixing_s0/results.json",
            "no_mixing_s0/run.json"]                         # the records, not the weights


def test_side_by_side_tables_pair_two_records_of_the_same_runs(tmp_path, monkeypatch):
    """The parity renderers (device augmentation's page): two records of the same runs, one
    setting apart, as columns side by side."""
    import shutil

    pytest.importorskip("semilearn")
    tables = _script("docs_tables")
    monkeypatch.setattr(tables, "RECORDS", tmp_path)
    demo = json.loads((ROOT / "docs" / "records" / "demo.json").read_text())
    for r in demo["results"]["FixMatch"]:
        r.setdefault("seconds", 10.0)
    other = json.loads(json.dumps(demo))
    for runs in other["results"].values():
        for r in runs:
            r["final"], r["seconds"] = 0.5, 5.0
    (tmp_path / "demo.json").write_text(json.dumps(demo))
    (tmp_path / "demo_device.json").write_text(json.dumps(other))
    rows = tables.demo_parity().splitlines()
    assert len(rows) == 2 + len(demo["results"])
    fixmatch = next(r for r in rows if r.startswith("| FixMatch |"))
    assert "| 50.00 ± 0.00 |" in fixmatch and fixmatch.endswith("→ 5.0 |")
    shutil.copytree(ROOT / "docs" / "records" / "A1_digits", tmp_path / "A1_digits")
    shutil.copytree(ROOT / "docs" / "records" / "A1_digits", tmp_path / "A1_digits_device")
    table = tables.sweep_parity("A1_digits", "A1_digits", "A1_digits_device",
                                ("top-1", "Mixup top-2"))
    assert table.splitlines()[0].count("A1_digits_device") == 2
    for row in table.splitlines()[2:]:                        # the same records: equal pairs
        cells = [c.strip() for c in row.strip("|").split("|")][1:]
        assert cells[0] == cells[1] and cells[2] == cells[3], row
