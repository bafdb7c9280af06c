"""CLIP's byte-level BPE tokenizer (OpenAI ``simple_tokenizer.py``, open_clip
``tokenizer.SimpleTokenizer``), without PyTorch.

Behaviour that decides equality with open_clip:
- cleaning: ``ftfy.fix_text``, ``html.unescape`` twice, strip, whitespace runs -> one space,
  lower case;
- pre-tokenisation regex: the special tokens, the English contractions, letter runs, single
  digits, runs of other non-space characters (``regex`` with ``\\p{L}``/``\\p{N}``, ignoring
  case);
- each pre-token's UTF-8 bytes are mapped to printable characters (the GPT-2 byte table), the
  last one marked with ``</w>``, then merged by BPE rank;
- vocabulary: 256 byte symbols, the same 256 with ``</w>``, the first 48,894 merges of
  ``bpe_simple_vocab_16e6.txt.gz``, then ``<start_of_text>`` (49406) and ``<end_of_text>``
  (49407): 49,408 ids;
- output: ``[SOT] + ids + [EOT]`` zero-padded to ``context_length`` (77); longer sequences are
  cut to ``context_length`` with the last id replaced by EOT (text pooling takes the EOT).

The vocabulary file ships inside the ``open_clip_torch`` package; it is located without
importing open_clip (which imports torch), or given explicitly as ``vocab_path``.
"""

from __future__ import annotations

import functools
import gzip
import html
import importlib.util
import itertools
import os
from collections.abc import Sequence

import numpy as np

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
CONTEXT_LENGTH = 77
NUM_MERGES = 49152 - 256 - 2  # OpenAI's vocabulary: 49152 BPE entries minus bytes and specials
SOT, EOT = "<start_of_text>", "<end_of_text>"


def default_vocab_path() -> str:
    """Path of ``bpe_simple_vocab_16e6.txt.gz`` in the installed ``open_clip`` package."""
    spec = importlib.util.find_spec("open_clip")
    if spec is not None and spec.origin:
        path = os.path.join(os.path.dirname(spec.origin), VOCAB_FILE)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(
        f"CLIP BPE vocabulary {VOCAB_FILE} not found: install it with "
        "`pip install open_clip_torch` (it ships the file), or pass "
        "vocab_path='/path/to/bpe_simple_vocab_16e6.txt.gz'"
    )


@functools.cache
def byte_table() -> dict[int, str]:
    """Byte value -> printable unicode character (GPT-2's table): printable Latin-1 bytes map
    to themselves, the other 68 bytes to chr(256), chr(257), ... in byte order."""
    keep = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in keep}
    extra = 256
    for b in range(256):
        if b not in table:
            table[b] = chr(extra)
            extra += 1
    return table


def clean(text: str) -> str:
    """open_clip's 'lower' cleaning: fix mojibake, unescape HTML twice, collapse whitespace,
    lower-case."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).lower()


class Tokenizer:
    """CLIP BPE tokenizer; ``tokenizer(texts)`` -> int32 [N, context_length].

    Attributes:
      vocab_path: the merges file (default: found in the installed open_clip package).
      context_length: output length (77 for every CLIP model).
      encoder / decoder: token string <-> id; sot_token_id (49406), eot_token_id (49407);
      vocab_size (49408).
    """

    def __init__(self, vocab_path: str | None = None, context_length: int = CONTEXT_LENGTH):
        import regex

        self.vocab_path = vocab_path or default_vocab_path()
        if not os.path.exists(self.vocab_path):
            raise FileNotFoundError(
                f"no CLIP vocabulary at {self.vocab_path!r}; pass the path of {VOCAB_FILE} "
                "(shipped in the open_clip_torch package: pip install open_clip_torch)"
            )
        with gzip.open(self.vocab_path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        # line 0 is a version header; the next NUM_MERGES lines are "left right" merges
        merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]
        symbols = list(byte_table().values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
        vocab += [SOT, EOT]
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.decoder = {i: tok for tok, i in self.encoder.items()}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.vocab_size = len(vocab)
        self.sot_token_id = self.encoder[SOT]
        self.eot_token_id = self.encoder[EOT]
        self.context_length = context_length
        self._byte_decoder = {c: b for b, c in byte_table().items()}
        self._pattern = regex.compile(
            rf"{SOT}|{EOT}|'s|'t|'re|'ve|'m|'ll|'d|[\p{{L}}]+|[\p{{N}}]|[^\s\p{{L}}\p{{N}}]+",
            regex.IGNORECASE,
        )
        self._cache: dict[str, list[int]] = {}

    def _merge(self, word: str) -> list[str]:
        """BPE of one pre-token (already byte-mapped): repeatedly merge every occurrence
        (left to right, non-overlapping) of the adjacent pair with the lowest rank."""
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = set(itertools.pairwise(parts))
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts

    def _token_ids(self, piece: str) -> list[int]:
        if piece in (SOT, EOT):  # special tokens written in the text stay one id
            return [self.encoder[piece]]
        ids = self._cache.get(piece)
        if ids is None:
            mapped = "".join(byte_table()[b] for b in piece.encode("utf-8"))
            ids = [self.encoder[p] for p in self._merge(mapped)]
            self._cache[piece] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (cleaned), without start/end tokens."""
        ids: list[int] = []
        for piece in self._pattern.findall(clean(text)):
            ids.extend(self._token_ids(piece))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` (word ends become spaces; invalid UTF-8 is replaced)."""
        text = "".join(self.decoder[int(i)] for i in ids)
        data = bytearray(self._byte_decoder[c] for c in text)
        return data.decode("utf-8", errors="replace").replace("</w>", " ")

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None):
        """[N, context_length] int32 ids: SOT, the text's ids, EOT, zero padding. Too-long
        texts are truncated and their last position set to EOT."""
        if isinstance(texts, str):
            texts = [texts]
        n = context_length or self.context_length
        out = np.zeros((len(texts), n), np.int32)
        for row, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(ids) > n:
                ids = ids[:n]
                ids[-1] = self.eot_token_id
            out[row, : len(ids)] = ids
        return out


@functools.cache
def get_tokenizer(vocab_path: str | None = None) -> Tokenizer:
    """A cached ``Tokenizer`` (building one reads and indexes ~49k merges: ~0.2 s)."""
    return Tokenizer(vocab_path)


def tokenize(texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH) -> np.ndarray:
    """``open_clip.tokenize``: [N, context_length] int32 token ids with the default vocabulary."""
    return get_tokenizer()(texts, context_length)
