"""Tokenizer plugins; importing this package registers them in ``d3lm.registry.TOKENIZERS``."""

from d3lm.tokenizers.base import Tokenizer
from d3lm.tokenizers.bpe import BPETokenizer
from d3lm.tokenizers.kmer import KmerTokenizer, NT6merTokenizer

__all__ = ["BPETokenizer", "KmerTokenizer", "NT6merTokenizer", "Tokenizer"]
