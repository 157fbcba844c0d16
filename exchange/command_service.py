"""Commands over NATS request/reply: how gateways coordinate the shards of a cluster.

The HTTP API reaches a shard's leader through `api.nats_bridge`. Work that spans shards (a
participant registered on every shard, cash moved from one shard to another) is done by a
gateway sending typed commands (the journal's own schema) to `hogx.<shard>.commands`, where the
leader submits each one exactly as the API would and replies with its `CommandResult`.

The subject belongs to the cluster's private network: only gateways may publish on it (NATS
account permissions in production), since a command here is trusted as the API trusts its own.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from exchange.commands import Command, decode_command, encode_command
from exchange.jetstream import check_shard
from exchange.sequencer import CommandResult, Exchange, ExchangeStopped, Overloaded

QUEUE_GROUP = "engine"
MAX_IN_FLIGHT = 4_096
COMMAND_TIMEOUT_S = 5.0


def command_subject(shard: str) -> str:
    return f"hogx.{check_shard(shard)}.commands"


class CommandAnswer(msgspec.Struct, frozen=True):
    """The result of a command, or why the shard could not take it (`error`: a stable code)."""

    result: CommandResult | None = None
    error: str | None = None
    message: str = ""


class ShardUnavailable(Exception):
    """No leader answered (failover in progress, or the shard is down): retry later."""


_encode = msgspec.msgpack.Encoder().encode
_decode_answer = msgspec.msgpack.Decoder(CommandAnswer).decode


async def serve_commands(nc: NatsClient, shard: str, exchange: Exchange) -> Subscription:
    """Answer commands for `shard` while this node leads it (queue group: one answer each)."""
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()

    async def answer(message: Msg) -> None:
        async with slots:
            await message.respond(_encode(await _run(exchange, message.data)))

    async def on_message(message: Msg) -> None:
        task = asyncio.create_task(answer(message))  # never hold up the subscription
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return await nc.subscribe(command_subject(shard), queue=QUEUE_GROUP, cb=on_message)


async def _run(exchange: Exchange, payload: bytes) -> CommandAnswer:
    try:
        command = decode_command(payload)
    except (msgspec.MsgspecError, ValueError) as error:
        return CommandAnswer(error="INVALID_COMMAND", message=str(error))
    try:
        return CommandAnswer(result=await exchange.submit(command))
    except ExchangeStopped as error:
        return CommandAnswer(error="UNAVAILABLE", message=str(error))
    except Overloaded as error:
        return CommandAnswer(error="OVERLOADED", message=str(error))
    except ValueError as error:
        return CommandAnswer(error="INVALID_COMMAND", message=str(error))


async def submit_to_shard(
    nc: NatsClient, shard: str, command: Command, timeout: float = COMMAND_TIMEOUT_S
) -> CommandResult:
    """Submit `command` to the leader of `shard`; raises `ShardUnavailable` when none answers
    or it cannot take commands now (the caller retries; make the command idempotent)."""
    try:
        reply = await nc.request(command_subject(shard), encode_command(command), timeout=timeout)
    except (NoRespondersError, NatsTimeout) as error:
        raise ShardUnavailable(f"no leader of shard {shard} answered") from error
    answer = _decode_answer(reply.data)
    if answer.result is None:
        if answer.error == "INVALID_COMMAND":
            raise ValueError(answer.message)
        raise ShardUnavailable(f"shard {shard}: {answer.error}: {answer.message}")
    return answer.result


async def stop_serving(subscription: Subscription) -> None:
    with contextlib.suppress(Exception):
        await subscription.unsubscribe()
