"""What a simulated instance is and serves: its id, its StarRocks-like session rows that change
over time, and, for benchmarks, the same rows frozen into ready page bytes."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from typing import Any

USERS = ["root", "etl_loader", "bi_reader", "analyst", "report_svc", "airflow", "dashboard"]
DATABASES = ["sales", "orders", "dw", "information_schema", "marketing", ""]
COMMANDS = ["Sleep"] * 12 + ["Query"] * 6 + ["Init DB", "Ping", "COM_STMT_EXECUTE", "Field List"]
STATES = ["OK"] * 10 + ["EOF"] * 3 + ["ERR", "NOOP"]
STATEMENTS = [
    "SELECT customer_email, SUM(amount) FROM orders WHERE customer_email = 'alice@example.com' GROUP BY 1",
    "INSERT INTO dw.fact_sales SELECT * FROM ods.sales WHERE dt = '2026-11-29'",
    "SELECT /* dashboard */ count(*) FROM sales.events WHERE ts > now() - interval 1 hour",
    "",
]


def instance_id_for(index: int) -> str:
    digest = hashlib.sha256(f"sim-instance-{index}".encode()).hexdigest()
    return digest[:32] + "in17"


def taurus_id_for(index: int) -> str:
    digest = hashlib.sha256(f"sim-taurus-{index}".encode()).hexdigest()
    return digest[:32] + "in07"


@dataclass
class SimTaurus:
    """A TaurusDB instance: what discovery lists first."""

    id: str
    name: str
    status: str = "normal"


@dataclass
class SimInstance:
    id: str
    name: str
    sessions: int
    seed: int
    fixed_rows: list[Any] | None = None
    # Pre-built answers by (offset, limit), for benchmarks: serving 10,000 instances from one
    # process must cost the simulator a dictionary lookup per page, not building the rows.
    static_pages: dict[tuple[int, int], bytes] | None = None

    taurus_id: str | None = None  # None: not listed by discovery
    status: str = "normal"
    frozen: bool = False
    engine_version: str = "3.1.6"
    node_num: int = 3

    def describe(self) -> dict[str, Any]:
        """The instance as step 2 of discovery lists it."""
        return {"id": self.id, "name": self.name, "engine_name": "starrocks", "engine_version": self.engine_version,
                "instance_state": {"instance_status": self.status}, "is_frozen": "true" if self.frozen else "false",
                "node_num": self.node_num, "port": 9030}

    def freeze(self, now: float) -> None:
        """From now on serve this moment's rows, as ready JSON bytes per page of 100."""
        rows = self.rows(now)
        self.static_pages = {
            (offset, 100): json.dumps({"process_list": rows[offset:offset + 100]}).encode()
            for offset in range(0, len(rows) + 1, 100)
        }

    def rows(self, now: float) -> list[dict[str, Any]]:
        if self.fixed_rows is not None:
            return self.fixed_rows
        rng = random.Random(self.seed)
        # The population drifts slowly: a few sessions come and go every minute.
        count = max(1, self.sessions + int(5 * ((now // 60) % 3)) - 5)
        rows = []
        for index in range(count):
            period = rng.choice([30, 120, 600, 3600, 7200])
            phase = rng.uniform(0, period)
            epoch = int((now + phase) // period)
            local = random.Random(hash((self.seed, index, epoch)))
            command = local.choice(COMMANDS)
            rows.append({
                "id": str(1000 + index + 10000 * (epoch % 7)),
                "user": rng.choice(USERS),
                "host": (f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                         f":{local.randrange(30000, 65000)}"),
                "state": local.choice(STATES),
                "database": rng.choice(DATABASES),
                "sql_statement": local.choice(STATEMENTS) if command != "Sleep" else "",
                "duration": int((now + phase) % period),
                "command": command,
            })
        return rows
