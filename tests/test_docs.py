"""The docs: README is a front page whose links resolve, and the MkDocs site builds strictly
(a broken link, a missing anchor or a stale API reference fails)."""

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
