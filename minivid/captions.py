"""Captions for Moving MNIST: a tiny grammar, its fixed vocabulary, a tokenizer and a parser.

A caption names every digit of a clip, its class and the compass direction it starts moving in:

    "a 3 moving down-left and a 7 moving right"

The words come from the generator's own ground truth (`data.clip_labels`), never from looking at the
pixels, so a caption is exactly as right as the clip it describes, and like the clip a pure function of
(seed, split, index): ``clips, captions = data.moving_mnist(range(8), captions=True)``.

The grammar, in full:

    caption   := phrase ("and" phrase)*          at most MAX_DIGITS phrases
    phrase    := article DIGIT "moving" DIRECTION
    article   := "a" | "an"                      "an 8" (say it aloud); either is accepted
    DIGIT     := "0" | "1" | ... | "9"
    DIRECTION := "right" | "up-right" | "up" | "up-left" | "left" | "down-left" | "down" | "down-right"

A grammar this small has a vocabulary we can write down: `VOCAB`, 23 words, id 0 the padding. The
tokenizer is therefore a lookup table rather than BPE: `encode` turns captions into fixed-length id
tensors (padded with 0), `decode` turns ids back into words, and `parse` turns a caption into the
structured labels it states. Text-to-video models read the ids (`minivid/models/dit.py`); the judge
(`minivid/judge.py`) reads the structured labels.

Every caption a person types goes through `parse` first, which raises one clear ValueError naming what
is allowed: unknown words (the error lists the vocabulary), an empty or over-long caption, or words in
an order the grammar cannot read.
"""

from __future__ import annotations

import torch

DIRECTIONS = ("right", "up-right", "up", "up-left", "left", "down-left", "down", "down-right")  # sector k: 45k degrees
DIGIT_WORDS = tuple(str(d) for d in range(10))
ARTICLES = ("a", "an")
MOVING, AND = "moving", "and"
PAD = "<pad>"  # id 0: fills a caption up to MAX_WORDS; a caption of nothing but padding is "no caption"

VOCAB = (PAD, *ARTICLES, MOVING, AND, *DIGIT_WORDS, *DIRECTIONS)
WORD_TO_ID = {word: i for i, word in enumerate(VOCAB)}
PAD_ID = WORD_TO_ID[PAD]

MAX_DIGITS = 3  # Moving MNIST has 2 digits; one more leaves room to ask for something new
MAX_WORDS = 5 * MAX_DIGITS - 1  # 4 words a phrase, "and" between phrases: 14 for three digits

EXAMPLE = "a 3 moving down-left and a 7 moving right"
GRAMMAR = (f"a caption reads 'a DIGIT moving DIRECTION', joined by 'and' for up to {MAX_DIGITS} digits, "
           f"e.g. '{EXAMPLE}'; DIGIT is 0-9, DIRECTION one of {', '.join(DIRECTIONS)}")


# --------------------------------------------------------------------------------------------
# from ground truth to words
# --------------------------------------------------------------------------------------------


def article(digit: int) -> str:
    """'an' before 8 (read "eight"), 'a' before every other digit."""
    return "an" if int(digit) == 8 else "a"


def describe(digits, directions) -> str:
    """One caption from one clip's labels: describe([3, 7], [5, 0]) -> 'a 3 moving down-left and a 7 moving right'.

    digits: classes 0-9; directions: sector indices 0-7 into DIRECTIONS (or direction words), in the
    same order (the generator's digit order).
    """
    digits, directions = [int(d) for d in digits], list(directions)
    if not 1 <= len(digits) <= MAX_DIGITS or len(directions) != len(digits):
        raise ValueError(f"a caption describes 1 to {MAX_DIGITS} digits, each with one direction; "
                         f"got {len(digits)} digits and {len(directions)} directions")
    names = [d if isinstance(d, str) else DIRECTIONS[int(d)] for d in directions]
    for digit, name in zip(digits, names):
        if not 0 <= digit <= 9 or name not in DIRECTIONS:
            raise ValueError(f"digits are 0-9 and directions one of {', '.join(DIRECTIONS)}; got {digit!r}, {name!r}")
    return f" {AND} ".join(f"{article(d)} {d} {MOVING} {name}" for d, name in zip(digits, names))


def describe_labels(labels: dict) -> list[str]:
    """One caption per clip from `data.clip_labels(...)` (its 'digits' and 'directions', both (b, d))."""
    return [describe(d, k) for d, k in zip(labels["digits"].tolist(), labels["directions"].tolist())]


# --------------------------------------------------------------------------------------------
# from words to structured labels: the parser
# --------------------------------------------------------------------------------------------


def words_of(caption) -> list[str]:
    """The words of a caption: lower-cased and split at white space; the first check of every caption."""
    if not isinstance(caption, str):
        raise ValueError(f"a caption is a string, e.g. '{EXAMPLE}'; got {type(caption).__name__} {caption!r}")
    words = caption.lower().split()
    if not words:
        raise ValueError(f"the caption is empty: {GRAMMAR}")
    unknown = [w for w in dict.fromkeys(words) if w not in WORD_TO_ID or w == PAD]
    if unknown:
        vocabulary = ", ".join(VOCAB[1:])
        raise ValueError(f"unknown word{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in {caption!r}; "
                         f"the vocabulary is: {vocabulary}")
    if len(words) > MAX_WORDS:
        raise ValueError(f"the caption has {len(words)} words, at most {MAX_WORDS} are allowed ({MAX_DIGITS} digits): "
                         f"{GRAMMAR}")
    return words


def parse(caption: str) -> list[tuple[int, str]]:
    """The structured labels a caption states: parse('a 3 moving down-left and a 7 moving right')
    -> [(3, 'down-left'), (7, 'right')]. Raises one clear ValueError on anything the grammar cannot read.

    The parser walks the words with a small state machine: each state says which words may come next.
    """
    words = words_of(caption)
    expected = {  # state -> (the words allowed here, what the error calls them, the next state)
        "article": (ARTICLES, "'a' or 'an'", "digit"),
        "digit": (DIGIT_WORDS, "a digit 0-9", "moving"),
        "moving": ((MOVING,), "'moving'", "direction"),
        "direction": (DIRECTIONS, f"a direction ({', '.join(DIRECTIONS)})", "and"),
        "and": ((AND,), "'and' or the end of the caption", "article"),
    }
    phrases, digit, state = [], None, "article"
    for position, word in enumerate(words, start=1):
        allowed, name, after = expected[state]
        if word not in allowed:
            raise ValueError(f"cannot read {caption!r}: word {position} is {word!r}, expected {name} there; {GRAMMAR}")
        if state == "digit":
            digit = int(word)
        if state == "direction":
            phrases.append((digit, word))
        state = after
    if state != "and":  # the caption stopped inside a phrase
        raise ValueError(f"cannot read {caption!r}: it ends where {expected[state][1]} should follow; {GRAMMAR}")
    return phrases  # at most MAX_DIGITS: a fourth phrase would pass MAX_WORDS


def canonical(caption: str) -> str:
    """The caption as `describe` writes it: lower case, single spaces, 'an' before 8 and 'a' elsewhere."""
    phrases = parse(caption)
    return describe([d for d, _ in phrases], [k for _, k in phrases])


# --------------------------------------------------------------------------------------------
# the tokenizer: captions <-> fixed-length id tensors
# --------------------------------------------------------------------------------------------


def encode(captions, length: int = MAX_WORDS) -> torch.Tensor:
    """Caption(s) -> token ids padded with PAD_ID to `length`: a str gives (length,), a list (b, length).

    Each caption is parsed and written canonically first (`canonical`), so 'A 8 moving LEFT' and
    'an 8 moving left' are the same ids, and bad input fails here with the parser's clear error.
    None in a list stands for "no caption": a row of padding only (what classifier-free guidance
    uses as its unconditional input).
    """
    if isinstance(captions, str):
        return encode([captions], length)[0]
    if not isinstance(captions, (list, tuple)):
        raise ValueError(f"encode takes a caption string or a list of them, got {type(captions).__name__}")
    ids = torch.full((len(captions), length), PAD_ID, dtype=torch.long)
    for row, caption in enumerate(captions):
        if caption is None:
            continue
        words = canonical(caption).split()
        if len(words) > length:
            raise ValueError(f"the caption {caption!r} has {len(words)} words, more than the {length} ids asked for")
        ids[row, : len(words)] = torch.tensor([WORD_TO_ID[w] for w in words])
    return ids


def decode(ids: torch.Tensor):
    """Token ids -> caption(s): (length,) gives a str, (b, length) a list; padding is dropped.

    A row of padding only decodes to None ("no caption"), the inverse of `encode`'s None.
    """
    ids = torch.as_tensor(ids)
    if ids.ndim == 1:
        return decode(ids[None])[0]
    if ids.ndim != 2 or ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"decode takes integer ids shaped (length,) or (b, length), got {tuple(ids.shape)} {ids.dtype}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(VOCAB)):
        raise ValueError(f"token ids lie in [0, {len(VOCAB) - 1}] (the vocabulary has {len(VOCAB)} words), "
                         f"got values in [{int(ids.min())}, {int(ids.max())}]")
    out = []
    for row in ids.tolist():
        words = [VOCAB[i] for i in row if i != PAD_ID]
        out.append(" ".join(words) if words else None)
    return out
