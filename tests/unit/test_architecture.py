"""The rules the source tree must keep (README "How the code is laid out"): no import cycle among project modules,
function-level imports included; `tasks/` never imports `flows/`; no module over ~400 lines; Prefect only where
tasks are defined and cached; heavy libraries imported inside the functions that need them, so that
`fuseflow --help`, `list` and `validate` stay fast."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tasks", "flows")
MAX_LINES = 400
HEAVY = ("torch", "transformers", "mlflow", "datasets", "sklearn", "pandas", "matplotlib", "prefect", "accelerate", "optuna")
#: where `import prefect` may stand: the task wrappers, the cache policy and its locks, and the orchestration side
PREFECT_ALLOWED = ("tasks/steps/", "tasks/cache/", "flows/")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_files() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside `if TYPE_CHECKING:` (never runs)."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(name: str, path: Path, modules: set[str]) -> list[tuple[str, int, bool]]:
    """(imported project module, line, at module level) for every import that runs, at any nesting depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or _type_checking_only(node, parents):
            continue
        top = parents.get(node) is tree
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for target in targets:
            while target and target not in modules:  # `import a.b.attr` -> the module a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.append((target, node.lineno, top))
    return found


def import_graph() -> dict[str, set[str]]:
    files = project_files()
    modules = set(files)
    return {name: {t for t, _, _ in imports_of(name, path, modules)} for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each a cycle to report."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_finds_a_cycle_and_a_function_level_import(tmp_path):
    """The cycle finder itself: a -> b at module level, b -> a inside a function, is a cycle."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert cycles(graph) == [["a", "b"]]
    source = tmp_path / "tasks" / "b.py"
    source.parent.mkdir()
    source.write_text("def f():\n    from tasks.a import x\n    return x\n", encoding="utf-8")
    assert imports_of("tasks.b", source, {"tasks.a", "tasks.b"}) == [("tasks.a", 2, False)]


def test_no_import_cycles_among_project_modules():
    found = cycles(import_graph())
    assert not found, "import cycles (function-level imports count):\n" + "\n".join(" <-> ".join(c) for c in found)


def test_tasks_never_imports_flows():
    files = project_files()
    modules = set(files)
    bad = [f"{files[name].relative_to(ROOT)}:{line} imports {target}"
           for name, path in files.items() if name.startswith("tasks")
           for target, line, _ in imports_of(name, path, modules) if target.startswith("flows")]
    assert not bad, "\n".join(bad)


def test_no_module_is_over_400_lines():
    long = [f"{path.relative_to(ROOT)}: {n} lines" for path in project_files().values()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not long, "split these modules:\n" + "\n".join(long)


def test_heavy_libraries_are_imported_where_used_and_prefect_only_where_tasks_live():
    offenders = []
    for name, path in project_files().items():
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level only
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            for root in roots:
                if root == "prefect" and rel.startswith(PREFECT_ALLOWED):
                    continue
                if root in HEAVY and rel != "tasks/fusion/pyfunc.py":  # its loader *string* imports mlflow
                    offenders.append(f"{rel}:{node.lineno} imports {root} at module level")
    assert not offenders, "\n".join(offenders)


def _imported_by(code: str) -> list[str]:
    probe = (f"import sys\n{code}\n"
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    return eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - our own printed list


def test_cli_does_not_import_heavy_libraries():
    assert _imported_by("import flows.cli") == []


@pytest.mark.parametrize("argv,allowed", [(["--help"], []), (["validate"], ["pandas"]), (["list"], ["pandas"])])
def test_help_list_and_validate_import_no_heavy_library(argv, allowed):
    """`validate` loads every registry (built-ins and plugins) and checks every pipeline of the example file,
    without torch, MLflow, Prefect or transformers (pandas reads the header of the example's CSV files)."""
    code = ("from flows.cli import main\n"
            "try:\n"
            f"    main({argv!r})\n"
            "except SystemExit:\n"
            "    pass")
    assert [m for m in _imported_by(code) if m not in allowed] == []
