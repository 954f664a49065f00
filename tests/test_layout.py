"""The house rules a tool can check: imports point down the layers and never in a circle, the largest
folder stays a minority of the package, source code holds no lab notebook, the README stays a guide
and names no file that does not exist."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: source folder -> its package (agents/, envs/ and configs/ install inside neuromod_rl)
FOLDERS = {"neuromod_rl": "neuromod_rl", "agents": "neuromod_rl.agents", "envs": "neuromod_rl.envs",
           "configs": "neuromod_rl.configs"}
#: each layer imports only from layers of a lower or equal rank
RANKS = {"neuromod_rl": 0, "neuromod_rl.configs": 0, "neuromod_rl.envs": 0, "neuromod_rl.plasticity": 0,
         "neuromod_rl.agents": 1, "neuromod_rl.experiment": 2, "neuromod_rl.studies": 3, "neuromod_rl.bench": 3,
         "neuromod_rl.cli": 4,
         # the public face of the experiment layer's Hub sharing (neuromod_rl.hub.load / push)
         "neuromod_rl.hub": 2,
         # python -m neuromod_rl.zoo / neuromod-rl-zoo: a command of its own, over rl-zoo3
         "neuromod_rl.zoo": 4}


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if folder == "neuromod_rl" and parts[0] in {"agents", "envs", "configs"}:
                continue
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every ``neuromod_rl`` module ``path`` imports, at any depth (a name from a package counts as its
    submodule where one exists), except under ``if TYPE_CHECKING:``."""
    out = set()
    tree = ast.parse(path.read_text())
    for block in [n for n in ast.walk(tree) if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]:
        block.body = []  # annotations only: never imported when the program runs
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("neuromod_rl")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("neuromod_rl"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in MODULES else node.module)
    return out


def _layer(module: str) -> str:
    return max((layer for layer in RANKS if module == layer or module.startswith(layer + ".")), key=len)


def test_imports_point_down_the_layers():
    upward = [f"{m} -> {t}" for m, p in MODULES.items() for t in _imports(p)
              if RANKS[_layer(t)] > RANKS[_layer(m)]]
    assert not upward, "imports that point up a layer:\n" + "\n".join(sorted(upward))


def test_no_import_circle_between_modules():
    """Package ``__init__`` files are left out: importing a submodule runs its package first by design."""
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    graph = {m: {t for t in _imports(p) if t in MODULES and t not in packages and t != m}
             for m, p in MODULES.items() if m not in packages}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, f"modules that import each other: {circles}"


def test_no_folder_holds_more_than_about_a_third_of_the_package():
    lines: dict[str, int] = {}
    for module, path in MODULES.items():
        top = ".".join(module.split(".")[:2])
        lines[top] = lines.get(top, 0) + len(path.read_text().splitlines())
    total = sum(lines.values())
    biggest = max(lines, key=lines.get)
    assert lines[biggest] <= 0.36 * total, f"{biggest}: {lines[biggest]} of {total} lines"


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_source_code_holds_no_dates_or_issue_numbers(folder):
    """Dates, measured timings and issue numbers are results and history: docs/results and CHANGELOG.md."""
    pattern = re.compile(r"(19|20)\d{2}-[01]\d-[0-3]\d|\bissues? \d+\b")
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in (ROOT / folder).rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, "\n".join(hits)


def test_readme_is_a_guide_and_links_only_files_that_exist():
    readme = (ROOT / "README.md").read_text().splitlines()
    assert len(readme) <= 220 and max(map(len, readme)) <= 400
    assert "make run" in "\n".join(readme) and "make test" in "\n".join(readme)
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken = [f"{doc.relative_to(ROOT)} -> {link}" for doc in docs
              for link in re.findall(r"\]\(([^)#: ]+)(?:#[^)]*)?\)", doc.read_text())
              if not (doc.parent / link).exists()]
    assert not broken, "\n".join(broken)


def test_test_files_have_unique_names_and_mirror_the_packages():
    tests = [p for p in (ROOT / "tests").rglob("test_*.py")]
    names = [p.name for p in tests]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    folders = {p.parent.relative_to(ROOT / "tests").as_posix() for p in tests}
    assert folders <= {".", "plasticity", "agents", "envs", "experiment", "studies", "bench", "zoo"}, folders


def test_import_neuromod_rl_stays_light():
    """No SB3, wandb, ray or matplotlib at ``import neuromod_rl``: the envs register without them."""
    code = ("import sys, neuromod_rl; heavy = [m for m in ('stable_baselines3', 'wandb', 'ray', 'matplotlib', "
            "'evotorch', 'triton', 'rl_zoo3') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "tests",
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out
