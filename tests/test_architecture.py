"""Import rules of the codebase, checked from the source (no imports executed):

- only search/ray_backend.py imports Ray;
- models/ (the tasks and the training loop) imports neither Optuna, Ray nor finesweep.search,
  reads no Ray/Tune environment variable and spells no Optuna direction;
- the finesweep modules import each other without cycles (module-level imports; imports inside
  functions are deferred on purpose and do not make a module unimportable);
- no module is longer than MAX_MODULE_LINES: a longer one holds more than one job;
- no benchmark machinery in search/ or models/: benchmarks time trials with their own Lightning
  callback and run their scripted tasks as user models (benchmarks/).
- no inheritance chain in search/ spans more than MAX_INHERITANCE_MODULES modules (bases
  resolved through each module's imports);
- an import inside a function says why it is not at the top (a comment on its line or just above).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
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


_RAY_VARIABLE = re.compile(r"\b(RAY|TUNE)_[A-Z0-9_]+\b")
_OPTUNA_DIRECTION = re.compile(r"\b(maximize|minimize)\b", re.IGNORECASE)


def _string_constants(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def test_models_read_no_ray_variable_and_spell_no_optuna_direction():
    """models/ runs the same in a trial worker, `launch.py train` or a notebook: it reads no
    Ray/Tune environment variable (a trial gets every path absolute from the spec), and knows a
    metric's direction only as min/max (search/study converts to Optuna's words)."""
    found = {}
    for name, path in _modules().items():
        if name.startswith("finesweep.models"):
            words = [m.group(0) for text in _string_constants(path)
                     for pattern in (_RAY_VARIABLE, _OPTUNA_DIRECTION) for m in pattern.finditer(text)]
            if words:
                found[name] = sorted(set(words))
    assert found == {}


# The one writer that is not write_atomically: the report's staging folder, moved into place whole.
_STAGED_WRITERS = {("finesweep.search.views.report", "write_files")}


def test_the_views_write_files_only_whole():
    """Every file a view writes (export, robust, ensemble, retrain, report) goes through
    run_dir.write_atomically, or the report's staging folder: a crash or a full disk never leaves
    half a file. A plain write_text, write_bytes, open(..., "w") or torch.save is flagged."""
    found = []
    for name, path in _modules().items():
        if not name.startswith("finesweep.search.views"):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) or \
                    (name, function.name) in _STAGED_WRITERS:
                continue
            for node in ast.walk(function):
                if not isinstance(node, ast.Call) or not isinstance(node.func, (ast.Attribute, ast.Name)):
                    continue
                called = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
                modes = [a.value for a in node.args[1:2] if isinstance(a, ast.Constant)] + \
                        [k.value.value for k in node.keywords if k.arg == "mode" and isinstance(k.value, ast.Constant)]
                if isinstance(node.func, ast.Attribute) and node.func.attr == "open" and node.args[:1]:
                    modes = [a.value for a in node.args[:1] if isinstance(a, ast.Constant)] + modes
                writes = called in ("write_text", "write_bytes", "save", "dump", "safe_dump") and \
                    (called not in ("dump", "safe_dump") or len(node.args) > 1) or \
                    (called == "open" and any(isinstance(m, str) and set(m) & set("wax") for m in modes))
                if writes:
                    found.append(f"{name}.{function.name}:{node.lineno} {called}")
    assert found == []


def test_module_level_imports_have_no_cycles():
    modules = _modules()

    def imported(name: str, target: str) -> set[str]:
        """What importing ``target`` from module ``name`` runs: the target and every package
        __init__ above it that is not already above ``name`` (those run before ``name`` does)."""
        parts = target.split(".")
        above = {".".join(parts[:n]) for n in range(1, len(parts))}
        own = {".".join(name.split(".")[:n]) for n in range(1, name.count(".") + 2)}
        return ({target} | above) - own

    graph = {name: sorted({m for i in _imports(path, top_level_only=True)
                           for m in imported(name, i if i in modules else i.rsplit(".", 1)[0])}
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


# Names of the benchmark machinery that once lived in production: an environment switch that made
# every trial report timings, the timing fields it added, and the simulated-model branches.
BENCHMARK_NAMES = {"FINESWEEP_RECORD_TIMING", "TIMING_ENV", "timing_requested", "record_timing", "first_step_at",
                   "on_first_step", "worker_pid", "ended_at", "reported_at", "is_simulated", "simulate",
                   "SimulatedModel", "SimulatedData"}


def _benchmark_names(tree: ast.AST) -> set[str]:
    """Identifiers, attributes, arguments, definitions, imported names and string constants of
    ``tree`` that are in BENCHMARK_NAMES (a string: a dict key or an environment variable)."""
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, ast.arg):
            names = [node.arg]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.alias):
            names = [node.name.rsplit(".", 1)[-1], node.asname or ""]
        elif isinstance(node, ast.keyword):
            names = [node.arg or ""]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module.rsplit(".", 1)[-1]]
        found.update(name for name in names if name in BENCHMARK_NAMES)
    return found


def test_no_benchmark_timing_or_simulation_in_search_or_models():
    found = {}
    for name, path in _modules().items():
        names = _benchmark_names(ast.parse(path.read_text(), filename=str(path)))
        if names:
            found[name] = sorted(names)
    assert not found, f"benchmark machinery in production modules: {found}"
    assert not (ROOT / "models" / "simulation.py").exists() and not (ROOT / "models" / "replay.py").exists()


def test_every_module_imports_first_in_a_fresh_finesweep():
    """Each module imported before any other finesweep module (as a worker, a view or a user's
    script may): a partly initialised module in a cycle fails here, whatever order the suite's
    other tests import things in. One child interpreter does them all, dropping finesweep's
    modules between imports (third-party packages stay loaded, so it is quick); this test
    process's modules are left alone."""
    import json
    import subprocess
    import sys

    script = """
import importlib, json, sys
failures = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m == "finesweep" or m.startswith("finesweep.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as error:
        failures[name] = f"{type(error).__name__}: {error}"
print(json.dumps(failures))
"""
    done = subprocess.run([sys.executable, "-c", script, json.dumps(sorted(_modules()))], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    failures = json.loads(done.stdout.strip().splitlines()[-1])
    assert not failures, failures
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


def _comment_lines(text: str) -> set[int]:
    """The lines holding a comment (a `#` inside a string is not one)."""
    return {token.start[0] for token in tokenize.generate_tokens(io.StringIO(text).readline)
            if token.type == tokenize.COMMENT}


def test_function_level_imports_say_why_they_are_deferred():
    """An import inside a function defers a heavy import (torch, Lightning, Optuna, matplotlib,
    TensorBoard...), breaks an import cycle or keeps a module off `--help`'s path; a comment on
    its line or within the 3 lines above says which. A light import belongs at the module's top."""
    unexplained = set()
    for path in _modules().values():
        text = path.read_text()
        comments = _comment_lines(text)
        for function in ast.walk(ast.parse(text, filename=str(path))):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and \
                        not comments & set(range(node.lineno - 3, node.lineno + 1)):
                    unexplained.add(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not unexplained, f"function-level imports with no comment saying why: {sorted(unexplained)}"
