"""WiSE-FT: a fine-tuned run's backbone mixed with its starting weights (Wortsman et al. 2022)."""

from typing import Any

from torch import nn

from engine.contract import events as ev
from engine.contract.errors import RunError
from engine.fusion.members import Fusion
from engine.transfer.weights import head_prefixes, source_of

# The WiSE-FT mixing weights `--with-init auto` tries on the validation data.
WISE_ALPHAS = tuple(step / 10 for step in range(11))


def wise_ft(job: Fusion) -> tuple[float, dict[str, Any]]:
    """(1 - alpha)·start + alpha·fine-tuned over the backbone; the fine-tuned head stays."""
    member, run_id = job.members[0], job.ids[0]
    if member.spec.init == "scratch":
        raise RunError(
            "bad_input",
            f"run {run_id} started from scratch, so there are no starting weights to mix",
            "use --with-init on a run fine-tuned from imagenet, run:ID or file:PATH",
        )
    start, _, _ = source_of(member.spec)
    assert start is not None
    tuned = member.model.state_dict()
    heads = head_prefixes(member.model)
    shared = [
        key
        for key, tensor in tuned.items()
        if not key.startswith(heads)
        and tensor.is_floating_point()
        and key in start
        and start[key].shape == tensor.shape
    ]

    def mix(alpha: float) -> nn.Module:
        if alpha == 1:  # the fine-tuned run itself, its BatchNorm statistics as trained
            return member.model
        state = dict(tuned)
        for key in shared:
            mixed = (1 - alpha) * start[key].float().to(job.device) + alpha * tuned[key]
            state[key] = mixed.to(tuned[key].dtype)
        return job.network_with(state, member)

    alphas = [job.fusion.alpha] if job.fusion.alpha is not None else list(WISE_ALPHAS)
    steps = len(alphas)
    job.started_event(steps)
    best_alpha, best_acc = alphas[-1], -1.0
    # From the fine-tuned end down, so a tie keeps more of the fine-tuned weights.
    for index, alpha in enumerate(sorted(alphas, reverse=True), start=1):
        if job.stop.requested:
            break
        candidate = mix(alpha)
        val_acc = job.accuracy(candidate, job.adapters[0])
        job.step(index, steps, f"alpha {alpha:g}", val_acc)
        if val_acc > best_acc:
            best_alpha, best_acc, job.result = alpha, val_acc, candidate
    if len(alphas) > 1:
        job.writer.emit(
            ev.LOG,
            level="info",
            message=f"alpha {best_alpha:g} chosen: the best validation accuracy",
        )
    job.save(best_acc)
    return best_acc, {"alpha": best_alpha, "mixed_tensors": len(shared)}
