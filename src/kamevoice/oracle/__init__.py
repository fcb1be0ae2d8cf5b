"""The oracle stream: per-frame layout (`timeline`) and incremental tokenisation (`pieces`)."""

from kamevoice.oracle.ids import TextIds
from kamevoice.oracle.pieces import IncrementalTokenizer
from kamevoice.oracle.timeline import OracleEvent, OracleTimeline, TimelineStats, layout_oracle

__all__ = [
    "IncrementalTokenizer",
    "OracleEvent",
    "OracleTimeline",
    "TextIds",
    "TimelineStats",
    "layout_oracle",
]
