"""The shared server's DB numbers: one place, each number once, all within the server."""

from __future__ import annotations

from tests.support.redisdbs import DB, DB_COUNT


def test_every_purpose_has_a_db_of_its_own_on_the_server() -> None:
    numbers = {name: value for name, value in vars(DB).items() if name.isupper()}
    assert len(set(numbers.values())) == len(numbers), numbers
    assert all(0 <= n < DB_COUNT for n in numbers.values()), numbers
