"""Import rules of the codebase, checked from the source (no imports executed):

- only search/ray_backend.py imports Ray;
- models/ (the tasks and the training loop) imports neither Optuna, Ray nor finesweep.search;
- the finesweep modules import each other without cycles (module-level imports; imports inside
  functions are deferred on purpose and do not make a module unimportable);
- no module is longer than MAX_MODULE_LINES: a longer one holds more than one job;
- no inheritance chain in search/ spans more than MAX_INHERITANCE_MODULES modules (bases
  resolved through each module's imports).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"search": "finesweep.search", "models": "finesweep.models"}
MAX_MODULE_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


_MODULE_NAMES = set(_modules())


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from package import submodule` imports the submodule: the package's __init__ runs
            # first for every import of a submodule, so it is not an edge of its own.
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
            if not all(f"{node.module}.{alias.name}" in _MODULE_NAMES for alias in node.names):
                names.add(node.module)
        elif top_level_only and isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks do not run
            continue
    return names


def test_only_the_ray_backend_imports_ray():
    importers = sorted(name for name, path in _modules().items()
                       if any(i == "ray" or i.startswith("ray.") for i in _imports(path, top_level_only=False)))
    assert importers == ["finesweep.search.ray_backend"]


def test_models_import_neither_optuna_ray_nor_the_search():
    for name, path in _modules().items():
        if not name.startswith("finesweep.models"):
            continue
        forbidden = sorted(i for i in _imports(path, top_level_only=False)
                           if i.split(".")[0] in ("optuna", "ray") or i.startswith("finesweep.search"))
        assert not forbidden, f"{name} imports {forbidden}"


def test_module_level_imports_have_no_cycles():
    modules = _modules()
    graph = {name: sorted({i if i in modules else i.rsplit(".", 1)[0] for i in _imports(path, top_level_only=True)}
                          & set(modules) - {name})
             for name, path in modules.items()}
    # Depth-first search for a back edge; report the cycle it closes.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (cycle := visit(node)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def test_no_module_is_longer_than_the_limit():
    paths = [*_modules().values(), ROOT / "launch.py", *sorted((ROOT / "benchmarks").glob("*.py")),
             *sorted((ROOT / "scripts").glob("*.py"))]
    too_long = {str(path.relative_to(ROOT)): lines for path in paths
                if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert len(paths) > 40
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: {too_long}"


def test_the_run_directory_layout_is_spelled_only_in_its_module():
    """File names of a run directory (and the trial_NNNN pattern) appear as literals only in
    search/run_dir/__init__.py; everything else asks it for paths."""
    from finesweep.search import run_dir

    # Folder names that are also command or spec words ("report", "trials", ...) are left out:
    # the names with a suffix are the ones a copy would spell.
    names = {value for name, value in vars(run_dir).items()
             if name.isupper() and isinstance(value, str) and "." in value}
    offenders = []
    for module, path in _modules().items():
        if module == "finesweep.search.run_dir":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                if text in names or text.startswith("trial_{") or text.startswith("ray_{"):
                    offenders.append(f"{module}:{node.lineno}: {text!r}")
            if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant) \
                    and str(node.values[0].value) in ("trial_", "ray_", "rank_"):
                offenders.append(f"{module}:{node.lineno}: f-string {node.values[0].value!r}...")
    assert len(names) >= 12
    assert not offenders, offenders


def test_search_groups_its_modules_by_job():
    """search/'s top level holds the driver's own steps; the spec, the views, the run directory,
    the study and the rest are packages (issue 27: at most 22 entries, packages counted)."""
    entries = sorted(path.name for path in (ROOT / "search").iterdir()
                     if path.suffix == ".py" or (path / "__init__.py").is_file())
    assert len(entries) <= 22, entries
    for package in ("spec", "views", "strategies", "run_dir", "study"):
        assert package in entries


MAX_INHERITANCE_MODULES = 2


def _classes_and_bases() -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(module, class) -> the (module, class) of each base defined in search/, resolved through
    the module's imports (``from m import C``, ``import m as x`` then ``x.C``, and ``C`` itself)."""
    modules = _modules()
    found: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for name, path in modules.items():
        if not name.startswith("finesweep.search"):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        local = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
        # A name bound by an import: a class of another module, or a module.
        bound: dict[str, tuple[str, str] | str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    bound[alias.asname or alias.name] = target if target in modules else (node.module, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        bound[alias.asname] = alias.name
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            bases = []
            for base in node.bases:
                if isinstance(base, ast.Name) and base.id in local:
                    bases.append((name, base.id))
                elif isinstance(base, ast.Name) and isinstance(bound.get(base.id), tuple):
                    bases.append(bound[base.id])
                elif isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) \
                        and isinstance(bound.get(base.value.id), str):
                    bases.append((bound[base.value.id], base.attr))
            found[(name, node.name)] = [b for b in bases if b[0] in modules]
    return found


def test_no_inheritance_chain_in_search_spans_more_than_two_modules():
    """A class built on a base from another module, itself built on a third, spreads one job
    over files that must be read together (the spec checker was such a tower of four)."""
    bases = _classes_and_bases()

    def chains(cls: tuple[str, str]) -> list[list[tuple[str, str]]]:
        # A base re-exported by a package resolves to the package: follow it where it is defined.
        parents = [next((k for k in bases if k[1] == b[1] and (k[0] == b[0] or k[0].startswith(b[0] + "."))), b)
                   for b in bases.get(cls, [])]
        return [[cls, *chain] for parent in parents for chain in chains(parent)] or [[cls]]

    too_long = {" -> ".join(f"{m}.{c}" for m, c in chain) for cls in bases for chain in chains(cls)
                if len({m for m, _ in chain}) > MAX_INHERITANCE_MODULES}
    assert len(bases) > 20
    assert not too_long, f"inheritance chains over {MAX_INHERITANCE_MODULES} modules: {sorted(too_long)}"
