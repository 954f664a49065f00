"""The documentation site (mkdocs.yml): its nav lists every page, its API pages name objects that import,
the hooks that put the README and the changelog on the site keep their links working, and the strict build
passes."""

from __future__ import annotations

import importlib
import importlib.util
import os
import posixpath
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "scripts" / "mkdocs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOOKS = _hooks()


def _config() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def _nav_pages(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [page for value in node.values() for page in _nav_pages(value)]
    return [page for item in node for page in _nav_pages(item)]


def _identifiers() -> list[str]:
    return [match for page in sorted((DOCS / "api").glob("*.md"))
            for match in re.findall(r"^::: *(\S+)", page.read_text(), flags=re.MULTILINE)]


def _resolve(identifier: str) -> object:
    """Import the longest module prefix of a dotted name, then read the rest as attributes."""
    parts = identifier.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(identifier)


def test_nav_lists_every_docs_page_and_only_pages_that_exist():
    nav = _nav_pages(_config()["nav"])
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    generated = set(HOOKS.ROOT_PAGES)
    assert sorted(on_disk - set(nav)) == [], "pages missing from the nav in mkdocs.yml"
    assert sorted(set(nav) - on_disk - generated) == [], "nav entries with no page"
    assert len(nav) == len(set(nav)), "a page is listed twice"
    assert not on_disk & generated, "docs/ holds a page the hooks make from the repository root"


def test_every_api_page_is_in_the_nav_and_names_objects():
    nav = set(_nav_pages(_config()["nav"]))
    api_pages = {p.relative_to(DOCS).as_posix() for p in (DOCS / "api").glob("*.md")}
    assert api_pages <= nav
    assert len(_identifiers()) > 50


@pytest.mark.parametrize("identifier", _identifiers())
def test_api_identifier_imports(identifier):
    assert _resolve(identifier) is not None


@pytest.mark.parametrize("page", sorted(HOOKS.ROOT_PAGES))
def test_root_page_links_point_at_files_of_the_site_once_rewritten(page):
    files = HOOKS.root_files(ROOT)
    text = HOOKS.rewrite_links((ROOT / files[page]).read_text(), files[page], page, files)
    targets = re.findall(r"\]\((?![a-z]+:)([^)#\s]+)", text)
    site = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*")} | set(files)
    folder = posixpath.dirname(page)
    assert sorted(t for t in targets if posixpath.normpath(posixpath.join(folder, t)) not in site) == []


def test_root_links_are_rewritten_for_the_page_s_place_in_the_site():
    files = {"index.md": "README.md", "changelog.md": "CHANGELOG.md", "examples/README.md": "examples/README.md",
             "examples/run.py": "examples/run.py"}
    readme = "[a](docs/agents.md#x) [b](./docs/results/pomdp.md) [c](CHANGELOG.md) [d](examples/README.md) " \
             "[e](LICENSE) [f](https://x.org) [g](#results)"
    assert HOOKS.rewrite_links(readme, "README.md", "index.md", files) == (
        "[a](agents.md#x) [b](results/pomdp.md) [c](changelog.md) [d](examples/README.md) "
        "[e](LICENSE) [f](https://x.org) [g](#results)"
    )
    examples = "[a](../docs/reproduce.md) [b](run.py) [c](../README.md) [d](../CHANGELOG.md#unreleased)"
    assert HOOKS.rewrite_links(examples, "examples/README.md", "examples/README.md", files) == (
        "[a](../reproduce.md) [b](run.py) [c](../index.md) [d](../changelog.md#unreleased)"
    )


def test_sphinx_roles_render_as_their_code():
    html = "see :class:<code>~pkg.mod.Name</code> and :func:<code>pkg.run</code>, not <code>:class:</code>"
    assert HOOKS.strip_sphinx_roles(html) == "see <code>Name</code> and <code>pkg.run</code>, not <code>:class:</code>"


def test_api_reference_reads_the_installed_tree_not_the_checkout_folder(tmp_path):
    checkout, tree = tmp_path / "checkout", tmp_path / "tree"
    (checkout / "neuromod_rl").mkdir(parents=True)
    (tree / "neuromod_rl" / "agents").mkdir(parents=True)
    (tree / "neuromod_rl" / "agents" / "__init__.py").touch()
    assert HOOKS.installed_package_root(["", str(checkout), str(tree)]) == tree
    with pytest.raises(PluginError, match="make install"):
        HOOKS.installed_package_root([str(checkout)])


@pytest.mark.slow
def test_strict_build_passes_offline(tmp_path):
    """What `make docs` runs, into a scratch folder: a broken link or anchor or a bad docstring fails it."""
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    index = (tmp_path / "index.html").read_text()
    assert 'href="agents/"' in index
    api = (tmp_path / "api" / "agents" / "index.html").read_text()
    assert "PlasticPPO" in api and ":class:" not in api
    assert "fonts.googleapis" not in index
