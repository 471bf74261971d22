"""The package's imports run one way: down the layers README's Layout draws, and never in a circle.

No module imports, even lazily, a module that imports it back: imports inside
functions count (deferring one hides a circle, it does not remove it); imports
under ``typing.TYPE_CHECKING`` never run and do not. Between the package's
rooms every import counts, type-only ones too, since a reader follows them
all: each room imports only rooms below it.
"""

import ast
import pathlib

import aeloops

PACKAGE = pathlib.Path(aeloops.__file__).parent


def module_name(path: pathlib.Path) -> str:
    parts = ["aeloops", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


# The rooms from the top down: the sweep (whose trials are CLI runs), the entry points (evaluate loads a run's
# model as export does), then each
# subpackage, then the one module every room may use. Rooms of one layer do not import each other.
LAYERS = (
    ("sweep",), ("sweeps",), ("train", "evaluate", "sample", "prior"), ("export",), ("runs",),
    ("evaluation", "tensorboard"),
    ("training",), ("models",), ("objectives", "data"), ("files", "memory"),
)  # fmt: skip


def imported(name: str, type_only: bool = False) -> set[str]:
    """The aeloops modules ``name`` imports: when it runs, or also under TYPE_CHECKING with ``type_only``."""
    found = set()

    def visit(node: ast.AST) -> None:
        if not type_only and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Call) and string_import(node):
            found.add(node.args[0].value)  # importlib.import_module("aeloops.x") imports as surely as "import".
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(MODULES[name].read_text(encoding="utf-8")))
    return {module for module in found if module in MODULES and module != name}


def string_import(call: ast.Call) -> bool:
    """Whether ``call`` imports an aeloops module named by a string: ``importlib.import_module("aeloops.x")``."""
    function = call.func
    name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
    return (
        name in ("import_module", "__import__")
        and bool(call.args)
        and isinstance(call.args[0], ast.Constant)
        and str(call.args[0].value).startswith("aeloops")
    )


def test_a_string_import_counts_as_an_import():
    planted = 'import importlib\ntrainer = lambda: importlib.import_module("aeloops.training.adversarial").Trainer\n'
    (call,) = [node for node in ast.walk(ast.parse(planted)) if isinstance(node, ast.Call) and string_import(node)]
    assert call.args[0].value == "aeloops.training.adversarial"
    assert not string_import(ast.parse('importlib.import_module("mymodels")').body[0].value)  # A user's module.


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Returns the graph's strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for neighbour in sorted(graph[node]):
            if neighbour not in index:
                connect(neighbour)
                low[node] = min(low[node], low[neighbour])
            elif neighbour in on_stack:
                low[node] = min(low[node], index[neighbour])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_cycle_finder_finds_a_circle_and_passes_a_tree():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_no_module_of_the_package_imports_one_that_imports_it_back():
    graph = {name: imported(name) for name in MODULES}
    assert len(graph) > 50 and "aeloops.runs.config_checks" in graph["aeloops.runs.config"]
    assert cycles(graph) == []


def room(module: str) -> str:
    """The room of the house ``module`` lives in: its subpackage, or its own name at the top level."""
    return module.split(".")[1] if "." in module else ""


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Returns every import from one room into a room above it (or into a room ``LAYERS`` does not place)."""
    level = {name: depth for depth, names in enumerate(LAYERS) for name in names}
    return sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if room(module) and room(target) and room(module) != room(target)
        and level.get(room(target), -1) <= level.get(room(module), -1)
    )  # fmt: skip


def test_the_layer_check_finds_an_import_going_up():
    graph = {"aeloops.models.base": {"aeloops.runs.config"}, "aeloops.runs.config": {"aeloops.data.locate"}}
    assert upward_imports(graph) == ["aeloops.models.base -> aeloops.runs.config"]
    assert upward_imports({"aeloops.data.x": {"aeloops.new_room.y"}}) == ["aeloops.data.x -> aeloops.new_room.y"]


def test_every_room_imports_only_rooms_below_it():
    placed = {room(name) for name in MODULES} - {""}
    assert placed <= {name for names in LAYERS for name in names}, "a new room: place it in LAYERS and README"
    graph = {name: imported(name, type_only=True) for name in MODULES}
    assert graph["aeloops.runs.assemble"] >= {"aeloops.training.trainer", "aeloops.tensorboard.summaries"}
    assert upward_imports(graph) == []
