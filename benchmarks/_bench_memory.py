"""Memory section: bytes per task tracked by one ``Session``.

A session (``MemoryStore``, background sweeps pushed out of the way) starts ``tasks``
v7 tasks against the emulator, which runs in a child process, so none of the
emulator's memory is in this process. ``tracemalloc`` starts after a warm-up of
``WARMUP_TASKS`` starts (pool connections open, converter hooks built, statistics
reservoirs allocated), so what it still holds after the ``tasks`` starts and a
``gc.collect()`` is what the session keeps per task: the ``_Entry`` (lock, event,
config), the ``TaskRecord`` (with the join body kept for ``recover()``), the store's
reference, the id index and the handle-less bookkeeping. Handles are dropped by the
benchmark; the session must not need them.

Tasks are left running (``stop_on_exit=False``): the pagination section lists them.
"""

from __future__ import annotations

import gc
import tracemalloc
from typing import Final

import anyio
from _bench_common import (
    Context,
    Section,
    Target,
    agents_in,
    emulator_state,
    figure,
    join_request,
    sdk_client,
)

from agora_stt_async import Session

WARMUP_TASKS: Final = 200
START_CONCURRENCY: Final = 64
BYTES_PER_TASK_LIMIT: Final = 4096


async def _measure(base_url: str, tasks: int, prefix: str) -> float:
    async with (
        sdk_client(base_url) as client,
        Session(client, refresh_interval=3600.0, stop_on_exit=False) as session,
    ):

        async def start_range(lo: int, hi: int, step: int) -> None:
            for i in range(lo, hi, step):
                key = f"{prefix}-{i}"
                await session.start(key, join_request(key, key))

        async def start_all(lo: int, hi: int) -> None:
            async with anyio.create_task_group() as tg:
                for w in range(START_CONCURRENCY):
                    tg.start_soon(start_range, lo + w, hi, START_CONCURRENCY)

        warm_up = min(WARMUP_TASKS, tasks)
        await start_all(0, warm_up)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            await start_all(warm_up, warm_up + tasks)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        if len(session.handles()) != warm_up + tasks:
            raise RuntimeError("the session does not track every task")
    return (after - before) / tasks


def memory_section(ctx: Context) -> Section:
    """Issue figure 4a: ``bytes_per_task`` with ``tasks`` tasks in one session."""
    url = ctx.emulator()
    tasks = ctx.sizes.tasks
    values: list[float] = []
    for r in range(ctx.runs):
        state = anyio.run(emulator_state, url)
        prefix = f"mem{agents_in(state, 'RUNNING') + agents_in(state, 'STARTING')}-{r}"
        values.append(anyio.run(_measure, url, tasks, prefix))
        ctx.log(f"memory: {values[-1]:.0f} bytes per task ({tasks} tasks)")
    per_task = figure(
        f"bytes_per_task [{tasks} tasks]", values, "B", Target(BYTES_PER_TASK_LIMIT), digits=0
    )
    return Section(
        title=f"Scale: memory per tracked task ({tasks} tasks in one session)",
        figures=(per_task,),
        json={"bytes_per_task": per_task.median, "bytes_per_task_tasks": tasks},
    )
