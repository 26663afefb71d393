"""The stage vocabulary: names equal Flower's message types; stream ids are fixed forever."""

from flwr.app import MessageType

from fedplat.core.stage import MAIN, Stage


def test_a_stage_is_the_message_type_that_carries_it():
    assert Stage.TRAIN == MessageType.TRAIN == "train"
    assert Stage.EVALUATE == MessageType.EVALUATE == "evaluate"
    assert Stage("train") is Stage.TRAIN and f"{Stage.EVALUATE}" == "evaluate"
    assert [s.value for s in Stage] == ["train", "evaluate"]


def test_stream_ids_and_the_main_exchange_name():
    assert (Stage.TRAIN.stream, Stage.EVALUATE.stream) == (0, 1)  # seeded draws depend on them
    assert MAIN == ""
