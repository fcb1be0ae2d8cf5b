"""The oracle stream: per-frame layout (`timeline`) and incremental tokenisation (`pieces`)."""

from kamevoice.oracle.pieces import IncrementalTokenizer
from kamevoice.oracle.timeline import OracleEvent, OracleIds, OracleTimeline, TimelineStats, layout_oracle

__all__ = [
    "IncrementalTokenizer",
    "OracleEvent",
    "OracleIds",
    "OracleTimeline",
    "TimelineStats",
    "layout_oracle",
]
