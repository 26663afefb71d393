from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from fedplat.runtime.inline import run_inline


def test_state_persists_per_node_and_is_dropped_when_the_client_raises():
    client = ClientApp()

    @client.train()
    def _train(msg, context):
        count = int(context.state["n"]["v"]) if "n" in context.state else 0
        context.state["n"] = ConfigRecord({"v": count + 1})
        if bool(msg.content["c"]["fail"]):
            raise RuntimeError("boom")
        return Message(RecordDict({"c": ConfigRecord({"v": count + 1})}), reply_to=msg)

    seen = []
    server = ServerApp()

    @server.main()
    def _main(grid, context):
        nodes = sorted(grid.get_node_ids())
        for fail in (False, True, False):
            msgs = [Message(RecordDict({"c": ConfigRecord({"fail": fail and n == nodes[0]})}),
                            dst_node_id=n, message_type=MessageType.TRAIN) for n in nodes]
            seen.append({r.metadata.src_node_id: (r.error.reason if r.has_error() else
                                                  int(r.content["c"]["v"]))
                         for r in grid.send_and_receive(msgs)})

    run_inline(server, client, 2)
    first, second, third = seen
    node_a, node_b = sorted(first)
    assert first == {node_a: 1, node_b: 1}
    assert "boom" in second[node_a] and second[node_b] == 2
    assert third == {node_a: 2, node_b: 3}  # the failed round's state change was dropped
