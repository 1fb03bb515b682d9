"""The import graph of the package: no circle, and no import from a lower layer to a higher one.

Layers, lowest first: typing and input checks → the closed-form rules → distances and
references → Jacobians → losses → solvers / training / persistence → estimators, nn,
plot → the package's __init__. A module may import from its own layer or below. Run as
a script to print the graph (module → the metricjax modules it imports).
"""

import ast
import pathlib

PKG = pathlib.Path(__file__).resolve().parents[1] / "metricjax"

LAYERS = [
    ("metricjax._typing", "metricjax._checks", "metricjax._host", "metricjax.exceptions"),
    ("metricjax._rules",),
    ("metricjax._distances", "metricjax.reference"),
    ("metricjax.jacobians",),
    ("metricjax.losses",),
    ("metricjax.solvers", "metricjax._linesearch", "metricjax._train", "metricjax._persist",
     "metricjax.constraints"),
    ("metricjax.distributed",),
    ("metricjax.estimators", "metricjax.nn", "metricjax.plot"),
]


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    if module == "metricjax":
        return len(LAYERS)  # the top: re-exports everything
    best = None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if module == p or module.startswith(p + "."):
                best = i
    if best is None:
        raise AssertionError(f"{module} is in no layer of tests/test_architecture.py")
    return best


def import_graph() -> dict[str, set[str]]:
    """``module -> {metricjax modules it imports}`` (function-level imports included)."""
    graph = {}
    for path in sorted(PKG.rglob("*.py")):
        mod = _module_name(path)
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.startswith("metricjax"):
                    for alias in node.names:  # "from metricjax import losses" is a module
                        sub = f"{node.module}.{alias.name}"
                        is_mod = (PKG.parent / (sub.replace(".", "/") + ".py")).exists() or (
                            PKG.parent / sub.replace(".", "/")
                        ).is_dir()
                        deps.add(sub if is_mod else node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("metricjax")}
        deps.discard(mod)
        graph[mod] = deps
    return graph


def _package_of(module: str) -> str:
    return module.rsplit(".", 1)[0] if module.rsplit(".", 1)[-1].startswith("_") else module


def test_no_import_goes_up_a_layer():
    bad = [
        f"{mod} (layer {_layer(mod)}) imports {dep} (layer {_layer(dep)})"
        for mod, deps in import_graph().items()
        for dep in deps
        if _layer(dep) > _layer(mod)
    ]
    assert not bad, "\n".join(bad)


def test_no_import_circle():
    graph = import_graph()
    # a package __init__ re-exports its own private modules: that edge is not a circle
    edges = {m: {d for d in deps if _package_of(d) != m} for m, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in edges.get(m, ()):
            if state.get(d) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d in edges and state.get(d) is None:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in edges:
        if state.get(m) is None:
            visit(m)


def test_base_package_does_not_import_optional_dependencies():
    """``import metricjax`` needs only jax, optax, numpy, tqdm, jaxtyping."""
    import subprocess
    import sys

    code = (
        "import sys, metricjax\n"
        "bad = [m for m in ('sklearn', 'flax', 'matplotlib', 'chex', 'beartype') if m in sys.modules]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_without_the_extras_help_dir_and_star_import_work():
    """Without scikit-learn and flax, ``help(metricjax)``, ``dir`` and ``from metricjax import
    *`` skip the names of the missing extras (they listed them, and their ImportError broke
    pydoc and the star import); using such a name still says which extra to install."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['sklearn'] = None\n"
        "sys.modules['flax'] = None\n"
        "import pydoc, metricjax\n"
        "assert 'NCA' not in metricjax.__all__ and 'NCA' not in dir(metricjax)\n"
        "assert 'nn' not in dir(metricjax) and 'fit' in dir(metricjax)\n"
        "assert 'mlkr_loss' in pydoc.render_doc(metricjax) or 'losses' in pydoc.render_doc(metricjax)\n"
        "ns = {}\n"
        "exec('from metricjax import *', ns)\n"
        "assert 'fit' in ns and 'NCA' not in ns\n"
        "try:\n"
        "    metricjax.NCA\n"
        "except ImportError as err:\n"
        "    assert 'metricjax[sklearn]' in str(err), err\n"
        "else:\n"
        "    raise AssertionError('metricjax.NCA without scikit-learn')\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stdout + out.stderr


if __name__ == "__main__":  # print the graph
    for mod, deps in import_graph().items():
        print(f"{mod} (layer {_layer(mod)}) -> {', '.join(sorted(deps)) or '-'}")
