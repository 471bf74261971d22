"""Every docstring example in the package runs (those marked ``+SKIP`` need data or a trained model)."""

import doctest
import importlib
import pkgutil

import pytest

import aeloops

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(aeloops.__path__, prefix="aeloops.")
    if not info.name.endswith(("__main__", "make_sample"))
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    # Examples see the module's own names, as a reader of its docstrings does.
    result = doctest.testmod(module, extraglobs=dict(vars(module)), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples in {name} failed"
