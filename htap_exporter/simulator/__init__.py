"""A fake HTAP + IAM cloud API on loopback, for the demo, the tests and the benchmarks."""

from htap_exporter.simulator.app import Simulator, main, sample_config, start
from htap_exporter.simulator.faults import Fault
from htap_exporter.simulator.instances import instance_id_for, taurus_id_for
from htap_exporter.simulator.state import (SIM_ACCESS_KEY, SIM_DOMAIN, SIM_PASSWORD, SIM_PROJECT_ID, SIM_SECRET_KEY,
                                           SIM_TOKEN, SIM_USER)

__all__ = ["SIM_ACCESS_KEY", "SIM_DOMAIN", "SIM_PASSWORD", "SIM_PROJECT_ID", "SIM_SECRET_KEY", "SIM_TOKEN",
           "SIM_USER", "Fault", "Simulator", "instance_id_for", "main", "sample_config", "start", "taurus_id_for"]
