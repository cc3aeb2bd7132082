"""The package's shape: layers that import one way only, no Streamlit in the library, an installable command."""
import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lower layers never import higher ones (lazy imports inside functions included).
LAYERS = {
    "ogdash.core": 0,
    "ogdash.data": 1, "ogdash.models": 1, "ogdash.examples": 1,
    "ogdash.engine": 2,
    "ogdash.influence": 3, "ogdash.detect": 4, "ogdash.explain": 4,
    "ogdash.pipeline": 5, "ogdash.retrain": 5, "ogdash.distributed": 5, "ogdash.review": 5, "ogdash.exports": 5,
    "ogdash.labelstudio": 5,
    "ogdash.experiments": 6,
    "ogdash.cli": 7, "ogdash.__main__": 7, "ogdash": 7,
}


def _layer(module: str) -> int:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in LAYERS:
            return LAYERS[".".join(parts[:i])]
    raise KeyError(module)


def _modules():
    for path in sorted((ROOT / "ogdash").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        yield name, ast.parse(path.read_text())


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ogdash"):
            yield node.module, node.lineno
        elif isinstance(node, ast.Import):
            yield from ((a.name, node.lineno) for a in node.names if a.name.startswith("ogdash"))


def test_layers_import_one_way():
    wrong = []
    for name, tree in _modules():
        if name == "ogdash":  # the public API re-exports from every layer
            continue
        for target, line in _imports(tree):
            if target != "ogdash" and _layer(target) > _layer(name):
                wrong.append(f"{name}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_library_never_imports_streamlit():
    for name, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(n.split(".")[0] in ("streamlit", "dashboard") for n in names), name
    out = subprocess.run([sys.executable, "-c", "import sys, ogdash, ogdash.cli; print('streamlit' in sys.modules)"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr


def test_every_module_says_what_it_is_for():
    assert [name for name, tree in _modules() if not ast.get_docstring(tree) and name != "ogdash.__main__"] == []


def test_the_console_script_runs_the_cli():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["build-system"]["build-backend"]
    module, func = project["project"]["scripts"]["ogdash"].split(":")
    main = getattr(__import__(module, fromlist=[func]), func)
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert {"llm", "text", "test", "dashboard"} <= set(project["project"]["optional-dependencies"])


def test_pages_and_dashboard_call_the_scan_not_the_stages():
    """Pages (views/) and their helpers (dashboard/) reach the detectors and gradients only through the one scan
    (ogdash.pipeline.Scan), so the CLI and the pages cannot chain the stages differently."""
    wrong = []
    for path in sorted([*(ROOT / "views").rglob("*.py"), *(ROOT / "dashboard").rglob("*.py"), ROOT / "app.py"]):
        for target, line in _imports(ast.parse(path.read_text())):
            if target.startswith(("ogdash.detect", "ogdash.engine", "ogdash.influence", "ogdash.explain")):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def _module_graph() -> dict[str, set[str]]:
    """Each ogdash module's ogdash imports (lazy ones included), as module names."""
    names = {name for name, _ in _modules()}
    graph = {}
    for name, tree in _modules():
        out = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ogdash"):
                for a in node.names:  # "from ogdash.data import spec" names a module too
                    full = f"{node.module}.{a.name}"
                    out.add(full if full in names else node.module)
            elif isinstance(node, ast.Import):
                out |= {a.name for a in node.names if a.name.startswith("ogdash")}
        graph[name] = {t for t in out if t in names and t != name}
    return graph


def test_no_import_circles_inside_a_folder():
    """Within one folder (layer) imports still run one way: no module reaches itself through its neighbours."""
    graph = _module_graph()
    folder = lambda m: m.rsplit(".", 1)[0]  # noqa: E731
    circles = []
    for start in graph:
        if start.count(".") < 2:  # the package's own __init__ files re-export their folder
            continue
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if folder(nxt) != folder(start) or nxt.endswith("__init__"):
                    continue
                if nxt == start:
                    circles.append(" -> ".join(path + [start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    assert not circles, "\n".join(sorted(set(circles))[:10])
