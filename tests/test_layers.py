"""The package's shape: one-way layers (imports only run down), no import cycle, short modules, and one home per
concept (no function or class name defined twice). Static (ast, via tests/imports.py): nothing is imported."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from imports import ENTRY_POINTS, LAYERS, PACKAGE, ROOT, describe, find_cycles, graph, layer_of, module_files

MAX_LINES = 400
# Names a module family defines once per module by contract, and where: name -> path prefix of the modules allowed
# to define it. Anything else defined in two modules is one concept with two homes (merge them) or two concepts
# sharing one name (rename one).
CONTRACT_NAMES = {
    "main": f"{PACKAGE}/",                                     # entry point of a module run with `python -m`
    "convert": f"{PACKAGE}/artifacts/converters/",             # each converter: convert(hf_dir, out, ...) -> row
    "InprocessSession": f"{PACKAGE}/runtimes/",                # each runtime's session classes, one per transport
    "ServerSession": f"{PACKAGE}/runtimes/",
    "section": f"{PACKAGE}/report/",                           # each report module renders one section
}


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_every_module_lives_in_a_layer_folder():
    bad = []
    for name, path in module_files().items():
        parts = name.split(".")
        if name == PACKAGE:
            continue
        if len(parts) == 2 and path.name != "__init__.py":
            if parts[1] not in ENTRY_POINTS:
                bad.append(f"  {rel(path)}: a module directly in {PACKAGE}/; move it into the layer folder it "
                           f"belongs to ({', '.join(LAYERS)}), or declare it in ENTRY_POINTS (tests/imports.py)")
        elif parts[1] not in LAYERS:
            bad.append(f"  {rel(path)}: {PACKAGE}/{parts[1]}/ is not a layer; move it into one of "
                       f"{', '.join(LAYERS)} (or add the layer to LAYERS in tests/imports.py, in its place)")
    assert not bad, "modules outside the layer folders:\n" + "\n".join(bad)


def test_imports_only_run_down_the_layers():
    up = []
    for name, imps in graph().items():
        here = layer_of(name)
        if here not in LAYERS:            # localbench/__init__.py (imported by all), or placed wrongly (test above)
            continue
        for imp in imps:
            there = layer_of(imp.target)
            if there in LAYERS and LAYERS.index(there) > LAYERS.index(here):
                up.append(f"  {describe(imp)}: layer {here!r} imports from the higher layer {there!r}; move what it "
                          f"needs down to {here!r} or below, or move this code up to {there!r}")
    entry_points = {f"{PACKAGE}.{name}" for name in ENTRY_POINTS}
    up += [f"  {describe(imp)}: {imp.target} is an entry point (ENTRY_POINTS, above every layer); move what "
           f"{imp.source} needs from it down into a layer" for imps in graph().values() for imp in imps
           if imp.target in entry_points]
    assert not up, (f"imports that run up a layer (order, bottom to top: {' < '.join(LAYERS)}):\n"
                    + "\n".join(up))


def test_no_import_cycles():
    cycles = find_cycles(graph())
    text = []
    for cycle, knot in cycles:
        text.append("  cycle " + " -> ".join([cycle[0].source] + [i.target for i in cycle]) + ":\n"
                    + "\n".join(f"    {describe(i)}" for i in cycle)
                    + (f"\n    (one of the cycles among {len(knot)} modules that import each other: "
                       f"{', '.join(sorted(knot))})" if len(knot) > len(cycle) else ""))
    assert not cycles, ("import cycles between localbench modules (static, function-level imports included); "
                        "break each by moving the shared code down into a module both can import:\n"
                        + "\n".join(text))


def test_modules_are_at_most_400_lines():
    long = []
    for path in module_files().values():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if f"over {MAX_LINES} lines" not in " ".join(doc.lower().split()):
            long.append(f"  {rel(path)}: {n} lines; split it (one concept per module), or say in its module "
                        f"docstring why it is over {MAX_LINES} lines (with those words)")
    assert not long, f"modules over {MAX_LINES} lines:\n" + "\n".join(long)


def top_level_definitions() -> dict[str, list[tuple[str, int]]]:
    """Name -> [(file, line)] of every function and class defined at a module's top level (under a top-level
    if/try too)."""
    found: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for path in module_files().values():
        body = list(ast.parse(path.read_text(encoding="utf-8")).body)
        while body:
            node = body.pop(0)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found[node.name].append((rel(path), node.lineno))
            elif isinstance(node, (ast.If, ast.Try)):
                body += node.body + node.orelse + getattr(node, "finalbody", []) + \
                    [s for h in getattr(node, "handlers", []) for s in h.body]
    return found


def test_one_home_per_concept():
    dups = {name: sorted(set(where)) for name, where in top_level_definitions().items()
            if len({f for f, _ in where}) > 1}
    print(f"\nnames defined at the top level of two or more localbench modules ({len(dups)}):")
    for name, where in sorted(dups.items()):
        print(f"  {name}: " + ", ".join(f"{f}:{line}" for f, line in where))
    bad = []
    for name, where in sorted(dups.items()):
        prefix = CONTRACT_NAMES.get(name)
        outside = [f"{f}:{line}" for f, line in where if prefix is None or not f.startswith(prefix)]
        if prefix is None or outside:
            bad.append(f"  {name!r} is defined in " + ", ".join(f"{f}:{line}" for f, line in where)
                       + ": if it is one concept, keep one home and import it from there; if these are different "
                       "things, rename one so each name means one thing")
    assert not bad, "one home per concept: a top-level name is defined in more than one module:\n" + "\n".join(bad)
