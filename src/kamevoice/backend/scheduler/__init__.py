"""The oracle scheduler: when to (re)ask the LLM, and which answer reaches the front-end.

`core` runs the policy and the requests, `settings` holds the policy (and the named presets
of the published KAME servers), `stream` what the requests share (the sink, the cut).
"""

from kamevoice.backend.scheduler.core import OracleScheduler
from kamevoice.backend.scheduler.settings import PRESETS, PresetName, SchedulerSettings
from kamevoice.backend.scheduler.stream import OracleSink, cut_oracle

__all__ = ["PRESETS", "OracleScheduler", "OracleSink", "PresetName", "SchedulerSettings", "cut_oracle"]
