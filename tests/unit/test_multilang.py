"""SuperOffice's multi-language texts (portal/services/multilang.py): parsing, picking, embedded texts."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portal.services import multilang
from portal.services.multilang import build, from_browser, localize, parse, pick

# --- the documented forms -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ('US:"English"NO:"Norsk"', {"US": "English", "NO": "Norsk"}),  # spec §3: no separator
    ('NO:"Kundegruppe";US:"Customer group"', {"NO": "Kundegruppe", "US": "Customer group"}),  # the sample's form
    ('US:"English"', {"US": "English"}),
    ('  US:"a" ; NO:"b";  ', {"US": "a", "NO": "b"}),  # white space around separators, a trailing ;
    ('US:"a"\nNO:"b"', {"US": "a", "NO": "b"}),
    ('US:"Say ""hi"""', {"US": 'Say "hi"'}),  # a quote inside is written twice
    ('US:"""";NO:""', {"US": '"', "NO": ""}),
    ('US:"a;NO:""b"""', {"US": 'a;NO:"b"'}),  # ; and XX:" inside the quotes are text
    ('US:"C:\\temp\\"', {"US": "C:\\temp\\"}),  # a backslash is just a backslash
    ('US:"first";US:"second"', {"US": "first"}),  # a code given twice: the first counts
    ('US:"x";XY:"y"', {"US": "x", "XY": "y"}),  # unknown codes are kept when one is known
])
def test_parse_reads_the_multi_language_form(text, expected):
    assert parse(text) == expected
    assert list(parse(text)) == list(expected)  # in the order given


@pytest.mark.parametrize("text", [
    "", "Customer group", 'Name: "Acme"', 'Error: "x" not found', 'NAME:"Acme"', 'ID:"42"', 'OK:"done"',
    'us:"lower case"', 'US: "space after the colon"', 'US :"space before"', 'US:"unterminated', 'US:"a"b',
    'US:"a" trailing words', 'US:"a";;NO:"b"', 'US:"Say "hi""', 'US:"a"NO', ':"', '"US:"a""',
    'ÆØ:"x"', 'US:"a";NO:"b"x',
])
def test_ordinary_texts_are_not_taken_for_the_form(text):
    assert parse(text) is None
    assert pick(text, "NO") == text
    assert localize(text, "NO") == text


def test_a_message_around_the_form_is_not_the_form_but_embeds_it():
    assert parse('before US:"a";NO:"b"') is None
    assert pick('before US:"a";NO:"b"', "NO") == 'before US:"a";NO:"b"'
    assert localize('before US:"a";NO:"b"', "NO") == "before b"


def test_parse_of_what_is_not_a_string_is_none():
    assert parse(None) is None and parse(42) is None and parse(b'US:"x"') is None


# --- picking --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("language, expected", [
    ("NO", "Kundegruppe"), ("no", "Kundegruppe"), (" NO ", "Kundegruppe"), ("US", "Customer group"),
    ("GB", "Customer group"),  # no GB text: US
    ("DE", "Customer group"), (None, "Customer group"), ("", "Customer group"), ("nb-NO", "Customer group"),
    (42, "Customer group"),
])
def test_pick_falls_back_to_us(language, expected):
    assert pick('US:"Customer group";NO:"Kundegruppe"', language) == expected


def test_pick_falls_back_to_the_first_language_given_without_us():
    text = 'SE:"Kundgrupp";NO:"Kundegruppe"'
    assert pick(text, "DE") == "Kundgrupp"
    assert pick(text, "NO") == "Kundegruppe"


def test_an_empty_text_counts_as_missing():
    assert pick('NO:"";US:"Customer group"', "NO") == "Customer group"
    assert pick('US:"";NO:"Kundegruppe"', "DE") == "Kundegruppe"
    assert pick('US:"";NO:""', "NO") == ""


def test_aliases_stand_for_the_same_language():
    assert pick('US:"Customer group";GE:"Kundengruppe"', "DE") == "Kundengruppe"
    assert pick('NB:"Kundegruppe";EN:"Customer group"', "NO") == "Kundegruppe"
    assert pick('NB:"Kundegruppe";EN:"Customer group"', "FR") == "Customer group"  # EN stands in for US


def test_pick_of_a_plain_text_is_the_text():
    assert pick("Customer group", "NO") == "Customer group"


# --- texts embedded in a longer message -----------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ('Test failed: US:"Wrong password";NO:"Feil passord"', "Test failed: Feil passord"),
    ('US:"Customer group";NO:"Kundegruppe" (CUSTOMERGROUP) is mandatory', "Kundegruppe (CUSTOMERGROUP) is mandatory"),
    ('Fields: US:"A";NO:"Á", US:"B"NO:"Ɓ".', "Fields: Á, Ɓ."),
    ('The ERP said (US:"offline";NO:"frakoblet").', "The ERP said (frakoblet)."),
])
def test_localize_picks_inside_a_message(text, expected):
    assert localize(text, "NO") == expected


@pytest.mark.parametrize("text", [
    'Test failed: US:"Wrong password"',  # one segment inside a sentence could be anything: left alone
    'Test failed: XUS:"a";NO:"b"',  # glued to a word
    'Test failed: US:"a";NO:"b"and more',
    'Say "US:"a";NO:"b""',  # in quotes
    'Test failed: ID:"1";OK:"2"',  # no known code
])
def test_localize_leaves_doubtful_embedded_texts_alone(text):
    assert localize(text, "NO") == text


def test_localize_passes_what_is_not_a_string():
    assert localize(None, "NO") is None
    assert localize(3, "NO") == 3


# --- the browser's languages ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tags, expected", [
    (["nb-NO"], "NO"), (["no"], "NO"), (["nn"], "NO"), (["NB_no"], "NO"), (["en-GB"], "GB"), (["en-US"], "US"),
    (["en"], "US"), (["en-AU"], "US"), (["sv-SE"], "SE"), (["da"], "DK"), (["de-AT"], "DE"), (["nl"], "NL"),
    (["fr-CA"], "FR"), (["se"], None), (["pt-BR", "da"], "DK"), (["*"], None), ([], None), (["x-klingon"], None),
    ([None, "", "nb"], "NO"),
])
def test_from_browser(tags, expected):
    assert from_browser(tags) == expected


# --- properties -----------------------------------------------------------------------------------------------------

codes = st.text(alphabet=string.ascii_uppercase, min_size=2, max_size=2)
known = st.sampled_from(sorted(multilang.KNOWN))
texts = st.text(max_size=40)


@st.composite
def multi(draw) -> dict[str, str]:
    first = draw(known)
    others = draw(st.dictionaries(codes, texts, max_size=5))
    result = {first: draw(texts)}
    for code, value in others.items():
        result.setdefault(code, value)
    return result


@settings(max_examples=300)
@given(multi())
def test_build_then_parse_round_trips(texts_by_code):
    assert parse(build(texts_by_code)) == texts_by_code


@settings(max_examples=300)
@given(multi(), st.sampled_from([";", "", " ; ", "\n", ";\t"]), st.sampled_from(["", " ", "\n"]))
def test_round_trips_whatever_the_separators(texts_by_code, separator, pad):
    text = separator.join(f'{code}:"{value.replace(chr(34), chr(34) * 2)}"' for code, value in texts_by_code.items())
    assert parse(pad + text + pad) == texts_by_code


@settings(max_examples=300)
@given(multi(), st.sampled_from(sorted(multilang.SUPPORTED)))
def test_pick_of_a_built_text_follows_the_fallbacks(texts_by_code, language):
    picked = pick(build(texts_by_code), language)
    if texts_by_code.get(language):
        assert picked == texts_by_code[language]
    elif language not in multilang.ALIASES and texts_by_code.get("US"):
        assert picked == texts_by_code["US"]
    assert picked in texts_by_code.values()


@settings(max_examples=300)
@given(multi(), st.text(alphabet=string.ascii_letters + " .,:", max_size=20),
       st.tuples(st.sampled_from(".,!?)"), st.text(alphabet=" .,:!?", max_size=4)).map("".join))
def test_an_embedded_text_is_picked_in_place(texts_by_code, prefix, suffix):
    if len(texts_by_code) < 2:
        texts_by_code = {**texts_by_code, "ZZ": "z"}
    prefix = prefix + " " if prefix else ""
    message = prefix + build(texts_by_code) + suffix
    assert localize(message, "NO") == prefix + multilang.choose(texts_by_code, "NO") + suffix


@settings(max_examples=500)
@given(st.text(alphabet=st.characters(blacklist_characters='"')))
def test_texts_without_a_double_quote_pass_through(text):
    assert parse(text) is None
    assert pick(text, "NO") == text
    assert localize(text, "NO") == text


@settings(max_examples=500)
@given(st.text(alphabet=string.ascii_letters + string.digits + ' :;"\n\\', max_size=60))
def test_ordinary_texts_are_unchanged_unless_they_are_all_in_the_form(text):
    if parse(text) is None:
        assert pick(text, "NO") == text


@settings(max_examples=1000)
@given(st.one_of(st.text(), st.text(alphabet='USNOGB:";\\ x"', max_size=40)),
       st.one_of(st.none(), st.text(max_size=5), st.integers()))
def test_never_raises(text, language):
    result = parse(text)
    assert result is None or isinstance(result, dict)
    assert isinstance(pick(text, language), str)
    assert isinstance(localize(text, language), str)
    assert isinstance(multilang.normalize(language), str)


def test_long_texts_take_linear_time():
    import time

    runs = 'US:"a";NO:"b"' * 20000
    started = time.perf_counter()
    assert parse(runs) == {"US": "a", "NO": "b"}
    assert localize(runs + "x", "NO") == runs + "x"  # glued to a word: left alone, and every code read once
    assert localize("see " + runs, "NO") == "see b"
    assert localize('x US:"' * 20000, "NO") == 'x US:"' * 20000
    assert time.perf_counter() - started < 5
