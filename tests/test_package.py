"""The root package: its public names, and subpackages loaded only when used."""

from __future__ import annotations

import subprocess
import sys

import pytest

import neurotask as nt

HEAVY = ("torch", "matplotlib", "sklearn")


def _imported_after(statement: str) -> list[str]:
    """Which heavy libraries a fresh interpreter holds after ``statement``."""
    code = f"import sys\n{statement}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.parametrize(("statement", "allowed"), [
    ("import neurotask", ()),
    # an ingest process
    ("import neurotask as nt; nt.load_bold5000; nt.open_responses", ()),
    # a Dask worker unpickling a ridge chunk task or a null task
    ("import neurotask.encoding.executor, neurotask.stats.permutation", ("sklearn",)),
])
def test_processes_import_only_what_they_use(statement, allowed):
    assert set(_imported_after(statement)) <= set(allowed)


def test_public_names_resolve_to_the_subpackages_functions():
    from neurotask import features, fmri, stores

    assert nt.load_bold5000 is fmri.load_bold5000 and nt.align is fmri.align
    assert nt.extract_features is features.extract_features
    assert (nt.open_features, nt.open_responses, nt.open_results) == (
        stores.open_features, stores.open_responses, stores.open_results)
    assert set(nt.__all__) <= set(dir(nt))
    with pytest.raises(AttributeError, match="no_such_name"):
        nt.no_such_name  # noqa: B018


def test_no_module_over_600_lines():
    from pathlib import Path

    root = Path(nt.__file__).parent
    sizes = {str(p.relative_to(root)): len(p.read_text().splitlines()) for p in root.rglob("*.py")}
    assert len(sizes) > 50
    assert {name: n for name, n in sizes.items() if n > 600} == {}
