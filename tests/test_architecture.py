"""The package's layering, read from the code's own imports (``ast``, nothing is imported).

A *unit* is a subpackage (``fcn_tf.data``) or a top-level module
(``fcn_tf.export``). Each unit has a layer; a unit may import units of lower
layers only. Run with ``python -m pytest tests/test_architecture.py``.
"""

import ast
import collections
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fcn_tf"

# Lowest first. A unit may import only units of a lower layer.
LAYERS = [
    {"fcn_tf.utils", "fcn_tf.signatures"},  # signatures: names only, no imports
    {"fcn_tf.outputs"},         # logits -> class ids / probabilities
    {"fcn_tf.runtimes"},        # LiteRT and ONNX files: conversion and reading
    {"fcn_tf.layers", "fcn_tf.preprocessing", "fcn_tf.precision", "fcn_tf.schedules",
     "fcn_tf.losses", "fcn_tf.metrics", "fcn_tf.visualize"},
    {"fcn_tf.backbones"},
    {"fcn_tf.models"},
    {"fcn_tf.weights", "fcn_tf.data"},
    {"fcn_tf.config"},          # the run config: holds the data section
    {"fcn_tf.runs"},            # run folders: layout, checkpoints, config, normalisation
    {"fcn_tf.inference"},       # using a trained model: loading, windows and TTA, pictures
    {"fcn_tf.evaluation", "fcn_tf.fidelity"},  # scoring: a split, an export's files
    {"fcn_tf.exporting"},       # the serving graph, LiteRT / ONNX, metadata, export folders
    {"fcn_tf.training"},
    {"fcn_tf", "fcn_tf.train", "fcn_tf.evaluate", "fcn_tf.predict", "fcn_tf.export",
     "fcn_tf.serve", "fcn_tf.bench"},
]
# Serving and inference never depend on training, whatever their layer.
NEVER = {unit: {"fcn_tf.training", "fcn_tf.train"}
         for unit in ("fcn_tf.serve", "fcn_tf.predict", "fcn_tf.evaluate", "fcn_tf.export",
                      "fcn_tf.exporting", "fcn_tf.inference", "fcn_tf.evaluation", "fcn_tf.runs",
                      "fcn_tf.runtimes", "fcn_tf.fidelity")}
# Imports of fcn_tf modules inside functions: only where the imported module
# pulls in a heavy optional dependency (or, for the CLIs, one that must not be
# loaded before arguments are parsed). (importing module, imported module).
FUNCTION_LEVEL_ALLOWED = {
    ("fcn_tf.bench.baseline", "fcn_tf.bench.torch_models"),  # PyTorch, the bench extra
    ("fcn_tf.serve.__main__", "fcn_tf.serve.app"),           # Starlette/uvicorn, only to serve
    ("fcn_tf.serve.__main__", "fcn_tf.serve.model"),         # TensorFlow, after argument checks
    ("fcn_tf.serve.load", "fcn_tf.serve.model"),             # the load tool runs without TF
    # Inside fcn_tf.weights (kept by the weights code; not heavy optional):
    ("fcn_tf.weights.keras_checkpoint", "fcn_tf.layers"),
}


def _module_name(path, root=ROOT):
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _unit(module):
    parts = module.split(".")
    return ".".join(parts[:2])


def _layer_of(unit):
    for index, units in enumerate(LAYERS):
        if unit in units:
            return index
    raise AssertionError(f"{unit} has no layer in tests/test_architecture.py LAYERS; add it.")


def _imports(package=PACKAGE):
    """``[(module, imported module, line, inside a function)]`` of every fcn_tf import."""
    modules = {_module_name(p, package.parent): p for p in package.rglob("*.py")}
    found = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_package = path.name == "__init__.py"
        inside = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inside.update(id(n) for n in ast.walk(node) if n is not node)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".")[: len(module.split(".")) - node.level + is_package]
                    base_name = ".".join(base + ([node.module] if node.module else []))
                else:
                    base_name = node.module or ""
                targets = [base_name] + [f"{base_name}.{a.name}" for a in node.names
                                         if f"{base_name}.{a.name}" in modules]
                if len(targets) > 1:
                    targets = targets[1:]  # "from pkg import submodule": the submodule
            else:
                continue
            for target in targets:
                if target == "fcn_tf" or target.startswith("fcn_tf."):
                    found.append((module, target, node.lineno, id(node) in inside))
    return found


IMPORTS = _imports()


def test_every_unit_has_a_layer():
    units = {_unit(m) for m, _, _, _ in IMPORTS} | {_unit(t) for _, t, _, _ in IMPORTS}
    for unit in units:
        _layer_of(unit)


def test_no_unit_imports_a_unit_of_its_own_or_a_higher_layer():
    wrong = sorted(f"{module} imports {target}" for module, target in _wrong_way(IMPORTS))
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


@pytest.mark.parametrize("unit", sorted(NEVER))
def test_inference_serving_and_export_never_import_training(unit):
    bad = [f"{m}:{line} imports {t}" for m, t, line, _ in IMPORTS
           if _unit(m) == unit and _unit(t) in NEVER[unit]]
    assert not bad, bad


def test_no_package_cycles():
    graph = collections.defaultdict(set)
    for module, target, _, _ in IMPORTS:
        if _unit(module) != _unit(target):
            graph[_unit(module)].add(_unit(target))
    state, cycle = {}, []

    def visit(unit, path):
        state[unit] = "open"
        for other in sorted(graph[unit]):
            if state.get(other) == "open":
                cycle.append(path[path.index(other):] + [other])
            elif other not in state:
                visit(other, path + [other])
        state[unit] = "done"

    for unit in sorted(graph):
        if unit not in state:
            visit(unit, [unit])
    assert not cycle, "package cycles: " + "; ".join(" -> ".join(c) for c in cycle)


def test_imports_of_fcn_tf_modules_are_at_the_top_except_heavy_optional_ones():
    hidden = sorted(f"{module}:{line} imports {target}"
                    for module, target, line, in_function in IMPORTS
                    if in_function and (module, target) not in FUNCTION_LEVEL_ALLOWED)
    assert not hidden, "imports inside functions:\n" + "\n".join(hidden)
    present = {(module, target) for module, target, _, in_function in IMPORTS if in_function}
    stale = FUNCTION_LEVEL_ALLOWED - present
    assert not stale, f"allow-list entries no longer needed: {sorted(stale)}"


def _wrong_way(imports):
    return [(m, t) for m, t, _, _ in imports
            if _unit(m) != _unit(t) and _layer_of(_unit(t)) >= _layer_of(_unit(m))]


# A package's __init__ only re-exports: imports, __all__, and for a lazy face
# (fcn_tf.utils.lazy) its {name: module} table and PEP 562 functions. What
# else a face may hold, and why:
FACE_LOGIC_ALLOWED = {
    # python -m fcn_tf.<tool>: TensorFlow's C++ start-up notices dropped (fcn_tf.utils.logs),
    # set up before any module of the package imports TensorFlow.
    "fcn_tf": {"_quiet_tensorflow_for_tools(...)"},
}
# Faces that still hold logic, with the work that moves it out.
FACES_NOT_YET_PURE = {
    "fcn_tf.backbones": "the backbone table; issue 28 item 3 (one table per fact) moves it",
}


def _face_logic(path):
    """Top-level statements of an ``__init__.py`` that are not re-exports, as short labels."""
    found = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, ast.Assign):
            names = [t.id for target in node.targets
                     for t in (target.elts if isinstance(target, ast.Tuple) else [target])
                     if isinstance(t, ast.Name)]
            if names and all(n.startswith("__") and n.endswith("__") or n == "_EXPORTS"
                             for n in names):
                continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            found.append(f"{ast.unparse(node.value.func)}(...)")
        else:
            found.append(f"{type(node).__name__} {getattr(node, 'name', '')}".strip()
                         + f" (line {node.lineno})")
    return found


def test_package_faces_only_re_export():
    faces = {_module_name(p): p for p in PACKAGE.rglob("__init__.py")}
    logic = {name: _face_logic(path) for name, path in faces.items()}
    wrong = {name: sorted(set(found) - FACE_LOGIC_ALLOWED.get(name, set()))
             for name, found in logic.items() if name not in FACES_NOT_YET_PURE}
    wrong = {name: found for name, found in wrong.items() if found}
    assert not wrong, f"package faces with logic (move it into a module): {wrong}"
    pure = sorted(name for name in FACES_NOT_YET_PURE if not logic.get(name))
    assert not pure, f"faces now pure: remove them from FACES_NOT_YET_PURE: {pure}"


def test_no_module_imports_its_own_package_face():
    """``fcn_tf.weights.assign`` takes ``WeightsError`` from its module, not from ``fcn_tf.weights``.

    A module that imports a name from its own package's ``__init__`` depends on
    the order that ``__init__`` imports in, and hides where the name lives.
    """
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        package = module.rpartition(".")[0]
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == package:
                names = [a.name for a in node.names if f"{package}.{a.name}" not in modules]
                if names:
                    wrong.append(f"{module}:{node.lineno} imports {names} from {package}")
    assert not wrong, "\n".join(wrong)


def test_the_checks_see_a_wrong_way_and_a_hidden_import(tmp_path):
    package = tmp_path / "fcn_tf"
    (package / "data").mkdir(parents=True)
    (package / "training").mkdir()
    (package / "utils").mkdir()
    for init in (package, package / "data", package / "training", package / "utils"):
        (init / "__init__.py").write_text("")
    (package / "training" / "trainer.py").write_text("from ..data import pipeline\n")
    (package / "data" / "pipeline.py").write_text(
        "from fcn_tf.training import trainer\n\n\ndef f():\n    from fcn_tf import utils\n")
    imports = _imports(package)
    assert _wrong_way(imports) == [("fcn_tf.data.pipeline", "fcn_tf.training.trainer")]
    assert ("fcn_tf.training.trainer", "fcn_tf.data.pipeline", 1, False) in imports
    assert ("fcn_tf.data.pipeline", "fcn_tf.utils", 5, True) in imports
