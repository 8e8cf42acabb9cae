"""The README's generated tables (gpu_worker.docs) are the code's: the operation registry and the
output formats table."""

from __future__ import annotations

import pytest

from gpu_worker.docs import README, TABLES, find_table


@pytest.mark.parametrize("make", TABLES, ids=lambda make: make.__name__)
def test_the_readme_table_is_generated_from_the_code(make):
    table = make()
    found = find_table(README.read_text(), table)
    assert found is not None, f"README.md has no table headed {table.splitlines()[0]!r}"
    assert found.group(0) == table, "README.md's table differs from the code: run python -m gpu_worker.docs --write"
