"""Model soups: the members' weights averaged, uniformly or greedily (Wortsman et al. 2022)."""

from typing import Any

from torch import nn

from engine.contract.errors import RunError
from engine.fusion.members import Fusion


def _same_network(job: Fusion) -> None:
    first = job.members[0].model.state_dict()
    for run_id, member in zip(job.ids[1:], job.members[1:], strict=True):
        other = member.model.state_dict()
        if other.keys() != first.keys() or any(other[k].shape != first[k].shape for k in first):
            raise RunError(
                "bad_input",
                f"run {run_id} is not the same network as run {job.ids[0]} "
                f"({member.arch} vs {job.members[0].arch}, or another width or head)",
                "average runs of one architecture, width and head",
            )


def average(job: Fusion, chosen: list[int], weights: list[float] | None = None) -> nn.Module:
    """The first chosen member's network holding the (weighted) mean of the chosen
    members' weights, its BatchNorm statistics measured again on training data."""
    weights = weights or [1 / len(chosen)] * len(chosen)
    states = [job.members[i].model.state_dict() for i in chosen]
    mean = {}
    for key, tensor in states[0].items():
        if tensor.is_floating_point():
            mean[key] = sum(w * s[key].float() for w, s in zip(weights, states, strict=True))
            mean[key] = mean[key].to(tensor.dtype)
        else:  # counters such as num_batches_tracked
            mean[key] = tensor
    return job.network_with(mean, job.members[chosen[0]])


def uniform_soup(job: Fusion) -> tuple[float, dict[str, Any]]:
    """The (weighted) mean of every member's weights."""
    _same_network(job)
    steps = len(job.members) + 1
    job.started_event(steps)
    job.weigh_members(steps)
    job.result = average(job, list(range(len(job.members))), job.weights)
    val_acc = job.accuracy(job.result, job.adapters[0])
    job.step(steps, steps, "soup", val_acc)
    job.save(val_acc)
    return val_acc, {"kept": job.ids, "weights": job.weights}


def greedy_soup(job: Fusion) -> tuple[float, dict[str, Any]]:
    """Wortsman et al.'s greedy soup: members in order of validation accuracy, each kept
    only if the soup's validation accuracy does not drop with it."""
    _same_network(job)
    count = len(job.members)
    steps = 2 * count - 1
    job.started_event(steps)
    _, accuracies = job.weigh_members(steps)
    order = sorted(range(count), key=lambda i: -accuracies[i])
    kept, best_acc = [order[0]], accuracies[order[0]]
    job.result = job.members[order[0]].model
    for index, candidate in enumerate(order[1:], start=count + 1):
        if job.stop.requested:
            break
        soup = average(job, [*kept, candidate])
        val_acc = job.accuracy(soup, job.adapters[0])
        keep = val_acc >= best_acc
        job.step(index, steps, f"+ run {job.ids[candidate]}", val_acc, keep)
        if keep:
            kept.append(candidate)
            best_acc, job.result = val_acc, soup
    job.save(best_acc)
    return best_acc, {"kept": [job.ids[i] for i in kept]}
