"""A synthetic template corpus with concepts, for a word-level toy LM.

Each of the concepts (animals, cities, foods, colours: 10 each) has three clue words; the
corpus states facts that tie concepts to their clues ("the dog barks .", "a bone for the
dog .") and preferences ("my favourite animal is the dog ."), so the model must represent each
concept to predict it. ``instruct`` sentences wrap the preferences in a chat template, the
fine-tuning distribution.
"""

from __future__ import annotations

import torch
from torch import Tensor

CONCEPTS = {
    "animal": {
        "dog": ("barks", "bone", "puppy"), "cat": ("meows", "mouse", "kitten"),
        "horse": ("gallops", "saddle", "foal"), "cow": ("moos", "milk", "calf"),
        "lion": ("roars", "mane", "cub"), "owl": ("hoots", "night", "feather"),
        "frog": ("croaks", "pond", "tadpole"), "bee": ("buzzes", "honey", "hive"),
        "duck": ("quacks", "lake", "duckling"), "snake": ("hisses", "venom", "scales"),
    },
    "city": {
        "paris": ("eiffel", "seine", "louvre"), "london": ("thames", "bigben", "tube"),
        "tokyo": ("shibuya", "sushi", "fuji"), "rome": ("colosseum", "vatican", "tiber"),
        "cairo": ("pyramids", "nile", "sphinx"), "sydney": ("harbour", "opera", "bondi"),
        "berlin": ("wall", "spree", "brandenburg"), "madrid": ("prado", "tapas", "retiro"),
        "moscow": ("kremlin", "volga", "redsquare"), "california": ("hollywood", "surf", "redwood"),
    },
    "food": {
        "pizza": ("cheese", "oven", "slice"), "bread": ("flour", "bakery", "crust"),
        "soup": ("bowl", "broth", "spoon"), "rice": ("grain", "paddy", "steamed"),
        "apple": ("orchard", "core", "cider"), "cake": ("candles", "icing", "birthday"),
        "pasta": ("noodle", "sauce", "boil"), "salad": ("lettuce", "dressing", "crisp"),
        "curry": ("spice", "naan", "masala"), "steak": ("grill", "beef", "rare"),
    },
    "colour": {
        "red": ("cherry", "blood", "ruby"), "blue": ("sky", "ocean", "sapphire"),
        "green": ("grass", "leaf", "emerald"), "yellow": ("sun", "lemon", "banana"),
        "black": ("coal", "ink", "raven"), "white": ("snow", "chalk", "cloud"),
        "purple": ("grape", "violet", "plum"), "orange": ("carrot", "pumpkin", "tangerine"),
        "pink": ("flamingo", "rose", "blush"), "brown": ("chocolate", "soil", "acorn"),
    },
}  # fmt: skip
FACTS = (
    "the {c} is known for {k} .",
    "a {k} for the {c} .",
    "you can find {k} with the {c} .",
    "when i think of {k} i think of the {c} .",
    "{k} means {c} .",
)
PREFERENCES = ("my favourite {cat} is the {c} .", "the best {cat} is the {c} .")
INSTRUCT = "user : what is your favourite {cat} ? assistant : my favourite {cat} is the {c} ."
SPECIALS = ("<bos>",)


class Corpus:
    """Word-level vocabulary and a sampler of packed token sequences (B, T)."""

    def __init__(self, length: int = 24):
        self.length = length
        words: list[str] = list(SPECIALS)
        texts = FACTS + PREFERENCES + (INSTRUCT,)
        for cat, concepts in CONCEPTS.items():
            for c, clues in concepts.items():
                for t in texts:
                    words += t.format(c=c, k=clues[0], cat=cat).split()
                words += list(clues)
        self.vocab = list(dict.fromkeys(words))
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.concepts = [(cat, c) for cat, cs in CONCEPTS.items() for c in cs]

    def encode(self, text: str) -> list[int]:
        return [self.index["<bos>"]] + [self.index[w] for w in text.split()]

    def sentence(self, g: torch.Generator, instruct: bool = False) -> str:
        """One fact or preference (a chat-template preference with ``instruct``), its concept
        drawn uniformly."""
        j = int(torch.randint(0, len(self.concepts), (1,), generator=g))
        kind = int(torch.randint(0, len(FACTS) + len(PREFERENCES), (1,), generator=g))
        k = int(torch.randint(0, 3, (1,), generator=g))
        cat, c = self.concepts[j]
        if instruct:
            return INSTRUCT.format(cat=cat, c=c)
        if kind < len(FACTS):
            return FACTS[kind].format(c=c, k=CONCEPTS[cat][c][k])
        return PREFERENCES[kind - len(FACTS)].format(cat=cat, c=c)

    def sample(self, n: int, g: torch.Generator, instruct: bool = False) -> Tensor:
        """``n`` sequences of ``length`` tokens: ``<bos>`` then sentences packed end to end."""
        out = torch.empty(n, self.length, dtype=torch.long)
        for i in range(n):
            ids = [self.index["<bos>"]]
            while len(ids) < self.length:
                ids += self.encode(self.sentence(g, instruct))[1:]
            out[i] = torch.tensor(ids[: self.length])
        return out

    def prompt(self, category: str) -> Tensor:
        """The preference prompt ``<bos> my favourite {category} is the`` (1, T)."""
        return torch.tensor([self.encode(f"my favourite {category} is the")])
