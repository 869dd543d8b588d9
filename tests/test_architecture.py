"""The shape of the code: no import circles in src/, one registry per kind that every list derives from."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from src.data import DATASETS
from src.frameworks import FRAMEWORKS
from src.paths import CONF_DIR, PROJECT_ROOT
from src.tasks import TASKS

SRC = PROJECT_ROOT / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The src modules `path` imports anywhere (functions included), except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and isinstance(branch.test, ast.Name) and branch.test.id == "TYPE_CHECKING"
        for statement in branch.body
        for node in ast.walk(statement)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & known
            found |= submodules
            if len(submodules) < len(node.names):  # names defined in the module itself
                found |= {node.module} & known
    return found


def import_graph(*roots: Path) -> dict[str, set[str]]:
    """Module → the modules under `roots` (default: src/) it imports."""
    paths = {module_name(path): path for root in (roots or (SRC,)) for path in root.rglob("*.py")}
    known = set(paths)
    return {name: imported_modules(path, known) - {name} for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path of module names, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_of_src_has_no_circle() -> None:
    graph = import_graph()
    assert len(graph) > 30 and "src.config" in graph["src.settings"]  # the graph is really read
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_code_outside_the_tasks_branches_on_a_task_name() -> None:
    """Task names appear only in src/tasks/ and in the datasets that declare their task."""
    pattern = re.compile(r"""["']({})["']""".format("|".join(TASKS)))
    offenders = [
        f"{path.relative_to(PROJECT_ROOT)}:{number}"
        for path in SRC.rglob("*.py")
        if not path.is_relative_to(SRC / "tasks")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line) and not (path.is_relative_to(SRC / "data") and "task" in line.lower())
    ]
    assert not offenders


def test_every_registered_kind_has_its_config_file_and_nothing_else() -> None:
    assert {path.stem for path in (CONF_DIR / "framework").glob("*.yaml")} == set(FRAMEWORKS)
    assert {path.stem for path in (CONF_DIR / "dataset").glob("*.yaml")} == set(DATASETS)
    for name in DATASETS:
        assert yaml.safe_load((CONF_DIR / "dataset" / f"{name}.yaml").read_text())["name"] == name


def group_files() -> list[tuple[Path, type]]:
    from src.config import FrameworkConfig, ModelConfig, TrackingConfig, TrainerConfig

    files = [
        (CONF_DIR / "trainer" / "default.yaml", TrainerConfig),
        (CONF_DIR / "tracking" / "default.yaml", TrackingConfig),
    ]
    files += [(path, ModelConfig) for path in (CONF_DIR / "model").glob("*.yaml")]
    files += [(path, FrameworkConfig) for path in (CONF_DIR / "framework").glob("*.yaml")]
    return files + [(CONF_DIR / "dataset" / f"{name}.yaml", module.Params) for name, module in DATASETS.items()]


def test_conf_shows_every_default_value_the_schema_has() -> None:
    """conf/ is where a user reads the defaults: every schema field is in its YAML file, with the schema's
    default, except the keys that pick the option (the cell, the framework and its device, and the rnn
    option's activation: one schema serves every cell, and only rnn takes another activation)."""
    from dataclasses import fields
    from enum import Enum

    for path, schema in group_files():
        choosing = {"cell", "name", "device"} | ({"activation"} if path == CONF_DIR / "model" / "rnn.yaml" else set())
        shown = {key: value for key, value in yaml.safe_load(path.read_text()).items() if key != "defaults"}
        defaults = {item.name: getattr(schema(), item.name) for item in fields(schema)}
        defaults = {key: value.value if isinstance(value, Enum) else value for key, value in defaults.items()}
        assert list(shown) == list(defaults), path
        assert {k: v for k, v in shown.items() if k not in choosing} == {
            k: v for k, v in defaults.items() if k not in choosing
        }, path


def test_every_package_the_code_imports_is_a_declared_dependency() -> None:
    """A package that arrives only with another one (psutil with dvc, say) can vanish in the next release
    of that one, or be missing where the project is installed another way: what src/ and the plugins,
    benchmarks and pipelines import is named in pyproject.toml itself."""
    import sys
    from importlib.metadata import packages_distributions, requires

    def canonical(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    requirements = [line for line in requires("rnnlab") or [] if "extra ==" not in line]  # as installed from pyproject
    declared = {canonical(re.split(r"[\[<>=!~ ;(]", line, maxsplit=1)[0]) for line in requirements}
    ours = {"src", "hydra_plugins", "benchmarks", "pipelines", "tests"}
    distributions = packages_distributions()
    undeclared = set()
    for folder in ("src", "hydra_plugins", "benchmarks", "pipelines"):
        for path in (PROJECT_ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if name.startswith("hydra_plugins.") and not name.startswith("hydra_plugins.rnnlab"):
                        # A namespace package: hydra_plugins.hydra_joblib_launcher is hydra-joblib-launcher's.
                        provided_by = {canonical(name.split(".")[1])}
                    elif top in ours or top in sys.stdlib_module_names:
                        continue
                    else:
                        provided_by = {canonical(dist) for dist in distributions.get(top, [top])}
                    if not provided_by & declared:
                        undeclared.add(f"{name} ({path.relative_to(PROJECT_ROOT)})")
    assert not undeclared
