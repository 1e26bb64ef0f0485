"""The addresses a report names, offered to the moderators as possible reported people."""

from __future__ import annotations

from casework.cases import mentioned_addresses

DESK = "mentor4u@ecareermentor.in"


def test_addresses_in_the_text_other_than_the_senders_and_the_desks() -> None:
    text = (
        "My mentor (Karan.Mentor@Example.com) asked me to pay; his friend "
        "<ravi+pay@mail.example.co.in> too. Write to Mentor4u@ecareermentor.in or me, "
        "priya@example.com, any time: karan.mentor@example.com."
    )
    assert mentioned_addresses(text, "priya@example.com", DESK) == [
        "karan.mentor@example.com",
        "ravi+pay@mail.example.co.in",
    ]


def test_at_most_ten_in_order() -> None:
    text = " ".join(f"person{n:02}@example.com" for n in reversed(range(15)))
    assert mentioned_addresses(text, "a@example.com", DESK) == [
        f"person{n:02}@example.com" for n in range(10)
    ]


def test_a_run_too_long_for_an_address_is_none_not_even_its_tail() -> None:
    long_local = "x" * 70
    longest = "y" + ".z" * 31  # 63 characters: an address
    text = f"{long_local}@example.com, {longest}@example.com, {longest}zz@example.com"
    assert mentioned_addresses(text, "a@example.com", DESK) == [f"{longest}@example.com"]


def test_text_without_addresses_names_nobody() -> None:
    assert mentioned_addresses("He asked me to pay on WhatsApp. @ 5 pm.", "a@b.com", DESK) == []
