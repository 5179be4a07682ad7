"""ListStarRocksDataReplications: the TaurusDB -> StarRocks sync tasks of one instance. Pure.

Pages in (`list_replications`, on the shared page walk), a `Replication` out, samples as data
(`samples`). The API's quirks, read leniently (spec: htap-sibling-apis.md section 1):
- `total_count` is a string; pagination follows it, because pages may hold at most 50 rows below a
  `limit` of 100 (a "stop on a short page" loop would stop after 50 tasks);
- `stage` and `catchup_stage` come in either case (`full`, `Full`) and are exported in lower case;
- `percentage` may be `"45%"`, `"45"` or `"45.5"`;
- `status` is `Yes` (normal) or `No` (abnormal); anything else (`Wait`, empty) is neither.
A row without a usable `task_name` is counted and skipped; an unreadable value is counted and left
out; a document of the wrong shape raises ApiError("bad_response").
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Mapping

from htap_exporter.collectors.labels import DEFAULT_MAX_LABEL_LENGTH, UNKNOWN, label_value
from htap_exporter.cloud.client import ProjectClient
from htap_exporter.cloud.errors import ApiError
# `limit` is at most 100 (the documented maximum); the server may still cap a page at 50 rows.
from htap_exporter.cloud.paging import PAGE_LIMIT, PageStep, walk_pages
from htap_exporter.collectors.base import (CollectorOutput, Samples, declare, get_json, json_list, json_object, kind_of,
                                          render)
from htap_exporter.exposition.families import Family
from htap_exporter.exposition.writer import InstanceIdentity

LIST_REPLICATIONS_API = "list_replications"

STAGES = ("wait", "full", "incremental", "paused", "cancelled")

FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("htap_replication_tasks", "gauge",
     "Replication tasks per stage (wait, full, incremental, paused, cancelled, unknown); adds up to all tasks."),
    ("htap_replication_tasks_abnormal", "gauge", "Replication tasks whose status is No (abnormal)."),
    ("htap_replication_task_info", "gauge", "A replication task and its source and target databases (always 1)."),
    ("htap_replication_task_normal", "gauge",
     "1 if the task's status is Yes, 0 if No; absent for any other value."),
    ("htap_replication_task_stage", "gauge", "1 for the task's current stage, 0 for the other stages."),
    ("htap_replication_task_progress_ratio", "gauge", "Progress of the task's current stage (percentage / 100)."),
    ("htap_replication_task_catchup_stage", "gauge",
     "1 for the stage of the task's catch-up, 0 for the other stages."),
    ("htap_replication_task_catchup_progress_ratio", "gauge", "Progress of the task's catch-up (percentage / 100)."),
    ("htap_replication_task_last_change_timestamp_seconds", "gauge",
     "When the exporter last saw the task's stage, catch-up stage or either progress change"
     " (at first sight: that time)."),
)


@dataclass(frozen=True)
class Task:
    name: str
    source_database: str  # "" when missing
    target_database: str
    normal: bool | None  # status Yes -> True, No -> False, anything else -> None
    stage: str | None  # one of STAGES, None when missing or not one of them
    progress: float | None  # ratio 0..1
    catchup_stage: str | None
    catchup_progress: float | None

    def state(self) -> tuple[str | None, str | None, float | None, float | None]:
        """What the last-change timestamp watches."""
        return (self.stage, self.catchup_stage, self.progress, self.catchup_progress)


@dataclass(frozen=True)
class ReplicationPage:
    total_count: int
    rows: int  # rows on the page, bad ones included (what the offset advances by)
    tasks: tuple[Task, ...]
    bad_rows: int
    bad_values: int


@dataclass(frozen=True)
class Replication:
    total_count: int  # as the last page said
    tasks: tuple[Task, ...]  # every task read, each name once, in the order served
    bad_rows: int
    bad_values: int
    pages: int


def parse_percentage(value: Any) -> float | None:
    """`"45%"`, `"45"`, `"45.5"`, ` 45 % ` or a JSON number -> ratio 0..1, clamped; None if unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an integer of hundreds of digits
            return None
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith("%"):
            text = text[:-1].rstrip()
        try:
            number = float(text)
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(number):
        return None
    return min(max(number, 0.0), 100.0) / 100.0 + 0.0  # + 0.0: "-0" is 0.0, not -0.0 (another text)


def parse_stage(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    stage = value.strip().lower()
    return stage if stage in STAGES else None


def parse_status(value: Any) -> bool | None:
    if not isinstance(value, str):
        return None
    status = value.strip().lower()
    return True if status == "yes" else False if status == "no" else None


def _present(value: Any) -> bool:
    """Missing, null and empty are absences (no catch-up, say), not bad values."""
    return value is not None and not (isinstance(value, str) and not value.strip())


def parse_task(row: Any) -> tuple[Task | None, int]:
    """One row -> (task or None for a bad row, count of bad values in it)."""
    if not isinstance(row, dict):
        return None, 0
    name = row.get("task_name")
    if not isinstance(name, str) or not name.strip():
        return None, 0
    bad = 0

    def read(key: str, parser: Any) -> Any:
        nonlocal bad
        raw = row.get(key)
        value = parser(raw)
        if value is None and _present(raw):
            bad += 1
        return value

    def database(key: str) -> str:
        nonlocal bad
        raw = row.get(key)
        if isinstance(raw, str):
            return raw
        if raw is not None:
            bad += 1
        return ""

    task = Task(
        name=name.strip(),
        source_database=database("source_database"),
        target_database=database("target_database"),
        normal=read("status", parse_status),
        stage=read("stage", parse_stage),
        progress=read("percentage", parse_percentage),
        catchup_stage=read("catchup_stage", parse_stage),
        catchup_progress=read("catchup_percentage", parse_percentage),
    )
    return task, bad


def parse_total_count(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        raise ApiError("bad_response", f"replication list: total_count is {kind_of(value)}, not a number")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ApiError("bad_response", f"replication list: total_count {value[:20]!r} is not a number") from None
    if not isinstance(value, int) or value < 0:
        raise ApiError("bad_response", f"replication list: total_count {value!r} is not a count")
    return value


def parse_page(document: Any, *, limit: int = PAGE_LIMIT) -> ReplicationPage:
    """One page of ListStarRocksDataReplications."""
    document = json_object(document, "replication list")
    total = parse_total_count(document.get("total_count"))
    # An instance without tasks may leave the list out.
    rows = json_list(document, "replications", "replication list")
    if len(rows) > limit:
        raise ApiError("bad_response", f"replication list: {len(rows)} rows on a page of limit {limit}")
    tasks: list[Task] = []
    bad_rows = bad_values = 0
    for row in rows:
        task, bad = parse_task(row)
        if task is None:
            bad_rows += 1
        else:
            tasks.append(task)
            bad_values += bad
    return ReplicationPage(total_count=total, rows=len(rows), tasks=tuple(tasks), bad_rows=bad_rows,
                           bad_values=bad_values)


async def list_replications(fetch: Callable[[int], Awaitable[Any]], *, max_pages: int) -> Replication:
    """Every page of the list, walked by `total_count` (`fetch(offset)` gives a page's document),
    each task once: the list is live, a task seen twice is counted as a bad row."""
    pages: list[ReplicationPage] = []
    seen: set[str] = set()

    async def read_page(offset: int) -> PageStep:
        page = parse_page(await fetch(offset), limit=PAGE_LIMIT)
        pages.append(page)
        new = {task.name for task in page.tasks} - seen
        seen.update(new)
        # A page of rows none of which could be read says nothing about repeats.
        return PageStep(page.rows, len(new) if page.tasks else None, page.total_count)

    await walk_pages(read_page, max_pages=max_pages, what="replication list", refuse_repeats=True)
    return merge_pages(pages)


class LastChange:
    """Per task, when its stage, catch-up stage or either progress last changed.

    First sight counts as a change (that time). A task missing from a run is forgotten, so a task
    that comes back starts afresh and memory stays bounded by the task list.
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[tuple[Any, ...], float]] = {}

    def observe(self, tasks: Iterable[Task], now: float) -> dict[str, float]:
        seen: dict[str, tuple[tuple[Any, ...], float]] = {}
        for task in tasks:
            state = task.state()
            previous = self._seen.get(task.name)
            seen[task.name] = previous if previous is not None and previous[0] == state else (state, now)
        self._seen = seen
        return {name: changed for name, (_, changed) in seen.items()}


def select_tasks(tasks: Iterable[Task], max_tasks: int) -> list[Task]:
    """The tasks that get per-task series: abnormal (status No) first, then by name."""
    return sorted(tasks, key=lambda task: (task.normal is not False, task.name))[:max_tasks]


def samples(replication: Replication, *, max_tasks: int, last_change: Mapping[str, float],
            max_label_length: int = DEFAULT_MAX_LABEL_LENGTH) -> Samples:
    """Family name -> (extra labels, value) for every family of FAMILIES."""
    by_stage = dict.fromkeys((*STAGES, UNKNOWN), 0)
    for task in replication.tasks:
        by_stage[task.stage or UNKNOWN] += 1
    out: Samples = {name: [] for name, _, _ in FAMILIES}
    out["htap_replication_tasks"] = [({"stage": stage}, float(count)) for stage, count in by_stage.items()]
    out["htap_replication_tasks_abnormal"] = [
        ({}, float(sum(1 for task in replication.tasks if task.normal is False)))]
    for task in select_tasks(replication.tasks, max_tasks):
        name = label_value(task.name, max_label_length)
        out["htap_replication_task_info"].append(({
            "task_name": name,
            "source_database": label_value(task.source_database, max_label_length),
            "target_database": label_value(task.target_database, max_label_length),
        }, 1.0))
        if task.normal is not None:
            out["htap_replication_task_normal"].append(({"task_name": name}, 1.0 if task.normal else 0.0))
        for stage in STAGES:
            out["htap_replication_task_stage"].append(
                ({"task_name": name, "stage": stage}, 1.0 if task.stage == stage else 0.0))
            out["htap_replication_task_catchup_stage"].append(
                ({"task_name": name, "stage": stage}, 1.0 if task.catchup_stage == stage else 0.0))
        if task.progress is not None:
            out["htap_replication_task_progress_ratio"].append(({"task_name": name}, task.progress))
        if task.catchup_progress is not None:
            out["htap_replication_task_catchup_progress_ratio"].append(({"task_name": name}, task.catchup_progress))
        if task.name in last_change:
            out["htap_replication_task_last_change_timestamp_seconds"].append(
                ({"task_name": name}, last_change[task.name]))
    return out



@dataclass(frozen=True)
class ReplicationCollector:
    """ListStarRocksDataReplications, every page (walked by `total_count`) in one run."""

    interval: float
    max_tasks: int
    max_label_length: int = DEFAULT_MAX_LABEL_LENGTH
    name: str = "replication"
    families: tuple[Family, ...] = declare(FAMILIES)
    riders: tuple[str, ...] = ()
    reports_up: bool = False
    # Per instance: when each task last changed (the exporter's own memory; see LastChange).
    _changes: dict[str, LastChange] = field(default_factory=dict, compare=False, repr=False)
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)

    def retain(self, instance_ids: set[str]) -> None:
        """Forget what was learnt of instances no longer polled (discovery churns)."""
        for gone in self._changes.keys() - instance_ids:
            del self._changes[gone]

    async def collect(self, instance: InstanceIdentity, client: ProjectClient) -> CollectorOutput:
        path = f"/v3/{client.project_id}/instances/{instance.instance_id}/starrocks/databases/replication"

        async def fetch(offset: int) -> Any:
            return await get_json(client, LIST_REPLICATIONS_API, path,
                                  [("limit", str(PAGE_LIMIT)), ("offset", str(offset))])

        replication = await list_replications(fetch, max_pages=client.max_pages)
        changes = self._changes.setdefault(instance.instance_id, LastChange())
        last_change = changes.observe(replication.tasks, self.clock())
        writer = instance.writer
        # The lines of the last run while its tasks and their last changes stay as they were (the
        # instance's writer keeps them): tasks rarely change from one run to the next, and writing
        # their lines costs ~2 us a series (a label set each, escaped and joined) where comparing
        # costs ~1 us a task.
        return CollectorOutput(writer.cached(
            ("lines", self.name), (replication.tasks, last_change),
            lambda: render(writer, samples(replication, max_tasks=self.max_tasks, last_change=last_change,
                                           max_label_length=self.max_label_length))))


def merge_pages(pages: list[ReplicationPage]) -> Replication:
    """The pages of one walk as one list: each task once (the list is live), in the order served."""
    tasks: dict[str, Task] = {}
    bad_rows = sum(page.bad_rows for page in pages)
    for page in pages:
        for task in page.tasks:
            if task.name in tasks:
                bad_rows += 1
            else:
                tasks[task.name] = task
    return Replication(total_count=pages[-1].total_count if pages else 0, tasks=tuple(tasks.values()),
                       bad_rows=bad_rows, bad_values=sum(page.bad_values for page in pages), pages=len(pages))
