"""A run as a unit of work for many-render dispatch: decided on the driver (``plan_task``), rendered or resumed
in a worker process (``render_task``) through the runner's own steps.

The driver resolves each run before anything is dispatched: every settings problem is found there, the run's
identity is decided and its timestring claimed (``claim_timestring``), and a seed of -1 is replaced by the
seed drawn for it. A task therefore names its output folder, timestring and seed; a task rendered again
(its worker killed) renders the same run, and a 2D/3D run resumes from its last finished key frame
(``deforum.render.resume``) instead of starting a new folder. Its frames and settings file are byte for byte
those of ``deforum render`` with the same timestring and seed.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from deforum.errors import StateError
from deforum.settings import RunIdentity

TIMESTRING_FORMAT = "%Y%m%d%H%M%S"


@dataclass(frozen=True)
class RunTask:
    """One settings file's run, decided by the driver: what a worker needs to render it (or resume it)."""

    label: str  # the settings file, for messages
    args: dict[str, Any]
    anim_args: dict[str, Any]
    prompts: list[str]
    animation_prompts: dict[Any, str]
    identity: RunIdentity  # claimed timestring, output folder, resolved seed
    mode: str  # animation_mode
    total: int | None = None  # frames the run writes, when known before its inputs are read (progress)


def plan_task(label: str, args: Mapping[str, Any], anim_args: Mapping[str, Any], prompts: Sequence[str],
              animation_prompts: Mapping[Any, str], root: Any, now: datetime.datetime | None = None) -> RunTask:
    """Resolve a run on the driver and claim its timestring; raises the settings' or the resume state's
    problems (``deforum.runner.prepare``) before any worker is started.

    A new run claims ``now``'s timestring in its folder (or the next free second: runs of one batch
    started in the same second get one each). A run resumed with ``--resume`` keeps its own.
    """
    from deforum.image.io import ensure_output_folder
    from deforum.render.resume import claim_timestring
    from deforum.runner import prepare

    prepared = prepare(dict(args), dict(anim_args), list(prompts), dict(animation_prompts), root, now=now)
    identity, settings = prepared.identity, prepared.settings
    if prepared.state is None:
        ensure_output_folder(identity.outdir)
        identity = replace(identity, timestring=claim_timestring(identity.outdir, identity.timestring))
    mode = settings.animation.animation_mode
    if prepared.plan is not None:
        total = len(prepared.plan.rows)
    elif mode == "None":
        total = len(settings.prompts.prompts) * settings.output.n_batch
    else:
        total = None
    return RunTask(label, {**args, "seed": identity.seed}, dict(anim_args), list(prompts), dict(animation_prompts),
                   identity, mode, total)


def render_task(task: RunTask, root: Any) -> Any:
    """Render (or resume) one task in this process with the model kept in ``root.model``; returns the
    runner's ``RunResult`` (``extra``: ``resumed_from``, the key frame it went on from, and ``pid``).

    A 2D/3D run whose state folder holds a ``state.json`` resumes from it (a retry after its worker was
    killed, or ``--resume``); any other run is rendered from its first frame under the task's identity.
    """
    from deforum import runner
    from deforum.render.resume import STATE_FILE, release_claim, state_dir

    identity = task.identity
    anim = dict(task.anim_args)
    resuming = task.mode in ("2D", "3D") and (state_dir(identity.outdir, identity.timestring) / STATE_FILE).is_file()
    if resuming:
        anim.update(resume_from_timestring=True, resume_timestring=identity.timestring)
    now = datetime.datetime.strptime(identity.timestring, TIMESTRING_FORMAT)
    prepared = runner.prepare(task.args, anim, task.prompts, task.animation_prompts, root, now=now)
    moved = resuming and Path(prepared.identity.outdir) != Path(identity.outdir)
    if prepared.identity.seed != identity.seed or moved:
        raise StateError(f"{task.label}: the run {identity.timestring} resolved to {prepared.identity}, not the "
                         f"identity the driver gave it ({identity})")
    inputs = None
    try:
        inputs = runner.preflight(prepared.settings, identity)
        # The runner's steps after the claim: the driver claimed the timestring, so none is claimed here.
        result = runner.render_prepared(prepared, identity, inputs, root, progress=False)
    finally:
        if inputs is not None and inputs.video is not None:
            inputs.video.release()
        release_claim(identity.outdir, identity.timestring)  # only an empty claim: a 2D/3D run's state stays
    result.extra.update(resumed_from=prepared.state.next_key if prepared.state is not None else None,
                        pid=os.getpid())
    return result
