"""Static import graph of localbench (ast only: nothing is imported), shared by test_layers.py and test_dvc_deps.py.

Every `import`/`from ... import` counts, at any level (module, function, `if TYPE_CHECKING:`, `try:`), relative
ones resolved. `from pkg import name` is an import of the submodule `pkg.name` when that module exists, else of
`pkg`. `importlib.import_module(...)`/`__import__(...)` counts too: a string literal imports that module, an
f-string with a literal head such as f"localbench.runtimes.{name}" imports every module under that package, and any
other dynamic import in a package's __init__.py imports every module of that package (the rule DVC deps follow).
"""
from __future__ import annotations

import ast
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "localbench"
# One-way layers, bottom to top: a module may import its own layer or a lower one (localbench/__init__.py: any).
LAYERS = ("core", "config", "builds", "transport", "runtimes", "artifacts", "workload", "measure", "quality",
          "analysis", "report")
# Entry points directly in localbench/, above every layer: run with `python -m`, they may import any layer and no
# module imports them.
ENTRY_POINTS = ("ab",)


@dataclass(frozen=True)
class Import:
    source: str          # importing module (dotted)
    target: str          # imported localbench module (dotted)
    line: int
    dynamic: bool = False


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a package is named by its __init__.py)."""
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def parents(name: str) -> list[str]:
    """'a.b.c' -> ['a', 'a.b']: the packages Python imports first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _base(source: str, source_is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    pkg = source.split(".") if source_is_package else source.split(".")[:-1]
    pkg = pkg[:len(pkg) - (node.level - 1)] if node.level > 1 else pkg
    return ".".join(pkg + ([node.module] if node.module else []))


def _dynamic_targets(call: ast.Call, source: str, source_is_package: bool, index) -> list[str]:
    if not call.args:
        return []
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value] if arg.value in index else []
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        head = str(arg.values[0].value)
        prefix = head.rsplit(".", 1)[0] if "." in head else ""
        if prefix:
            return [m for m in index if m.startswith(prefix + ".")]
    if source_is_package:                  # opaque dynamic import in a package: every module of the package
        return [m for m in index if m.startswith(source + ".")]
    return []


def _is_dynamic_import(call: ast.Call) -> bool:
    f = call.func
    if isinstance(f, ast.Attribute) and f.attr == "import_module":
        return isinstance(f.value, ast.Name) and f.value.id == "importlib"
    return isinstance(f, ast.Name) and f.id in ("__import__", "import_module")


def imports_in(path: Path, source: str, index, source_is_package: bool = False) -> list[Import]:
    """The imports of one file that name a module of `index` (a set/dict of dotted names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []

    def add(target: str, line: int, dynamic: bool = False):
        if target in index and target != source:
            found.append(Import(source, target, line, dynamic))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                for i in range(len(parts), 0, -1):          # the deepest module of the dotted name that exists
                    if ".".join(parts[:i]) in index:
                        add(".".join(parts[:i]), node.lineno)
                        break
        elif isinstance(node, ast.ImportFrom):
            base = _base(source, source_is_package, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in index else base, node.lineno)
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            for target in _dynamic_targets(node, source, source_is_package, index):
                add(target, node.lineno, dynamic=True)
    return found


@cache
def graph(root: Path = ROOT) -> dict[str, tuple[Import, ...]]:
    """Module -> its imports of other localbench modules (static and dynamic)."""
    files = module_files(root)
    return {name: tuple(imports_in(path, name, files, is_package(path))) for name, path in files.items()}


def closure_modules(start: list[str], root: Path = ROOT, resolved: dict[str, list[str]] | None = None) -> set[str]:
    """Every localbench module that importing `start` runs: their imports, the packages on the way, transitively.
    `resolved`: for a module whose dynamic imports the caller knows (e.g. the runtime registry importing only the
    stage's runtime), the modules they import instead of every candidate."""
    g, resolved = graph(root), resolved or {}
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name in seen or name not in g:
            continue
        seen.add(name)
        todo.extend(parents(name))
        todo.extend(imp.target for imp in g[name] if not (imp.dynamic and name in resolved))
        todo.extend(resolved.get(name, []))
    return seen


def script_of(cmd: str, root: Path = ROOT) -> tuple[Path, str | None]:
    """The Python file a stage's cmd runs (`python path.py ...` or `python -m pkg.mod ...`), and the module name."""
    words = shlex.split(cmd)
    for i, word in enumerate(words):
        if Path(word).name.startswith("python"):
            rest = [w for w in words[i + 1:] if w not in ("-u", "-O", "-B")]
            if rest and rest[0] == "-m":
                name = rest[1]
                files = module_files(root)
                if name not in files:
                    raise ValueError(f"cmd {cmd!r} runs module {name!r}, which is not a localbench module")
                return files[name], name
            if rest and rest[0].endswith(".py"):
                return root / rest[0], None
    raise ValueError(f"cannot tell which Python file cmd {cmd!r} runs")


def runtime_of(cmd: str) -> str | None:
    """The runtime a measure stage's cmd measures (`python stages/measure.py <runtime>`), else None."""
    words = shlex.split(cmd)
    return words[words.index("stages/measure.py") + 1] if "stages/measure.py" in words[:-1] else None


def script_closure(cmd: str, root: Path = ROOT) -> set[Path]:
    """Files (relative to root) a stage's cmd runs: its script and every localbench module it imports, at any depth.
    A measure stage imports one runtime module through the registry: `localbench.config.registry` names it."""
    resolved = None
    runtime = runtime_of(cmd)
    if runtime is not None:
        from localbench.config.registry import RUNTIMES
        resolved = {f"{PACKAGE}.runtimes": [f"{PACKAGE}.runtimes.{RUNTIMES[runtime].module}"]}
    script, name = script_of(cmd, root)
    files = module_files(root)
    if name is not None:
        start = [name]
    else:
        start = sorted({imp.target for imp in imports_in(script, "__main__", files)})
    mods = closure_modules(start, root, resolved)
    return {script.relative_to(root)} | {files[m].relative_to(root) for m in mods}


def layer_of(name: str) -> str | None:
    """'localbench.measure.drift' -> 'measure' (the folder under localbench/, a layer or not); None for
    localbench/__init__.py and modules directly in localbench/."""
    parts = name.split(".")
    if len(parts) > 2 or (len(parts) == 2 and (ROOT / PACKAGE / parts[1]).is_dir()):
        return parts[1]
    return None


def find_cycles(g: dict[str, tuple[Import, ...]]) -> list[tuple[list[Import], set[str]]]:
    """One cycle (its chain of imports) per strongly connected component of the graph that has one, with the
    component (every module on some cycle with it)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[set[str]] = []
    counter = [0]

    def strong(v: str):                     # Tarjan; the graph is small enough for recursion
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for imp in g[v]:
            w = imp.target
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1 or any(i.target == v for i in g[v]):
                comps.append(comp)

    for v in sorted(g):
        if v not in index:
            strong(v)

    cycles = []
    for comp in comps:
        start = min(comp)
        path: list[Import] = []
        prev = {start: None}                # BFS inside the component back to start
        queue = [start]
        end = None
        while queue and end is None:
            v = queue.pop(0)
            for imp in g[v]:
                if imp.target == start:
                    end = imp
                    break
                if imp.target in comp and imp.target not in prev:
                    prev[imp.target] = imp
                    queue.append(imp.target)
        node = end
        while node is not None:
            path.append(node)
            node = prev[node.source]
        cycles.append((list(reversed(path)), comp))
    return cycles


def describe(imp: Import, root: Path = ROOT) -> str:
    files = module_files(root)
    how = "imports (dynamically)" if imp.dynamic else "imports"
    return f"{files[imp.source].relative_to(root)}:{imp.line} {how} {imp.target}"
