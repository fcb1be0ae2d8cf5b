"""GA or beta: the names and shapes in which the two versions of the Realtime API differ.

The current (GA) API and the beta one (a client sends `OpenAI-Beta: realtime=v1`) share most
events; they differ in a few names (`response.output_audio.delta` / `response.audio.delta`,
`conversation.item.added` / `conversation.item.created`, ...), in the content type of an
assistant's audio (`output_audio` / `audio`), and in the shape of the session and response
objects. A `Dialect` holds the differences; the door speaks through one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kamevoice.server.doors.realtime.audio import WireFormat


@dataclass(frozen=True)
class Dialect:
    """The names one version of the API uses (see module doc)."""

    beta: bool
    audio_delta: str
    audio_done: str
    transcript_delta: str
    transcript_done: str
    item_added: str  # an item joined the conversation
    item_done: str | None  # the item is complete (GA only)
    assistant_audio: str  # the content type of the assistant's audio

    def item(self, item_id: str, role: str, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        """A message item of `role` ("user" or "assistant") with its `content` parts."""
        return {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": role,
            "status": status,
            "content": content,
        }

    def audio_content(self, role: str, transcript: str | None) -> dict[str, Any]:
        """One audio content part: the user's (`input_audio`) or the assistant's."""
        return {"type": "input_audio" if role == "user" else self.assistant_audio, "transcript": transcript}

    def response(
        self,
        response_id: str,
        status: str,
        output: list[dict[str, Any]],
        *,
        voice: str,
        audio_format: WireFormat,
        status_details: dict[str, Any] | None = None,
        usage: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The `response` object of `response.created` / `response.done`."""
        common = {
            "object": "realtime.response",
            "id": response_id,
            "status": status,
            "status_details": status_details,
            "output": output,
            "conversation_id": None,
            "max_output_tokens": "inf",
            "usage": usage,
            "metadata": metadata,
        }
        if self.beta:
            return {
                **common,
                "modalities": ["audio", "text"],
                "voice": voice,
                "output_audio_format": audio_format.beta_name,
                "temperature": 0.8,
            }
        fmt = {
            "type": audio_format.value,
            **({"rate": audio_format.rate} if audio_format is WireFormat.PCM16 else {}),
        }
        return {
            **common,
            "output_modalities": ["audio"],
            "audio": {"output": {"format": fmt, "voice": voice}},
        }


GA = Dialect(
    beta=False,
    audio_delta="response.output_audio.delta",
    audio_done="response.output_audio.done",
    transcript_delta="response.output_audio_transcript.delta",
    transcript_done="response.output_audio_transcript.done",
    item_added="conversation.item.added",
    item_done="conversation.item.done",
    assistant_audio="output_audio",
)
BETA = Dialect(
    beta=True,
    audio_delta="response.audio.delta",
    audio_done="response.audio.done",
    transcript_delta="response.audio_transcript.delta",
    transcript_done="response.audio_transcript.done",
    item_added="conversation.item.created",
    item_done=None,
    assistant_audio="audio",
)
