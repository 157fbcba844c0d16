"""The listing rules of each kind of instrument: what its attributes must say.

`live_hog` (priced per kg of live weight, `price_unit` "kg", a lot is `lot_size` kg):

- `grade`: "1", "2" or "3";
- `delivery_hub`: the hub where lots are delivered, 1-200 characters;
- `head_weight_min_kg`, `head_weight_max_kg`: the per-head weight band, whole kg,
  1 <= min < max <= 500, both or neither (a delivery's average weight must lie in it);
- `vietgap_required`, `farm_code_required`: traceability requirements, true or false (default
  true): a delivery into custody must then carry a VietGAP certificate, a farm code.

Each is checked when given.

`ocop` (One Commune One Product goods), every attribute required:

| attribute | rule |
| --- | --- |
| `stars` | 3, 4 or 5 (1-2 stars: `OCOP_STARS_TOO_LOW`) |
| `product_group` | one of `OCOP_GROUPS` (the six OCOP product groups) |
| `producer_type` | one of `PRODUCER_TYPES` |
| `province` | 1-200 characters |
| `certificate_number` | 1-64 characters |
| `certification_date` | YYYY-MM-DD |
| `certificate_expires_on` | computed: 36 months after certification (a given one must agree) |

A certificate is valid until 00:00 Vietnam time on its expiry date; listing an expired one is
refused with `CERTIFICATE_EXPIRED`. Other attribute problems are `INVALID_ATTRIBUTE`.
"""

from __future__ import annotations

import calendar
import re
from datetime import date

import msgspec

from exchange.instruments import AttributeValue, Instrument, InstrumentKind
from exchange.sessions import NS_PER_DAY, VIETNAM_UTC_OFFSET_NS

OCOP_GROUPS = (
    "food",
    "drinks",
    "herbal_products",
    "textiles_garments",
    "souvenirs_furniture_decoration",
    "rural_tourism_services",
)
PRODUCER_TYPES = ("enterprise", "cooperative", "cooperative_group", "household_business")
HOG_GRADES = ("1", "2", "3")
MIN_OCOP_STARS = 3
CERTIFICATE_MONTHS = 36
MAX_HEAD_WEIGHT_KG = 500
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

Problem = tuple[str, str]  # (stable code, message)


def _invalid(message: str) -> Problem:
    return ("INVALID_ATTRIBUTE", message)


def parse_date(raw: AttributeValue | None) -> date | None:
    if not isinstance(raw, str) or not _DATE.fullmatch(raw):
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


def add_months(day: date, months: int) -> date:
    """The same day `months` later; the month's last day when it has no such day (29 Feb)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def vietnam_midnight_ns(day: date) -> int:
    """UTC nanoseconds of 00:00 in Vietnam on `day`."""
    return (day.toordinal() - date(1970, 1, 1).toordinal()) * NS_PER_DAY - VIETNAM_UTC_OFFSET_NS


def vietnam_date(time_ns: int) -> date:
    return date.fromordinal(
        date(1970, 1, 1).toordinal() + (time_ns + VIETNAM_UTC_OFFSET_NS) // NS_PER_DAY
    )


def certificate_expiry_ns(instrument: Instrument) -> int | None:
    """When an OCOP instrument's certificate expires (None: it has none)."""
    expires = parse_date(instrument.attributes.get("certificate_expires_on"))
    return vietnam_midnight_ns(expires) if expires is not None else None


def _text(attributes: dict[str, AttributeValue], key: str, limit: int = 200) -> str | None:
    value = attributes.get(key)
    if isinstance(value, str) and len(value.strip()) > 0 and len(value) <= limit:
        return value
    return None


def _live_hog_problem(instrument: Instrument) -> Problem | None:
    attributes = instrument.attributes
    if instrument.price_unit != "kg":
        return _invalid("live hogs are priced per kg of live weight: price_unit must be kg")
    if "grade" in attributes and attributes["grade"] not in HOG_GRADES:
        return _invalid(f"grade must be one of {', '.join(HOG_GRADES)}")
    if "delivery_hub" in attributes and _text(attributes, "delivery_hub") is None:
        return _invalid("delivery_hub must be 1-200 characters")
    low, high = attributes.get("head_weight_min_kg"), attributes.get("head_weight_max_kg")
    if low is not None or high is not None:
        valid = all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high))
        if not valid or not 1 <= low < high <= MAX_HEAD_WEIGHT_KG:  # type: ignore[operator]
            return _invalid(
                "head_weight_min_kg and head_weight_max_kg must be whole kg, "
                f"1 <= min < max <= {MAX_HEAD_WEIGHT_KG}"
            )
    for flag in ("vietgap_required", "farm_code_required"):
        if flag in attributes and not isinstance(attributes[flag], bool):
            return _invalid(f"{flag} must be true or false")
    return None


def _ocop_problem(instrument: Instrument, now_ns: int) -> Problem | None:
    attributes = instrument.attributes
    stars = attributes.get("stars")
    if not isinstance(stars, int) or isinstance(stars, bool) or not 1 <= stars <= 5:
        return _invalid("stars must be a whole number 1-5")
    if stars < MIN_OCOP_STARS:
        return ("OCOP_STARS_TOO_LOW", f"only OCOP goods of {MIN_OCOP_STARS} stars or more list")
    if attributes.get("product_group") not in OCOP_GROUPS:
        return _invalid(f"product_group must be one of {', '.join(OCOP_GROUPS)}")
    if attributes.get("producer_type") not in PRODUCER_TYPES:
        return _invalid(f"producer_type must be one of {', '.join(PRODUCER_TYPES)}")
    if _text(attributes, "province") is None:
        return _invalid("province must be 1-200 characters")
    if _text(attributes, "certificate_number", 64) is None:
        return _invalid("certificate_number must be 1-64 characters")
    certified = parse_date(attributes.get("certification_date"))
    if certified is None:
        return _invalid("certification_date must be a date YYYY-MM-DD")
    if certified > vietnam_date(now_ns):  # also keeps the expiry's year within the calendar
        return _invalid("certification_date must not be in the future")
    expires = add_months(certified, CERTIFICATE_MONTHS)
    given = attributes.get("certificate_expires_on")
    if given is not None and parse_date(given) != expires:
        return _invalid(f"certificate_expires_on must be {expires.isoformat()} (36 months)")
    if now_ns >= vietnam_midnight_ns(expires):
        return ("CERTIFICATE_EXPIRED", f"the OCOP certificate expired on {expires.isoformat()}")
    return None


def attribute_problem(instrument: Instrument, now_ns: int) -> Problem | None:
    """Why the instrument's attributes do not meet its kind's listing rules, or None."""
    if instrument.kind is InstrumentKind.LIVE_HOG:
        return _live_hog_problem(instrument)
    return _ocop_problem(instrument, now_ns)


def normalized(instrument: Instrument) -> Instrument:
    """The instrument as listed: an OCOP certificate's expiry date written in."""
    if instrument.kind is not InstrumentKind.OCOP:
        return instrument
    certified = parse_date(instrument.attributes.get("certification_date"))
    assert certified is not None
    expires = add_months(certified, CERTIFICATE_MONTHS).isoformat()
    attributes = {**instrument.attributes, "certificate_expires_on": expires}
    return msgspec.structs.replace(instrument, attributes=attributes)


def requires(instrument: Instrument, flag: str) -> bool:
    """A live-hog traceability requirement (true unless the listing says false)."""
    return (
        instrument.kind is InstrumentKind.LIVE_HOG and instrument.attributes.get(flag) is not False
    )


__all__ = [
    "OCOP_GROUPS",
    "PRODUCER_TYPES",
    "attribute_problem",
    "certificate_expiry_ns",
    "normalized",
    "requires",
    "vietnam_date",
]
