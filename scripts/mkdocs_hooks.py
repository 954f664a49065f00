"""MkDocs hooks: the API reference reads the installed package, the repository's own Markdown files outside
``docs/`` (the README, the changelog, the examples) are pages of the site, and the API pages read Sphinx
roles as plain code.

mkdocstrings reads sources statically and would find the checkout's ``neuromod_rl/`` folder first, which
lacks ``agents/`` and ``envs/`` (they install as ``neuromod_rl.agents`` and ``neuromod_rl.envs``). The
hook points it at the folder the installed package is imported from: the strict editable install's tree
of links (``make install``), or site-packages.

README.md, CHANGELOG.md and examples/README.md live where GitHub shows them and link from there
(``docs/agents.md``, ``../docs/reproduce.md``, ``sb3_drop_in.py``). The hook adds them to the site as
generated pages (the README as ``index.md``), with each link that names a file of the site rewritten to
that file's place in it, and the example scripts as files; ``mkdocs build --strict`` then checks their
links like any other page's, and a link to a file the site lacks still fails it.

The docstrings cite objects the Sphinx way (``:class:`~pkg.mod.Name```), which Markdown renders as the
role's text followed by the code; on the API pages the role is dropped (and ``~`` keeps the last name, as
Sphinx shows it).
"""

from __future__ import annotations

import posixpath
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent

# site path -> the repository file it is made from, for the Markdown files outside docs/
ROOT_PAGES = {"index.md": "README.md", "changelog.md": "CHANGELOG.md", "examples/README.md": "examples/README.md"}

# a Markdown link or image target, without its anchor
_LINK = re.compile(r"(\]\()(?:\./)?([^)\s#]+)")

# a Sphinx role as Markdown renders it: ":class:" then the target as inline code
_ROLE = re.compile(r":(?:py:)?(?:class|mod|func|meth|attr|data|exc|obj|const):<code>(~?)([^<]*)</code>")


def installed_package_root(search_path: list[str] | None = None) -> Path:
    """Find the folder on the import path that holds the installed ``neuromod_rl`` with its subpackages.

    Args:
        search_path: the folders to look in, in order; ``None``: ``sys.path``, which holds the current
            editable install's tree (an earlier version's tree left under ``build/`` is not on it).

    Returns:
        The first folder whose ``neuromod_rl/agents`` is a package.

    Raises:
        PluginError: no such folder (the package is not installed).
    """
    for entry in sys.path if search_path is None else search_path:
        if entry and (Path(entry) / "neuromod_rl" / "agents" / "__init__.py").is_file():
            return Path(entry)
    raise PluginError("neuromod_rl is not installed, so the API reference cannot be read: run `make install` "
                      "(or `pip install -e '.[docs]' --config-settings editable_mode=strict`)")


# before mkdocstrings' own on_config, which makes the handler from its configuration
@event_priority(100)
def on_config(config: Any) -> Any:
    """Point mkdocstrings' Python handler at the installed package (MkDocs ``on_config`` event).

    Args:
        config: the MkDocs configuration, with the ``mkdocstrings`` plugin loaded.

    Returns:
        ``config``, with the handler's ``paths`` set unless ``mkdocs.yml`` sets them.
    """
    handler = config.plugins["mkdocstrings"].config.handlers.setdefault("python", {})
    handler.setdefault("paths", [str(installed_package_root())])
    return config


def root_files(root: Path = ROOT) -> dict[str, str]:
    """Every repository file outside ``docs/`` that the site holds.

    Args:
        root: the repository's root folder.

    Returns:
        Site path -> repository path: the pages of ``ROOT_PAGES``, ``CITATION.cff`` (the README links
        to it) and the example scripts beside ``examples/README.md`` (which it links to).
    """
    files = {**ROOT_PAGES, "CITATION.cff": "CITATION.cff"}
    for script in sorted((root / "examples").glob("*.py")):
        files[f"examples/{script.name}"] = f"examples/{script.name}"
    return files


def rewrite_links(markdown: str, source: str, page: str, files: dict[str, str]) -> str:
    """Rewrite the relative links of a Markdown file outside ``docs/`` for its place in the site.

    Args:
        markdown: the file's text, its links relative to where it is in the repository.
        source: its path in the repository (``README.md``, ``examples/README.md``).
        page: its path in the site (``index.md``, ``examples/README.md``).
        files: site path -> repository path of every file from outside ``docs/`` that the site holds.

    Returns:
        The text with each link to a file under ``docs/`` or in ``files`` made relative to ``page``; other
        links (web addresses, anchors, files the site lacks) are kept as they are.
    """
    site_path = {repo: site for site, repo in files.items()}

    def fix(match: re.Match[str]) -> str:
        target = match.group(2)
        if ":" in target or target.startswith("/"):
            return match.group(0)
        in_repo = posixpath.normpath(posixpath.join(posixpath.dirname(source), target))
        in_site = site_path.get(in_repo) or (in_repo[len("docs/"):] if in_repo.startswith("docs/") else None)
        if in_site is None:
            return match.group(0)
        return match.group(1) + posixpath.relpath(in_site, posixpath.dirname(page) or ".")

    return _LINK.sub(fix, markdown)


def on_files(files: Files, config: Any) -> Files:
    """Add the repository's files from outside ``docs/`` to the site (MkDocs ``on_files`` event).

    Args:
        files: the files MkDocs found under ``docs_dir``.
        config: the MkDocs configuration.

    Returns:
        ``files`` with the pages of ``ROOT_PAGES`` (links rewritten) and the example scripts added.
    """
    extra = root_files()
    for site, repo in extra.items():
        if files.get_file_from_path(site) is not None:
            raise PluginError(f"docs/{site} exists and {repo} would replace it: remove one of the two")
        if site.endswith(".md"):
            content = rewrite_links((ROOT / repo).read_text(encoding="utf-8"), repo, site, extra)
            files.append(File.generated(config, site, content=content))
        else:
            files.append(File.generated(config, site, abs_src_path=str(ROOT / repo)))
    return files


def strip_sphinx_roles(html: str) -> str:
    """Drop the Sphinx roles that docstrings use from rendered HTML, keeping the code they mark.

    Args:
        html: a page's HTML, where a role reads ``:class:<code>~pkg.mod.Name</code>``.

    Returns:
        The HTML with each such role reduced to its code: ``<code>Name</code>`` for a ``~`` target (the
        last dotted name), ``<code>pkg.mod.Name</code>`` otherwise.
    """

    def fix(match: re.Match[str]) -> str:
        target = match.group(2).rsplit(".", 1)[-1] if match.group(1) else match.group(2)
        return f"<code>{target}</code>"

    return _ROLE.sub(fix, html)


def on_page_content(html: str, page: Any, config: Any, files: Files) -> str:
    """Render the Sphinx roles of the API pages' docstrings as code (MkDocs ``on_page_content`` event).

    Args:
        html: the page's HTML.
        page: the page being built.
        config: the MkDocs configuration.
        files: every file of the site.

    Returns:
        ``html`` with the roles dropped on pages under ``api/``; other pages unchanged.
    """
    if page.file.src_uri.startswith("api/"):
        return strip_sphinx_roles(html)
    return html
