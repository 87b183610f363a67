"""The original's bugs that `strict_original` can reproduce (spec §4.8 and issue 13), by name.

strict_original: false (every fix on) · true (every bug below) · a list of names (only those).
Not reproducible, or not meaningful, and always fixed: the hard-coded 2-GPU DataParallel and
`cuda:0` (any device works), the unseeded clustering (always seeded), the meaningless return
value of generate(), the fixed ./generated folder and per-iteration torch.cuda.empty_cache().
"""

from __future__ import annotations

from collections.abc import Iterable

from vizlab.errors import ConfigError

BUGS: dict[str, str] = {
    "members": "cluster members are the farthest images from the centre, not the nearest (§4.8.1)",
    "bgr": "images are fed in BGR order with RGB normalisation and saved channel-swapped (§4.8.2)",
    "channels": "every image's activation term sums over every cluster's channel set (§4.8.3)",
    "ties": "target channels are chosen by value membership, so ties can add channels (§4.4)",
    "optimiser": "the SGD optimiser and the robust loss are re-created every iteration: no momentum, "
                 "α and scale never adapt (§4.8.4)",
    "crop": "the image is written back into the canvas at freshly sampled offsets every iteration (§4.8.5)",
    "quantisation": "images are cast to uint8 after every blur, step and denoise (§4.8.7)",
    "broadcast": "the L1 and distance terms are broadcast over a B×K tensor before the sum, so the L1 term "
                 "weighs B·K = K² and the distance term K times the per-cluster loss (issue 13 (a))",
    "schedules": "a chained octave restarts its count at the previous total and its schedules near their "
                 "midpoint (issue 13 (b))",
}


def resolve_bugs(strict_original: bool | str | Iterable[str] | None) -> frozenset[str]:
    """The set of bug names to reproduce for a `strict_original` setting."""
    if strict_original is None or strict_original is False:
        return frozenset()
    if strict_original is True:
        return frozenset(BUGS)
    names = [strict_original] if isinstance(strict_original, str) else list(strict_original)
    unknown = sorted(set(names) - set(BUGS))
    if unknown:
        raise ConfigError(f"strict_original: unknown bug name(s) {unknown}; use true, false or a list of "
                          f"{', '.join(BUGS)}.")
    return frozenset(names)
