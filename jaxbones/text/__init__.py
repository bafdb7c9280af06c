"""Text utilities: the CLIP byte-level BPE tokenizer (``Tokenizer``, ``tokenize``)."""

from jaxbones.text.tokenizer import Tokenizer, default_vocab_path, get_tokenizer, tokenize

__all__ = ["Tokenizer", "default_vocab_path", "get_tokenizer", "tokenize"]
