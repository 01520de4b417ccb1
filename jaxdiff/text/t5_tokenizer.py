"""The SentencePiece tokenizer of T5 checkpoints (Kudo & Richardson 2018), with the ids of
transformers' T5Tokenizer.

A T5 checkpoint's `spiece.model` is a unigram SentencePiece model with <pad> = 0, </s> = 1,
<unk> = 2. transformers' T5Tokenizer (with its default `legacy=True`; `legacy=False` would drop
the "▁" prefix of a stretch that follows a special token) turns a text into ids as follows:

1. the special tokens' strings in the text (<pad>, </s>, <unk> and the sentinels <extra_id_N>,
   N < extra_ids) become their ids; the sentinels come after the SentencePiece vocabulary in
   reverse order, <extra_id_N> = V_spm + extra_ids - 1 - N (so <extra_id_0> = 32099 for T5);
2. each stretch of text between them is normalised with the model's character map (NFKC-like),
   split on whitespace, and every word gets the "▁" prefix before the unigram segmentation,
   which is exactly SentencePiece's own encoding of the stretch (its whitespace is squeezed and
   stripped, and a dummy "▁" prefix added), so leading, trailing and repeated spaces give no ids.

`ids(text)` does this with the `sentencepiece` package, without the EOS that transformers appends;
`jaxdiff.text.tokenizers.tokenize` truncates to max_length - 1, appends EOS and pads.
"""

import re

import sentencepiece


class T5Tokenizer:
    """The Tokenizer protocol of jaxdiff.text.tokenizers over a T5 `spiece.model` (module
    docstring): `max_length`, `pad_id`, `eos_id` from the model (0 and 1 for T5) and `ids`."""

    def __init__(self, model_file: str, max_length: int, extra_ids: int = 100):
        if max_length < 1:
            raise ValueError(f"The T5 tokenizer's max_length must be at least 1, got {max_length}.")
        self.processor = sentencepiece.SentencePieceProcessor(model_file=model_file)
        self.max_length = max_length
        self.pad_id = self.processor.pad_id()
        self.eos_id = self.processor.eos_id()
        if self.pad_id < 0 or self.eos_id < 0:
            raise ValueError(f"The SentencePiece model {model_file} defines no padding or no "
                             "end-of-sequence piece, which a T5 tokenizer needs.")
        self.vocab_size = self.processor.get_piece_size() + extra_ids
        self.special_ids = {self.processor.id_to_piece(i): i for i in
                            (self.pad_id, self.eos_id, self.processor.unk_id())}
        self.special_ids.update({f"<extra_id_{n}>": self.vocab_size - 1 - n
                                 for n in range(extra_ids)})
        self.special = re.compile("(" + "|".join(
            re.escape(piece) for piece in sorted(self.special_ids, key=len, reverse=True)) + ")")

    def ids(self, text: str) -> list:
        """The token ids of `text` (module docstring), without EOS and not truncated."""
        ids = []
        # re.split with one group alternates text stretches (even) and special strings (odd).
        for i, part in enumerate(self.special.split(text)):
            ids.extend([self.special_ids[part]] if i % 2 else self.processor.encode(part))
        return ids
