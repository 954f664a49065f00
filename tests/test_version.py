"""One version string: the package, its installed metadata, ``neuromod-rl --version``, CITATION.cff and
the CHANGELOG agree."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import yaml
from packaging.version import Version

import neuromod_rl
from neuromod_rl.cli import main

ROOT = Path(__file__).resolve().parents[1]
#: keep-a-changelog headings: `## [Unreleased]` or `## [VERSION] - YYYY-MM-DD`
HEADING = re.compile(r"## \[(Unreleased|[0-9][^\]]*)\](?: - (\d{4}-\d{2}-\d{2}))?$")


def test_package_metadata_and_command_report_the_same_version(capsys):
    installed = importlib.metadata.version("neuromod-rl")
    assert installed == neuromod_rl.__version__, "the installed metadata is stale: run `make install`"
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"neuromod-rl {neuromod_rl.__version__}"
    out = subprocess.run([sys.executable, "-m", "neuromod_rl.cli", "--version"], cwd=ROOT / "tests",
                         capture_output=True, text=True, timeout=60, check=True).stdout  # fmt: skip
    assert out.strip().endswith(neuromod_rl.__version__)


def test_version_is_a_valid_release_number():
    assert str(Version(neuromod_rl.__version__)) == neuromod_rl.__version__


def test_changelog_headings_are_keep_a_changelog_and_not_ahead_of_the_version():
    headings = [line for line in (ROOT / "CHANGELOG.md").read_text().splitlines() if line.startswith("## ")]
    parsed = [HEADING.fullmatch(line) for line in headings]
    assert all(parsed), [h for h, p in zip(headings, parsed) if not p]
    assert parsed[0][1] == "Unreleased", "the newest section collects what is not released yet"
    released = [Version(p[1]) for p in parsed if p[1] != "Unreleased"]
    assert all(p[2] for p in parsed if p[1] != "Unreleased"), "every released section has its date"
    assert released == sorted(released, reverse=True), "sections run newest first"
    assert released[0] <= Version(neuromod_rl.__version__)


def test_citation_file_names_the_version_and_the_license():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert cff["title"] == "neuromod-rl" and cff["message"] and cff["authors"]
    assert cff["version"] == neuromod_rl.__version__
    assert cff["license"] == importlib.metadata.metadata("neuromod-rl")["License"]
