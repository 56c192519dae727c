"""The "Rank by" choices a user picks from, in the window and with ``phpq search --rank``: what each one
searches with over the active model's own settings.

``RANK_CHOICES`` is the one table from choice to settings (the lead re-tunes them here). *Any bird* is
chosen on birds from elsewhere alone, for both bundled models (docs/results.md, *Rank by: any bird*).
"""

from __future__ import annotations

from dataclasses import dataclass

from phpq.fusion import NeighbourRerank, SearchSteps


@dataclass(frozen=True)
class RankChoice:
    key: str  # kept in the window's settings; phpq search --rank KEY
    label: str  # shown in the "Rank by" box
    weight: float | None  # the code weight w it searches with; None: the model's own settings
    meaning: str  # one plain sentence for the tooltip
    steps: SearchSteps | None = None  # its steps after the first scan; None: the model's own


RANK_CHOICES = (
    RankChoice(
        "known",
        "known species",
        0.8,
        "known species: trusts what the model learned about the species it was trained on (the 200 CUB"
        " species for the bundled models); best when most of your birds are among them",
    ),
    RankChoice(
        "balanced",
        "balanced",
        None,
        "balanced: the model's own settings (Standard's look at your collection: where most of its birds are"
        " species it was trained on, it ranks as for them, else as for any bird)",
    ),
    RankChoice(
        "any",
        "any bird",
        0.2,
        "any bird: trusts the general look of the bird more than the species the model knows, and each"
        " result's own look-alikes more than the query's first matches; best for birds from elsewhere (the"
        " Thorough model, in Library > Models…, is better at them still)",
        SearchSteps(query_expansion=0, rerank=NeighbourRerank(depth=50, neighbours=3)),
    ),
)
DEFAULT_CHOICE = "balanced"


def choice(key: str) -> RankChoice:
    """The choice saved as ``key`` (the default one for a key this version does not know)."""
    by_key = {rank.key: rank for rank in RANK_CHOICES}
    return by_key.get(key, by_key[DEFAULT_CHOICE])


def ranked_with(rank: str | None, weight: float | None) -> tuple[float | None, SearchSteps | None]:
    """The weight and steps a command-line search runs with: those of the choice ``rank`` (``--rank``),
    else a fixed ``weight`` (``--weight``; None: the model's own) with the model's steps."""
    if rank is None:
        return weight, None
    chosen = choice(rank)
    return chosen.weight, chosen.steps
