"""The tiny model's character-level tokenizer, built in code (no download): shared by `models.tiny_llama` and the
random-weight architectures of llm/archs, which only write prompts with it."""

from __future__ import annotations

import string

TINY_CHARS = string.ascii_letters + string.digits + string.punctuation + " \n"


def tiny_tokenizer():
    """A character-level tokenizer built in code: <pad>=0, <s>=1, </s>=2, <unk>=3, then printable ASCII."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    vocab.update({c: i + 4 for i, c in enumerate(TINY_CHARS)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
