"""The pay-as-you-go credit packs on sale, from `LIPSYNC_CREDIT_PACKS`.

The variable holds a JSON list such as
`[{"price_usd": 10, "credits": 1000}, {"price_usd": 50, "credits": 5500}]`.
A malformed value stops the service at start-up rather than showing customers
a wrong price list.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from lipsync_common.config import ConfigError, env_str

ENV = "LIPSYNC_CREDIT_PACKS"
DEFAULT_PACKS = (
    '[{"price_usd": 10, "credits": 1000}, {"price_usd": 50, "credits": 5500},'
    ' {"price_usd": 100, "credits": 12000}]'
)


@dataclass(frozen=True)
class CreditPack:
    price_usd: float
    credits: int

    @property
    def price_per_credit_usd(self) -> float:
        # Rounded to a millionth of a dollar: enough to compare packs, no float noise.
        return round(self.price_usd / self.credits, 6)


def parse_packs(raw: str) -> list[CreditPack]:
    """The packs of a JSON list, cheapest first; raises ConfigError when malformed."""
    try:
        items = json.loads(raw)
    except ValueError:
        raise ConfigError(f"{ENV} is not valid JSON") from None
    if not isinstance(items, list):
        raise ConfigError(f"{ENV} must be a JSON list of packs")
    packs = []
    for item in items:
        if not isinstance(item, dict):
            raise ConfigError(f"{ENV}: each pack must be an object")
        price, credits = item.get("price_usd"), item.get("credits")
        valid_price = (
            isinstance(price, int | float)
            and not isinstance(price, bool)
            and math.isfinite(price)
            and price > 0
        )
        valid_credits = isinstance(credits, int) and not isinstance(credits, bool) and credits > 0
        if not (valid_price and valid_credits):
            raise ConfigError(f"{ENV}: each pack needs a positive price_usd and credits")
        packs.append(CreditPack(price_usd=float(price), credits=credits))  # type: ignore[arg-type]
    return sorted(packs, key=lambda pack: pack.price_usd)


def load_packs() -> list[CreditPack]:
    return parse_packs(env_str(ENV, DEFAULT_PACKS))
