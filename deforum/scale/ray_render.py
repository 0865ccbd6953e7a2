"""Runs dispatched on Ray: one actor per GPU (per CPU without GPUs) that keeps its model loaded, one task
per run (``deforum.scale.tasks``) or per slice of a None-mode batch (``deforum.scale.batch_split``), retried
when its worker dies, one progress bar for all.

Frames are written by the workers: on one machine, or on a cluster whose nodes share the output folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from deforum.errors import DeforumError
from deforum.scale.tasks import RunTask, render_task

DEFAULT_RETRIES = 2  # times a task is retried after its worker died (killed, out of memory, node lost)
POLL_SECONDS = 0.5  # how often the driver counts the frames on disk for the progress bar
ANIMATION_FRAME = re.compile(r"^\d{14}_\d{5,}\.png$")


class TaskFailed(DeforumError):
    """A task whose worker died more often than it may be retried."""


class RenderWorker:
    """The body of a Ray actor: a process that renders tasks one after another and keeps the model it
    loaded (``root.model``) for the next. Ray restarts it when it dies; its task is then retried."""

    def __init__(self, root: Mapping[str, Any], cwd: str, device_from_driver: bool):
        if os.path.isdir(cwd):
            os.chdir(cwd)  # relative paths of the settings (init images, output_path) mean the driver's
        self.root = SimpleNamespace(**root, model=None)
        if not device_from_driver:
            from deforum import device as devices

            self.root.map_location = devices.best_device()  # the worker's GPU (Ray sets CUDA_VISIBLE_DEVICES)

    def pid(self) -> int:
        return os.getpid()

    def render(self, task: RunTask) -> Any:
        return render_task(task, self.root)

    def render_part(self, part: Any) -> Any:
        from deforum.scale.batch_split import render_part

        return render_part(part, self.root)


def root_values(root: Any) -> dict[str, Any]:
    """The Root settings a worker rebuilds its root from (everything but the loaded model)."""
    values = dict(root) if isinstance(root, Mapping) else dict(vars(root))
    values.pop("model", None)
    return values


def frames_on_disk(task: RunTask) -> int:
    """Frames of an animation task already in its folder (0 when the folder is on another machine)."""
    if task.mode not in ("2D", "3D", "Interpolation", "Video Input"):
        return 0
    prefix = f"{task.identity.timestring}_"
    try:
        names = os.listdir(task.identity.outdir)
    except OSError:
        return 0
    return sum(1 for name in names if name.startswith(prefix) and ANIMATION_FRAME.match(name))


@dataclass
class Progress:
    """One progress bar for all tasks, in frames: counted on disk while they run, from results when done."""

    tasks: Sequence[RunTask]
    enabled: bool = True
    counts: dict[int, int] = field(default_factory=dict)
    finished: int = 0
    bar: Any = None

    def __post_init__(self):
        if self.enabled:
            from tqdm.auto import tqdm

            total = sum(task.total or 0 for task in self.tasks)
            self.bar = tqdm(total=total or None, unit="frame", desc=f"{len(self.tasks)} runs on Ray")

    def poll(self, running: Sequence[int]) -> None:
        for index in running:
            self.counts[index] = max(self.counts.get(index, 0), frames_on_disk(self.tasks[index]))
        self._show()

    def done(self, index: int, frames: int) -> None:
        self.counts[index] = frames
        self.finished += 1
        self._show()

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def _show(self) -> None:
        if self.bar is None:
            return
        self.bar.n = sum(self.counts.values())
        self.bar.set_postfix_str(f"{self.finished}/{len(self.tasks)} runs done", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def init_ray(address: str | None) -> bool:
    """Connect to Ray: ``local`` (or None) starts a Ray instance on this machine, anything else is a cluster
    address (``auto``, ``HOST:6379``, ``ray://HOST:10001``). Returns whether this call started it (and so
    should shut it down); a Ray already initialised in this process is used as it is."""
    from deforum.scale import require_ray

    ray = require_ray()
    if ray.is_initialized():
        return False
    try:
        if address in (None, "", "local"):
            ray.init(include_dashboard=False)
        else:
            ray.init(address=address)
    except Exception as exc:  # no cluster at that address, a version mismatch, no permission...
        raise DeforumError(f"--ray {address or 'local'}: Ray could not be started or reached "
                           f"({type(exc).__name__}: {exc}); docs/scale.md says how to start a cluster") from None
    return True


def worker_options(resources: Mapping[str, float], workers: int | None, tasks: int) -> tuple[dict[str, Any], int]:
    """The actor resources (one GPU each; one CPU each on a cluster without GPUs) and how many actors."""
    gpus = int(resources.get("GPU", 0))
    if gpus:
        options, slots = {"num_gpus": 1}, gpus
    else:
        options, slots = {"num_cpus": 1}, max(1, int(resources.get("CPU", 1)))
    count = min(tasks, workers or slots)
    return options, max(1, count)


def render_on_ray(tasks: Sequence[RunTask], root: Any, *, address: str | None = "local", workers: int | None = None,
                  retries: int = DEFAULT_RETRIES, progress: bool = True, split_batches: bool = True,
                  on_result: Callable[[int, Any], None] | None = None,
                  on_workers: Callable[[list[int]], None] | None = None,
                  device_from_driver: bool = False) -> list[Any]:
    """Render ``tasks`` on Ray; returns, in order, each task's ``RunResult`` or the exception it failed with.

    Each actor (``workers`` of them; default one per GPU, or per CPU) takes the next piece of work when it
    is free: a task, or with ``split_batches`` a slice of a None-mode batch (``deforum.scale.batch_split``;
    the driver writes its settings file and grids once every slice is done). A worker that dies is
    restarted and its work retried up to ``retries`` times (a 2D/3D run resumes); work that raises (bad
    input) is not retried. ``on_result(index, result)`` is called on the driver as each task ends,
    ``on_workers(pids)`` once the actors are up. Ctrl-C kills the workers (frames already written stay; a
    2D/3D run can be continued with ``deforum render --resume TIMESTRING``) and is raised again.
    """
    from deforum.scale import require_ray
    from deforum.scale.batch_split import finish_batch, split

    ray = require_ray()
    started = False
    results: list[Any] = [None] * len(tasks)
    actors: list[Any] = []
    bar = Progress(tasks, enabled=progress)
    try:
        started = init_ray(address)
        splits = [split_batches and task.mode == "None" for task in tasks]
        pieces = sum(max(1, task.total or 1) if cut else 1 for task, cut in zip(tasks, splits, strict=True))
        options, count = worker_options(ray.cluster_resources(), workers, pieces)
        actor_class = ray.remote(max_restarts=retries, max_task_retries=retries, **options)(RenderWorker)
        values, cwd = root_values(root), os.getcwd()

        def new_actor():
            return actor_class.remote(values, cwd, device_from_driver)

        actors = [new_actor() for _ in range(count)]
        pids = ray.get([actor.pid.remote() for actor in actors])
        if on_workers is not None:
            on_workers(pids)
        queue: list[tuple[int, Any]] = []  # (task index, the task or one BatchPart of it)
        for index, (task, cut) in enumerate(zip(tasks, splits, strict=True)):
            queue += [(index, piece) for piece in (split(task, count) if cut else [task])]
        left = {index: sum(1 for i, _ in queue if i == index) for index in range(len(tasks))}
        parts: dict[int, list[tuple[int, Any]]] = {index: [] for index in range(len(tasks))}
        running: dict[Any, tuple[int, Any, Any]] = {}
        idle = list(actors)
        while queue or running:
            while queue and idle:
                (index, piece), actor = queue.pop(0), idle.pop(0)
                call = actor.render if isinstance(piece, RunTask) else actor.render_part
                running[call.remote(piece)] = (index, piece, actor)
            done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_SECONDS)
            bar.poll([index for index, _, _ in running.values()])
            for ref in done:
                index, piece, actor = running.pop(ref)
                outcome, alive = _outcome(ray, ref, tasks[index], retries)
                if not alive:  # out of restarts: a fresh actor takes the next piece of work
                    actors[actors.index(actor)] = actor = new_actor()
                idle.append(actor)
                left[index] -= 1
                if isinstance(piece, RunTask):
                    results[index] = outcome
                else:
                    parts[index].append((piece.start, outcome))
                    if left[index]:
                        continue  # the batch is done when its last part is
                    results[index] = _batch_result(finish_batch, tasks[index], parts[index], root)
                result = results[index]
                bar.done(index, bar.counts.get(index, 0) if isinstance(result, BaseException) else len(result.frames))
                if on_result is not None:
                    on_result(index, result)
        return results
    except KeyboardInterrupt:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        bar.write("deforum: interrupted: the workers were stopped; finished frames are kept (continue a 2D/3D "
                  "run with `deforum render SETTINGS --resume TIMESTRING`)")
        raise
    finally:
        bar.close()
        from deforum.render.resume import release_claim

        for task, result in zip(tasks, results, strict=True):
            if result is None:  # never finished: its claim goes unless a 2D/3D state is in it (resumable)
                release_claim(task.identity.outdir, task.identity.timestring)
        if started:
            ray.shutdown()


def _batch_result(finish: Callable[..., Any], task: RunTask, parts: list[tuple[int, Any]], root: Any) -> Any:
    """A split batch's RunResult (``finish`` on its parts in row order), or the first exception of a part
    or of ``finish``."""
    failed = [outcome for _, outcome in parts if isinstance(outcome, BaseException)]
    if failed:
        return failed[0]
    try:
        return finish(task, [outcome for _, outcome in sorted(parts, key=lambda part: part[0])], root)
    except Exception as exc:  # reported as the run's failure, like one raised in a worker
        return exc


def _outcome(ray: Any, ref: Any, task: RunTask, retries: int) -> tuple[Any, bool]:
    """A finished task's result or exception (the original one for an error raised in the task), and whether
    its actor is still alive."""
    try:
        return ray.get(ref), True
    except ray.exceptions.RayTaskError as exc:  # raised by the render itself: not retried
        cause = getattr(exc, "cause", None)
        return (cause if isinstance(cause, BaseException) else exc), True
    except ray.exceptions.RayActorError as exc:
        return TaskFailed(f"the worker rendering {task.identity.timestring} died {retries + 1} times ({exc}); its "
                          "finished frames are kept"), False

