"""Dynamic batching: concurrent requests with images of one size run as one batch.

Requests queue up while the model runs. When it is free, the oldest waiting
request starts a batch; requests of the same height and width join it until it
holds ``max_batch`` images or ``batch_timeout_s`` has passed since the batch
was opened (requests already waiting join at once). Requests of other sizes
wait for a later batch. The model runs in one worker thread, so the event loop
keeps accepting and parsing requests meanwhile. When a batch fails, each of
its requests is run again on its own, so one bad request cannot fail others.

Example:
    >>> import asyncio, numpy as np
    >>> async def demo():
    ...     batcher = Batcher(lambda x: {"n": np.full(len(x), len(x))}, max_batch=4,
    ...                       batch_timeout_s=0.05)
    ...     batcher.start()
    ...     images = np.zeros((1, 2, 2, 3), np.uint8)
    ...     outs = await asyncio.gather(*[batcher.submit(images) for _ in range(3)])
    ...     await batcher.stop()
    ...     return [int(o["n"][0]) for o in outs]
    >>> asyncio.run(demo())
    [3, 3, 3]
"""

import asyncio
import collections
import concurrent.futures
import dataclasses

import numpy as np


class QueueFull(Exception):
    """More requests are waiting than ``max_queue``."""


@dataclasses.dataclass
class _Item:
    images: np.ndarray
    future: asyncio.Future

    @property
    def key(self):
        return self.images.shape[1:]


class Batcher:
    """Runs ``run(images)`` on batches of concurrently submitted images.

    Args:
        run: a function of uint8 ``[B, H, W, 3]`` returning a dict of arrays
            with ``B`` rows; it runs in one worker thread.
        max_batch: the most images in one batch (a single larger request
            runs alone).
        batch_timeout_s: how long an open batch waits for more requests.
        max_queue: the most requests waiting; more raise :class:`QueueFull`.
        on_batch: called with each batch's image count (for metrics).
    """

    def __init__(self, run, max_batch=8, batch_timeout_s=0.0, max_queue=256, on_batch=None):
        if max_batch < 1:
            raise ValueError(f"max_batch: expected at least 1, received {max_batch}.")
        if batch_timeout_s < 0:
            raise ValueError(f"batch_timeout_s: expected 0 or more, received {batch_timeout_s}.")
        self._run = run
        self.max_batch = max_batch
        self.batch_timeout_s = batch_timeout_s
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._pending = collections.deque()
        self._arrived = None
        self._task = None
        self._stopping = False
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fcn_tf-model")

    @property
    def queued(self):
        """Requests waiting for a batch."""
        return len(self._pending)

    def start(self):
        """Start the batching loop on the running event loop."""
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self):
        """Finish every queued request, then stop the loop and the worker thread."""
        self._stopping = True
        if self._arrived is not None:
            self._arrived.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, images):
        """The model's outputs for ``images`` (uint8 ``[n, H, W, 3]``), batched with others.

        Cancelling the caller (a deadline, a client gone) drops the request
        from the queue if it has not run yet.
        """
        if self._stopping:
            raise QueueFull("the server is shutting down")
        if len(self._pending) >= self.max_queue:
            raise QueueFull(f"{len(self._pending)} requests are already waiting "
                            f"(--max-queue {self.max_queue})")
        item = _Item(images, asyncio.get_running_loop().create_future())
        self._pending.append(item)
        self._arrived.set()
        return await item.future

    def _count(self, key):
        return sum(len(i.images) for i in self._pending if i.key == key and not i.future.done())

    def _take(self, key):
        batch, count, keep = [], 0, collections.deque()
        for item in self._pending:
            if item.future.done():
                continue  # cancelled while waiting
            if item.key == key and (not batch or count + len(item.images) <= self.max_batch):
                batch.append(item)
                count += len(item.images)
            else:
                keep.append(item)
        self._pending = keep
        return batch

    async def _loop(self):
        loop = asyncio.get_running_loop()
        while True:
            while self._pending and self._pending[0].future.done():
                self._pending.popleft()
            if not self._pending:
                if self._stopping:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            key = self._pending[0].key
            closes = loop.time() + self.batch_timeout_s
            while self._count(key) < self.max_batch and not self._stopping:
                remaining = closes - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch = self._take(key)
            if batch:
                await self._run_batch(loop, batch)

    async def _run_batch(self, loop, batch):
        images = batch[0].images if len(batch) == 1 else np.concatenate([i.images for i in batch])
        if self._on_batch is not None:
            self._on_batch(len(images))
        try:
            outputs = await loop.run_in_executor(self._executor, self._run, images)
        except Exception as error:  # noqa: BLE001 - handed to the waiting requests
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(error)
                return
            for item in batch:  # isolate the failing request
                await self._run_batch(loop, [item])
            return
        start = 0
        for item in batch:
            end = start + len(item.images)
            if not item.future.done():
                item.future.set_result({k: v[start:end] for k, v in outputs.items()})
            start = end
