"""Fetching checkpoint files: Hugging Face Hub repos and plain URLs, into a local cache.

Two sources, one contract: ``fetch(cfg)`` returns the path of a complete, verified local file
for a ``PretrainedCfg``, downloading it when it is not cached yet.

* Hub repos go through ``huggingface_hub.hf_hub_download`` (its own cache and locking).
  ``HF_ENDPOINT``, ``HF_HOME``/``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` are read at call time,
  so a process can change them after import.
* Plain URLs are streamed into ``<cache>/downloads/.<name>.<random>.part`` next to their final
  name while their SHA-256 is computed, checked against the published hash (or its published
  prefix) and the announced length, and only then renamed into place with ``os.replace``
  (atomic on POSIX). A killed process leaves a ``.part`` file that no reader ever opens; a
  failed check deletes it. An exclusive ``fcntl`` lock per file makes concurrent processes
  (several hosts on one shared file system) download once; without the lock the atomic
  rename alone still keeps every reader's file complete.

``$JAXBONES_URL_MIRROR`` (a base URL) fetches plain-URL files from a mirror that serves them
under their original host and path (``<mirror>/download.pytorch.org/models/x.pth``), for
clusters whose hosts reach only an internal mirror; hashes are checked all the same.

``cache_dir()`` is ``$JAXBONES_CACHE`` (default ``~/.cache/jaxbones``): downloads from URLs
and the converted Flax variables of ``jaxbones.weights`` live there. A torchvision file that
``torch.hub`` already downloaded (``$TORCH_HOME/hub/checkpoints``) is used in place.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jaxbones.registry import PretrainedCfg

_CHUNK = 1 << 20
_TRUE = ("1", "true", "yes", "on")


class WeightsUnavailableError(RuntimeError):
    """A checkpoint file is neither cached nor downloadable (offline, or the source failed)."""


class ChecksumError(RuntimeError):
    """A downloaded file does not match its published hash or announced length."""


def cache_dir() -> Path:
    """Root of jaxbones' own cache: ``$JAXBONES_CACHE`` or ``~/.cache/jaxbones``."""
    return Path(os.environ.get("JAXBONES_CACHE") or "~/.cache/jaxbones").expanduser()


def offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``JAXBONES_OFFLINE``) asks for no network access."""
    return any(
        os.environ.get(v, "").lower() in _TRUE for v in ("HF_HUB_OFFLINE", "JAXBONES_OFFLINE")
    )


def hf_cache_dir() -> Path:
    """The Hub cache that ``huggingface_hub`` would use with the current environment."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"
    )
    return Path(hf_home).expanduser() / "hub"


def fetch(cfg: PretrainedCfg) -> Path:
    """A complete local copy of ``cfg``'s checkpoint file (downloaded if not cached).

    Raises:
      WeightsUnavailableError: offline and not cached, or the source cannot be reached; the
        message names the tag, the source, the file and where to put it.
      ChecksumError: the downloaded file does not match the published hash or length.
    """
    if cfg.hf_hub_id:
        return _fetch_hub(cfg)
    return download_url(cfg.url, cfg.file_name, sha256=cfg.sha256, tag=cfg.tag)


def _unavailable(tag: str, source: str, file_name: str, where: Path, why: str):
    return WeightsUnavailableError(
        f"{tag}: cannot get {file_name} from {source} ({why}). Download it on a machine with "
        f"network access and either copy it to {where}, or load it with "
        f"jaxbones.load_pretrained({tag!r}, file='/path/to/{file_name}')."
    )


def _fetch_hub(cfg: PretrainedCfg) -> Path:
    import huggingface_hub
    from huggingface_hub import errors

    cache = hf_cache_dir()
    try:
        path = huggingface_hub.hf_hub_download(
            cfg.hf_hub_id,
            cfg.hf_hub_filename,
            cache_dir=cache,
            endpoint=os.environ.get("HF_ENDPOINT") or None,
            local_files_only=offline(),
            library_name="jaxbones",
        )
    except errors.LocalEntryNotFoundError as e:
        why = "offline mode (HF_HUB_OFFLINE) and not cached" if offline() else str(e)
        where = cache / ("models--" + cfg.hf_hub_id.replace("/", "--"))
        raise _unavailable(cfg.tag, cfg.source_name, cfg.hf_hub_filename, where, why) from e
    except (errors.HfHubHTTPError, OSError) as e:
        where = cache / ("models--" + cfg.hf_hub_id.replace("/", "--"))
        raise _unavailable(cfg.tag, cfg.source_name, cfg.hf_hub_filename, where, str(e)) from e
    return Path(path)


def _torch_hub_copy(file_name: str) -> Path | None:
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch"
    )
    path = Path(torch_home).expanduser() / "hub" / "checkpoints" / file_name
    return path if path.is_file() else None


@contextlib.contextmanager
def _file_lock(path: Path):
    lock_path = path.with_name(f".{path.name}.lock")
    with open(lock_path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def download_url(url: str, file_name: str = "", *, sha256: str = "", tag: str = "") -> Path:
    """``<cache>/downloads/<file_name>``, downloaded from ``url`` first if it is not there.

    ``sha256`` is the full hex digest or a published prefix of it (torchvision's file names
    carry one); it is checked before the file gets its final name.
    """
    file_name = file_name or url.rsplit("/", 1)[-1].split("?")[0]
    tag = tag or file_name
    if (cached := _torch_hub_copy(file_name)) is not None:
        return cached
    dest = cache_dir() / "downloads" / file_name
    if dest.is_file():
        return dest
    if offline():
        raise _unavailable(
            tag, url, file_name, dest, "offline mode (HF_HUB_OFFLINE) and not cached"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(dest):
        if dest.is_file():  # another process finished it while this one waited for the lock
            return dest
        _download(url, dest, sha256.lower(), tag)
    return dest


def mirrored(url: str) -> str:
    """``url`` rewritten to ``$JAXBONES_URL_MIRROR`` when that is set."""
    mirror = os.environ.get("JAXBONES_URL_MIRROR", "").rstrip("/")
    if not mirror:
        return url
    return f"{mirror}/{url.split('://', 1)[-1]}"


def _truncated(tag: str, dest: Path, url: str, size: int, expected) -> ChecksumError:
    return ChecksumError(
        f"{tag}: download of {dest.name} from {url} is truncated ({size} of {expected} bytes); "
        "nothing was cached, call again to download it again."
    )


def _download(url: str, dest: Path, sha256: str, tag: str) -> None:
    url = mirrored(url)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        h = hashlib.sha256()
        size = 0
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "jaxbones"})
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=60) as r:
                expected = r.headers.get("Content-Length")
                for chunk in iter(lambda: r.read(_CHUNK), b""):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
        except http.client.IncompleteRead as e:
            raise _truncated(tag, dest, url, size + len(e.partial), expected) from e
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            raise _unavailable(tag, url, dest.name, dest, str(e)) from e
        if expected is not None and size != int(expected):
            raise _truncated(tag, dest, url, size, expected)
        digest = h.hexdigest()
        if sha256 and not digest.startswith(sha256):
            raise ChecksumError(
                f"{tag}: {dest.name} from {url} has SHA-256 {digest}, expected {sha256}"
                f"{'...' if len(sha256) < 64 else ''}; the file was discarded, nothing was "
                "cached. Call again to download it again; if it persists the source changed."
            )
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
