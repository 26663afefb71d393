"""The inline backend: the same ServerApp and ClientApp in one process, one message at a time.

For debugging (breakpoints in client code work) and for fast tests of algorithm logic: no Ray
start-up. It keeps Flower's semantics that matter to algorithms: random node ids, one
`Context` per node whose state persists across messages, a client that raises becomes an error
reply and its context changes are dropped, and the client works on a copy of the message (as
if it had crossed the wire). Timeouts are not simulated.
"""

from __future__ import annotations

import copy
import random
import traceback
from collections.abc import Iterable
from uuid import uuid4

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.proto.node_pb2 import NodeInfo
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity
from typing_extensions import override


class InlineGrid(Grid):
    """A Grid whose nodes are ClientApp calls in this process."""

    def __init__(self, client_app: ClientApp, num_nodes: int, run: Run,
                 node_config: dict[int, dict[str, str | int]] | None = None) -> None:
        self._client_app = client_app
        self._run = run
        rng = random.Random()
        self._contexts: dict[int, Context] = {}
        for i in range(num_nodes):
            node_id = rng.getrandbits(63)
            cfg: dict[str, bool | float | int | str] = {"partition-id": i,
                                                        "num-partitions": num_nodes}
            cfg.update((node_config or {}).get(i, {}))
            self._contexts[node_id] = Context(run_id=run.run_id, node_id=node_id,
                                              node_config=cfg, state=RecordDict(),
                                              run_config={})

    @override
    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    @override
    def run(self) -> Run:
        return self._run

    @override
    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return Message(content, dst_node_id=dst_node_id, message_type=message_type,
                       group_id=group_id, ttl=ttl)

    @override
    def get_node_ids(self) -> Iterable[int]:
        return list(self._contexts)

    @override
    def get_nodes(self) -> Iterable[NodeInfo]:
        return []

    @override
    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError("InlineGrid delivers synchronously: use send_and_receive")

    @override
    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError("InlineGrid delivers synchronously: use send_and_receive")

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        """Deliver each message to its node's ClientApp now; return the replies."""
        replies = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = str(uuid4())
            ctx = self._contexts[msg.metadata.dst_node_id]
            trial = Context(run_id=ctx.run_id, node_id=ctx.node_id, node_config=ctx.node_config,
                            state=copy.deepcopy(ctx.state), run_config=ctx.run_config)
            delivered = Message(copy.deepcopy(msg.content), dst_node_id=msg.metadata.dst_node_id,
                                message_type=msg.metadata.message_type)
            delivered.metadata.__dict__["_message_id"] = msg.metadata.message_id
            try:
                reply = self._client_app(delivered, trial)
                self._contexts[ctx.node_id] = trial
            except Exception as exc:  # like the Simulation Engine: an error reply
                reason = f"{type(exc)}:<'{exc}'>\n{traceback.format_exc()}"
                reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason),
                                reply_to=delivered)
            replies.append(reply)
        return replies


def run_inline(server_app: ServerApp, client_app: ClientApp, num_nodes: int,
               node_config: dict[int, dict[str, str | int]] | None = None) -> Context:
    """Run `server_app` against `num_nodes` inline ClientApp nodes; return the server context."""
    run_id = random.getrandbits(63)
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = run_id
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    run = Run.create_empty(run_id=run_id)
    grid = InlineGrid(client_app, num_nodes, run, node_config)
    context = Context(run_id=run_id, node_id=SUPERLINK_NODE_ID, node_config={},
                      state=RecordDict(), run_config={})
    server_app(grid, context)
    return context
