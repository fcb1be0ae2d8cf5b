"""Where a checkpoint's files come from: a local directory, a hub repository, or a name that says.

The published loaders (moshi's and KAME's `loaders.hf_get`) read file names in three forms,
and so does kamevoice:

- `hf://OWNER/REPO/PATH`: the file PATH of hub repository OWNER/REPO (through
  `huggingface_hub.hf_hub_download`, so its cache and `HF_HUB_OFFLINE` apply);
- `file://PATH`: a local file, whatever the checkpoint is;
- any other name: relative to the checkpoint (a file of its directory or of its hub repo),
  or, for a name given on the command line, a local path.

A `Place` is one checkpoint root (a directory or a repo id) that answers "give me file NAME".
Every failure is a `CheckpointError` naming the file and where it was looked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kamevoice.errors import CheckpointError

# The published loaders' prefixes (`loaders.hf_get`): a file of another hub repo, a local file.
HF_PREFIX = "hf://"
FILE_PREFIX = "file://"
# A hub repository id: OWNER/NAME.
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def is_hub_id(source: str | Path) -> bool:
    """Whether `source` reads as a hub repo id and is no local path."""
    return isinstance(source, str) and bool(HUB_ID.match(source)) and not Path(source).exists()


@dataclass(frozen=True)
class Place:
    """A checkpoint root: a local directory (`local`) or a hub repo id, at `revision`."""

    root: str
    local: bool
    revision: str | None = None

    @classmethod
    def of(cls, source: str | Path, revision: str | None = None) -> Place:
        """The place `source` names; `CheckpointError` if it is neither a directory nor a repo id."""
        path = Path(source)
        if path.is_dir():
            return cls(str(path), True)
        if is_hub_id(str(source)):
            return cls(str(source), False, revision)
        what = "a file, not a directory" if path.is_file() else "neither a local directory"
        raise CheckpointError(f"checkpoint '{source}' is {what} nor a hub repo id (owner/name)")

    def describe(self) -> str:
        return f"checkpoint {self.root}" if self.local else f"hub repo {self.root}"

    def fetch(self, name: str, required: bool = True, why: str = "") -> Path | None:
        """The file called `name` (any of the three forms) relative to this place."""
        if name.startswith((HF_PREFIX, FILE_PREFIX)):
            return fetch_named(name, required=required)
        if self.local:
            candidate = Path(name) if Path(name).is_absolute() else Path(self.root) / name
            if candidate.is_file():
                return candidate
            if required:
                raise CheckpointError(f"{self.describe()}: file '{name}' is missing{why}")
            return None
        return hub_download(self.root, name, self.revision, required=required, why=why)


def fetch_named(name: str, required: bool = True) -> Path | None:
    """A file named on its own (a flag, or an `hf://` / `file://` name in a config): `hf://`
    from the hub, `file://` or a plain path from the local disk."""
    if name.startswith(HF_PREFIX):
        parts = name.removeprefix(HF_PREFIX).split("/")
        if len(parts) < 3 or not all(parts):
            raise CheckpointError(f"'{name}': an hf:// name must read hf://OWNER/REPO/PATH")
        return hub_download("/".join(parts[:2]), "/".join(parts[2:]), None, required=required)
    path = Path(name.removeprefix(FILE_PREFIX))
    if path.is_file():
        return path
    if required:
        raise CheckpointError(f"file '{path}' does not exist (named as '{name}')")
    return None


def hub_download(
    repo: str, name: str, revision: str | None, required: bool = True, why: str = ""
) -> Path | None:
    """`hf_hub_download(repo, name)`: a file the repo lacks is None unless `required`; a repo that
    cannot be reached (offline, unknown, private) is an error either way."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(hf_hub_download(repo, name, revision=revision))
    except EntryNotFoundError as exc:
        if required:
            raise CheckpointError(f"hub repo {repo}: file '{name}' does not exist{why}") from exc
        return None
    except Exception as exc:  # offline, unknown repo, auth: all end the same way for the user
        raise CheckpointError(f"hub repo {repo}: cannot fetch '{name}'{why}: {exc}") from exc
