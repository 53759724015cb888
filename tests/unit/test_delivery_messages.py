"""How the relay splits the delivery ids it publishes into messages."""

from __future__ import annotations

import pytest

from handoff.broker import MAX_DELIVERIES_PER_MESSAGE, delivery_messages


@pytest.mark.parametrize(
    "count", [1, MAX_DELIVERIES_PER_MESSAGE, MAX_DELIVERIES_PER_MESSAGE + 1, 95]
)
def test_ids_are_split_into_even_messages(count: int) -> None:
    ids = [f"id-{index}" for index in range(count)]

    messages = delivery_messages(ids)

    sizes = [len(message.args[0]) for message in messages]
    assert ids == [delivery_id for message in messages for delivery_id in message.args[0]]
    assert max(sizes) <= MAX_DELIVERIES_PER_MESSAGE
    assert max(sizes) - min(sizes) <= 1
    assert len(messages) == -(-count // MAX_DELIVERIES_PER_MESSAGE)
    assert len({message.message_id for message in messages}) == len(messages)


def test_no_ids_make_no_message() -> None:
    assert [] == delivery_messages([])
