"""What a run starts from: the run or file its weights come from, and its teachers, checked
against the store before the run is made."""

from pathlib import Path

from engine.contract import catalog
from engine.contract.spec import RunSpec, SpecError, dataset_kind
from resnet_tui.runs.model import Run
from resnet_tui.runs.store import RunStore


def resolve_init(store: RunStore, spec: RunSpec) -> list[int]:
    """Point `--init run:ID` at that run's checkpoint; returns the parent runs (the lineage).

    The source's width is taken when the spec gives none, so its weights fit. Raises
    SpecError with one line for a run that is not there, of another architecture, or
    without the checkpoint asked for, and for a weights file that is not there.
    """
    if spec.init.startswith("file:") and not Path(spec.init[5:]).is_file():
        raise SpecError(f"--init {spec.init}: there is no such file")
    if not spec.init.startswith("run:"):
        return []
    source, path = checkpoint_of(store, spec.init, f"--init {spec.init}")
    if source.arch != spec.arch:
        raise SpecError(
            f"--init {spec.init}: run {source.id} is a {source.arch} and this run a "
            f"{spec.arch}; use --arch {source.arch}"
        )
    spec.init_checkpoint = str(path)
    if spec.width is None:
        spec.width = source.spec.width
    return [source.id]


def checkpoint_of(store: RunStore, source: str, role: str) -> tuple[Run, Path]:
    """The run and checkpoint file that `run:ID` or `run:ID:last` stands for.

    Raises SpecError, naming the `role` (`--init run:3`, `--teacher run:3`), for a run that
    is not in the store or has no such checkpoint.
    """
    _, run_id, *which = source.split(":")
    run = store.run(int(run_id))
    if run is None:
        raise SpecError(
            f"{role}: there is no run {run_id} in {store.path}; `resnet-tui runs` lists the runs"
        )
    if run.kind == "ensemble":
        members = ",".join(f"run:{m}" for m in run.parents)
        raise SpecError(
            f"{role}: run {run_id} is an ensemble, which has no weights of its own; "
            f"use its members ({members})"
        )
    checkpoint = "last" if which == ["last"] else "best"
    path = run.folder / "checkpoints" / f"{checkpoint}.pt"
    if not path.is_file():
        raise SpecError(
            f"{role}: run {run_id} has no {checkpoint} checkpoint (it is "
            f"{run.status} after {run.epochs_done} epochs)"
        )
    return run, path


def resolve_teachers(store: RunStore, spec: RunSpec) -> list[int]:
    """Point `--teacher run:ID,...` at the runs' checkpoints; returns the teachers' ids.

    Raises SpecError where a teacher is not in the store, has no checkpoint, or was not
    trained on the student's classes (where those are known before the data is read).
    """
    if not spec.teacher:
        return []
    student_classes = spec.classes or list(catalog.DATASETS[dataset_kind(spec.dataset)].classes)
    paths, ids = [], []
    for source in spec.teacher:
        teacher, path = checkpoint_of(store, source, f"--teacher {source}")
        known = teacher.classes
        missing = [c for c in student_classes if known is not None and c not in known]
        if missing:
            raise SpecError(
                f"--teacher {source}: run {teacher.id} was not trained on this run's "
                f"class{'es' if len(missing) > 1 else ''} {', '.join(missing[:5])}; distil from "
                "a teacher trained on the student's classes"
            )
        paths.append(str(path))
        ids.append(teacher.id)
    spec.teacher_checkpoints = paths
    return ids
