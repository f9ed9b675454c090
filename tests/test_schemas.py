"""SingleLineText: what one-line text refuses and what it keeps (issue 11, item 12)."""

import pytest
from pydantic import TypeAdapter, ValidationError

from src.schemas import SingleLineText

single_line = TypeAdapter(SingleLineText)


@pytest.mark.parametrize(
    "character",
    [chr(code) for code in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]]
    + [
        "\u200b",
        "\u2028",
        "\u2029",
        *map(chr, range(0x202A, 0x202F)),
        *map(chr, range(0x2066, 0x206A)),
        "\ufeff",
    ],
)
def test_control_invisible_and_bidirectional_override_characters_are_refused(character):
    with pytest.raises(ValidationError):
        single_line.validate_python(f"Ada{character}")


@pytest.mark.parametrize(
    "text",
    [
        "Ada Lovelace",
        "Zoë Ångström",
        "\u05d3\u05d5\u05d3 (\u200fDavid)",
        "\u0645\u06cc\u200c\u062e",
        "👩\u200d🔬 Ada",
    ],
    ids=["ascii", "accents", "rtl-mark", "zero-width-non-joiner", "zero-width-joiner"],
)
def test_ordinary_names_in_any_script_are_kept(text):
    assert single_line.validate_python(text) == text
