"""Fair scheduling across orgs (issue 21, "Many orgs"): which of the jobs a replica holds it starts next, which
fetched job it keeps in its window and which it sends to the back of the JOBS stream. Pure rules, no I/O.

A replica holds a window of fetched jobs it has not started (at most `window`, shared out between the orgs in
it) and starts, whenever a slot is free, the oldest job of the org with the fewest jobs running on it (of those,
the org whose jobs ran the shortest: orgs take turns by the time they use), an org at its cap never. A job
fetched into a full window takes the place of the youngest job of the org holding the most (when that org holds
at least two more than the newcomer's), otherwise it is deferred: sent to the back of the stream, so the replica
sees the jobs behind it (another org's), not one org's long queue."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Waiting:
    """A job held in the window: its org and the order it arrived in (smaller: older)."""

    org: str
    arrived: int


@dataclass(frozen=True)
class Admission:
    """A fetched job kept (`keep`), and `evict`: the index in the window of a job to defer to make room."""

    keep: bool
    evict: int | None = None


def admit(org: str, waiting: Sequence[Waiting], window: int) -> Admission:
    """Whether a job of `org` fetched now is kept in the window (else deferred). Room left: kept. A full window
    makes room for it only at the cost of the org holding the most jobs, and only when that org would still
    hold at least as many as `org` then: the window tends to an equal share for each org in it (max-min)."""
    if len(waiting) < window:
        return Admission(True)
    held = _counts(w.org for w in waiting)
    biggest = max(held, key=lambda o: (held[o], o), default=None)
    if biggest is None or biggest == org or held[biggest] < held.get(org, 0) + 2:
        return Admission(False)
    youngest = max((i for i, w in enumerate(waiting) if w.org == biggest), key=lambda i: waiting[i].arrived)
    return Admission(True, youngest)


def pick(
    waiting: Sequence[Waiting],
    running: Mapping[str, int],
    free: int,
    cap: int,
    used: Mapping[str, float] | None = None,
) -> list[int]:
    """The indexes in `waiting` of the jobs to start now, in order, at most `free`: each time the oldest job of
    the org with the fewest running (those already picked counted), among those the org that used the least
    (`used`: the seconds its jobs have run here lately: a long job costs its org its next turns, as in fair
    queueing); an org with `cap` running (cap >= 1) gets no more."""
    now = dict(running)
    spent = used or {}
    left = sorted(range(len(waiting)), key=lambda i: waiting[i].arrived)
    out: list[int] = []
    while len(out) < free:
        candidates = [i for i in left if now.get(waiting[i].org, 0) < cap]
        if not candidates:
            break
        best = min(
            candidates, key=lambda i: (now.get(waiting[i].org, 0), spent.get(waiting[i].org, 0.0), waiting[i].arrived)
        )
        out.append(best)
        left.remove(best)
        now[waiting[best].org] = now.get(waiting[best].org, 0) + 1
    return out


def org_limit(cap: int, seen_all: bool) -> int:
    """How many jobs of one org may run on a replica now: `cap`, but one while the replica has not seen the whole
    stream yet (its last fetch brought jobs, its window not full): the first org published must not fill the
    slots with its biggest objects before the others' jobs are fetched."""
    return cap if seen_all else 1


def new_pass(held: int, window: int, starved: bool = False) -> bool:
    """After a replica saw a job it had deferred come back (it went through the whole stream), it fetches again
    once its window is down to half, or once an org whose jobs it deferred in this pass has none held or running
    here (`starved`: else the orgs left in the window would take its turns). A pass over the stream is paid for
    by many starts, not by each."""
    return starved or held <= window // 2


def attempt(earlier: str | None, delivered: int) -> int:
    """The attempt a job starts now: the message's deliveries (`delivered`, this one included) after the attempts
    its earlier messages made (a deferred job is a new message; they travel in a header, `earlier`). A delivery
    deferred without starting is no attempt: the deferred message carries `attempt(...) - 1`."""
    return number(earlier) + max(delivered, 1)


def number(header: str | None) -> int:
    """A count carried in a header; absent or not a number: 0."""
    return int(header) if header and header.isdigit() else 0


def _counts(orgs: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for org in orgs:
        out[org] = out.get(org, 0) + 1
    return out
