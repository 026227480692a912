"""Unit tests of the manifest reader: YAML 1.2 core-schema semantics, and what it refuses (with positions).

``read_manifest`` has two readers (libyaml for speed, ruamel for positions); these tests pin down that they
mean the same thing, and that what they mean is YAML 1.2 (``no`` is text, ``1e3`` is a number).
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from ruamel.yaml import YAML

from mlops.errors import Category, Problem
from mlops.loader import yaml_fast
from mlops.loader.yaml_read import MAX_DEPTH, MAX_MANIFEST_BYTES, read_manifest


def read(text: str | bytes) -> Any:
    """The data of a snippet that must be valid."""
    data, problems = read_manifest("f.yaml", text.encode() if isinstance(text, str) else text)
    assert problems == [], [str(p) for p in problems]
    return data


def refused(text: str | bytes) -> Problem:
    """The one problem of a snippet that must be refused, checked to be a well-formed, positioned, one-line problem."""
    data, problems = read_manifest("f.yaml", text.encode() if isinstance(text, str) else text)
    assert data is None
    assert len(problems) == 1, problems
    problem = problems[0]
    assert problem.category is Category.UNREADABLE
    assert problem.line is not None and problem.col is not None, problem
    assert "\n" not in str(problem)
    return problem


def value(scalar: str) -> Any:
    return read(f"v: {scalar}\n")["v"]


# -- YAML 1.2 core schema --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["no", "on", "yes", "off", "y", "n", "No", "ON", "Yes", "OFF", "Y", "N"])
def test_yaml_1_1_booleans_are_strings(word: str) -> None:
    assert value(word) == word
    assert isinstance(value(word), str)


@pytest.mark.parametrize(
    ("scalar", "expected"),
    [("true", True), ("false", False), ("True", True), ("False", False), ("TRUE", True), ("FALSE", False)],
)
def test_true_and_false_are_booleans(scalar: str, expected: bool) -> None:
    assert value(scalar) is expected


@pytest.mark.parametrize(
    ("scalar", "expected"),
    [
        ("010", 10),  # YAML 1.1 read this as octal 8; 1.2 reads decimal
        ("0o17", 15),
        ("0x1F", 31),
        ("0x1f", 31),
        ("-12", -12),
        ("+7", 7),
        ("0", 0),
        ("123456789012345678901234567890", 123456789012345678901234567890),
    ],
)
def test_integers(scalar: str, expected: int) -> None:
    result = value(scalar)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    ("scalar", "expected"),
    [("1e3", 1000.0), ("1E3", 1000.0), ("-1.5", -1.5), (".5", 0.5), ("5.", 5.0), ("1.0e-2", 0.01), ("1.10", 1.1)],
)
def test_floats(scalar: str, expected: float) -> None:
    result = value(scalar)
    assert result == expected
    assert type(result) is float


@pytest.mark.parametrize(("scalar", "sign"), [(".inf", 1), (".Inf", 1), ("+.INF", 1), ("-.inf", -1), ("-.Inf", -1)])
def test_infinities(scalar: str, sign: int) -> None:
    assert value(scalar) == sign * math.inf


@pytest.mark.parametrize("scalar", [".nan", ".NaN", ".NAN"])
def test_not_a_number(scalar: str) -> None:
    assert math.isnan(value(scalar))


@pytest.mark.parametrize("scalar", ["~", "null", "Null", "NULL", ""])
def test_nulls(scalar: str) -> None:
    assert value(scalar) is None


@pytest.mark.parametrize("scalar", ["2024-01-01", "2024-01-01T10:00:00Z", "2024-01-01 10:00:00", "12:30:00"])
def test_dates_and_times_stay_strings(scalar: str) -> None:
    assert value(scalar) == scalar


@pytest.mark.parametrize(
    "scalar",
    # Not numbers in the 1.2 core schema (ruamel's own 1.2 resolver reads some of them as numbers; the spec does not).
    ["1_000", "0b101", "+0x1F", "-0o17", "0X1F", "0o8", "0x", "0o", "1,000", "1e", "e3", ".", "+", "..inf"],
)
def test_not_numbers_in_the_core_schema_stay_strings(scalar: str) -> None:
    assert value(scalar) == scalar


@pytest.mark.parametrize("quoted", ["'123'", '"true"', "'null'", '"no"', "'1e3'", '"~"', "''"])
def test_quoted_scalars_are_always_strings(quoted: str) -> None:
    assert value(quoted) == quoted[1:-1]


def test_explicit_core_tags_are_honoured() -> None:
    assert read("a: !!str 3\nb: !!int '7'\nc: !!float 1\nd: !!bool 'true'\ne: !!null ''\n") == {
        "a": "3",
        "b": 7,
        "c": 1.0,
        "d": True,
        "e": None,
    }


# -- the fast reader and ruamel read valid YAML the same way ---------------------------------------------------------

SNIPPETS = [
    "a: 1\n",
    "a: no\nb: on\nc: yes\nd: off\ne: y\nf: n\n",
    "a: true\nb: false\nc: True\nd: FALSE\n",
    "a: 010\nb: 0o17\nc: 0x1F\nd: -12\ne: +7\n",
    "a: 1e3\nb: -1.5\nc: .5\nd: 5.\ne: 1.0E-2\n",
    "a: .inf\nb: -.Inf\nc: +.INF\nd: .nan\n",
    "a: ~\nb: null\nc:\nd: Null\n",
    "list: [1, two, 3.0, null, true]\n",
    "map: {a: 1, b: [x, y], c: {d: e}}\n",
    "- a\n- b\n- - c\n  - d\n",
    "a:\n- 1\n- 2\nb:\n  - 3\n",
    "s1: 'single ''quoted'''\ns2: \"double \\\"quoted\\\" \\u00e9 \\t tab \\n end\"\n",
    "lit: |\n  line one\n  line two\n\nafter: x\n",
    "strip: |-\n  text\n\nkeep: |+\n  text\n\n",
    "fold: >\n  folded\n  text\n\n  new paragraph\n",
    "fold_strip: >-\n  a\n  b\nend: 1\n",
    "indented_literal: |2\n    two extra spaces\n",
    "plain: this is\n  a multi-line\n  plain scalar\n",
    "# leading comment\na: 1 # trailing\n# middle\nb: [1, 2] # after a flow list\n",
    "unicode: héllo wörld ✓ 日本語 😀\n",
    "ключ: значение\nemoji_😀: 1\n",
    "url: http://example.com/a?b=c#frag\nmail: a@example.com\n",
    "colon: 'a: b'\ntime: \"10:00\"\nplain_colon: a:b\nhash: a#b\n",
    "dash: a - b\nnot_a_list: -a\n",
    "neg: -1\nnegf: -0.0\nzero: 0\n",
    "big: 123456789012345678901234567890\n",
    "quoted_num: '123'\nquoted_bool: \"true\"\nquoted_null: 'null'\n",
    "empty_list: []\nempty_map: {}\nempty_str: ''\nempty_dq: \"\"\n",
    "nested:\n  deeper:\n    deepest:\n      - {k: v}\n      - [1, [2, [3]]]\n",
    "---\na: 1\n...\n",
    "---\n# only the document start marker\nkey: value\n",
    "? explicit key\n: value\n",
    'dq: "multi\n  line double"\n',
    "sq: 'multi\n\n  line single'\n",
    "seq_of_maps:\n  - name: a\n    value: 1\n  - name: b\n    value: [2, 3]\n",
    "'quoted key': 1\n\"dq key\": 2\nkey with spaces: 3\n'<<': 4\n",
    "version: 1.10\nstring_version: '1.10'\nsemver: 1.2.3\n",
    'cron: "0 3 * * 1"\nstar: a*b\n',
    "flow_multiline: [\n  a,\n  b,\n]\nflow_map: {\n  k: v,\n}\n",
    "crlf: 1\r\nnext: two\r\nlast: [a, b]\r\n",
    "trailing_spaces: value   \nother: x  \n",
    "description: R&D spent 100% on A&B\n",
    "tab_in_quotes: \"a\tb\"\nsingle: 'c\td'\n",
    "exclaim: Hello world!\nbang: a!b\n",
    "top_level_list_item_map:\n- a: 1\n  b: 2\n- c: 3\n",
]


def _ruamel_safe_1_2(text: str) -> Any:
    loader = YAML(typ="safe", pure=True)
    loader.version = (1, 2)
    return loader.load(text)


def _plain(node: Any) -> Any:
    """ruamel round-trip data as plain dicts, lists and scalars."""
    if isinstance(node, dict):
        return {_plain(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    for kind in (int, float, str):
        if isinstance(node, kind):
            return kind(node)
    return node


def _same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (1 is not 1.0 nor True) and NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_there_are_about_forty_snippets() -> None:
    assert len(SNIPPETS) >= 40
    assert len(set(SNIPPETS)) == len(SNIPPETS)


@pytest.mark.parametrize("text", SNIPPETS)
def test_fast_reader_agrees_with_ruamel_safe_yaml_1_2(text: str) -> None:
    ours = read(text)
    assert _same(ours, _ruamel_safe_1_2(text)), (ours, _ruamel_safe_1_2(text))


@pytest.mark.parametrize("text", SNIPPETS)
def test_fast_reader_agrees_with_ruamel_round_trip(text: str) -> None:
    # The round-trip reader is the one that gives positions, so it must read every valid file too.
    assert _same(read(text), _plain(YAML(typ="rt").load(text)))


@pytest.mark.parametrize(
    ("text", "ruamel_says"),
    [
        # ruamel's YAML 1.2 resolver keeps a few YAML 1.1 habits; the 1.2 core schema has none of these.
        ("a: 2024-01-01\n", "date"),
        ("a: 1_000\n", 1000),
        ("a: 0b101\n", 5),
        ("a: +0x1F\n", 31),
    ],
)
def test_where_ruamel_strays_from_the_core_schema_the_reader_follows_the_spec(text: str, ruamel_says: Any) -> None:
    theirs = _ruamel_safe_1_2(text)["a"]
    assert type(theirs).__name__ == ruamel_says or theirs == ruamel_says  # documents the difference
    assert read(text)["a"] == text[3:-1]


def test_careful_path_gives_the_same_data_as_the_fast_path() -> None:
    # An '&' in a string sends the file to the careful reader first; the data must not change because of it.
    plain = "a: no\nb: 1e3\nc: [010, 0x1F]\nd: text\n"
    assert read(plain) == read(plain.replace("text", "R&D")) | {"d": "text"}


def test_pure_python_parser_reads_like_libyaml() -> None:
    class PureLoader(
        yaml_fast._PurePythonParser,
        yaml_fast._Yaml12Constructor,
        yaml_fast._Yaml12Resolver,
    ):
        def __init__(self, stream: str) -> None:
            yaml_fast._PurePythonParser.__init__(self, stream)
            yaml_fast._Yaml12Constructor.__init__(self)
            yaml_fast._Yaml12Resolver.__init__(self)

    for text in SNIPPETS:
        loader = PureLoader(text)
        try:
            assert _same(loader.construct_document(loader.get_single_node()), read(text)), text
        finally:
            loader.dispose()


# -- refused, with a position ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "where"),
    [
        ("a: ok\nb: x\x01y\n", "U+0001 (a control character)", (2, 5)),  # ASCII text: the short class
        ("a: café\nb: x\x01y\n", "U+0001 (a control character)", (2, 5)),  # other text: the full class
        ("a: café\nb: x\x85y\n", "U+0085 (NEL, a line break only in YAML 1.1)", (2, 5)),
        ("a: café\nb: x\ufffey\n", "U+FFFE (a non-character)", (2, 5)),
    ],
)
def test_characters_yaml_forbids_are_named_with_their_position(text: str, code: str, where: tuple[int, int]) -> None:
    problem = refused(text)
    assert f"character {code} is not allowed in a manifest" in problem.message
    assert (problem.line, problem.col) == where


@pytest.mark.parametrize("text", ["a: café b\n", "a: naïve \u2026 text\n", "a: 😀\n"])
def test_text_beyond_ascii_that_yaml_allows_is_read(text: str) -> None:
    assert read(text)["a"] == text[3:-1]


def test_empty_file() -> None:
    problem = refused("")
    assert (problem.line, problem.col) == (1, 1)
    assert "empty file" in problem.message


@pytest.mark.parametrize("text", ["# just a comment\n", "---\n", "---\n...\n", "\n\n   \n", "\ufeff"])
def test_file_without_content_is_empty(text: str) -> None:
    assert "empty file" in refused(text).message


def test_null_document_is_data_not_an_error_here() -> None:
    # "~" is a document (null); the schema, not the reader, says it is not a manifest.
    assert read("~\n") is None


def test_too_big() -> None:
    text = "a: b\n" + "# padding\n" * (MAX_MANIFEST_BYTES // 10 + 1)
    assert len(text.encode()) > MAX_MANIFEST_BYTES
    problem = refused(text)
    assert (problem.line, problem.col) == (1, 1)
    assert f"limited to {MAX_MANIFEST_BYTES:,} bytes" in problem.message


def test_exactly_the_limit_is_read() -> None:
    text = "a: b\n#" + "x" * (MAX_MANIFEST_BYTES - 7) + "\n"
    assert len(text.encode()) == MAX_MANIFEST_BYTES
    assert read(text) == {"a": "b"}


def test_non_utf8_column_counts_characters_not_bytes() -> None:
    problem = refused("a: ok\nb: ééé ".encode() + b"\xff\n")
    assert (problem.line, problem.col) == (2, 8)
    assert "byte 0xff" in problem.message
    assert "UTF-8" in problem.message


def test_latin1_file() -> None:
    problem = refused("name: café\n".encode("latin-1"))
    assert (problem.line, problem.col) == (1, 10)


def test_utf16_file() -> None:
    problem = refused("a: b\n".encode("utf-16"))
    assert (problem.line, problem.col) == (1, 1)


def test_bom_at_start_is_allowed_and_positions_ignore_it() -> None:
    assert read(b"\xef\xbb\xbfa: no\n") == {"a": "no"}
    problem = refused(b"\xef\xbb\xbfa: [1\nb: 2\n")
    assert problem.line == 2


@pytest.mark.parametrize(
    ("text", "line", "col", "code"),
    [
        ("a: 1\nb: x\x00y\n", 2, 5, "U+0000"),
        ("a: x\x07\n", 1, 5, "U+0007"),
        ("a: x\x7f\n", 1, 5, "U+007F"),
        ("a: x\x85y\nb: 2\n", 1, 5, "U+0085"),
        ("a: 1\r\nb: x\u2028y\r\n", 2, 5, "U+2028"),
        ('a: 1\nb: "x\u2029"\n', 2, 6, "U+2029"),
        ("a: 1\n\ufeffb: 2\n", 2, 1, "U+FEFF"),
        ("a: \ufffe\n", 1, 4, "U+FFFE"),
    ],
)
def test_forbidden_characters(text: str, line: int, col: int, code: str) -> None:
    problem = refused(text)
    assert (problem.line, problem.col) == (line, col)
    assert f"character {code}" in problem.message
    assert "remove it" in problem.message


def test_syntax_error() -> None:
    problem = refused("a: 1\nb: [1, 2\nc: 3\n")
    assert (problem.line, problem.col) == (3, 2)
    assert problem.message.startswith("invalid YAML: ")


def test_unclosed_quote() -> None:
    problem = refused('a: "open\nb: 2\n')
    assert problem.line == 3
    assert "quoted scalar" in problem.message


@pytest.mark.parametrize(
    ("text", "line", "col"),
    [
        ("a:\n\tb: 1\n", 2, 1),  # indentation
        ("a:\n  b: 1\n  \tc: 2\n", 3, 3),  # after spaces
        ("a:\tb\n", 1, 3),  # after a colon: valid YAML 1.2, but ruamel (positions) refuses it, so we do too
        ("a: x\ty\n", 1, 5),  # inside a plain scalar
        ("a: 1\t# comment\n", 1, 5),
        ("- a\n-\tb\n", 2, 2),
        ("a: |\n\tx\n", 2, 1),
    ],
)
def test_tabs(text: str, line: int, col: int) -> None:
    problem = refused(text)
    assert (problem.line, problem.col) == (line, col)
    assert problem.message.startswith("tab character")


def test_tab_in_flow_and_quotes_is_fine() -> None:
    assert read('a: [1,\t2]\nb: "x\ty"\n') == {"a": [1, 2], "b": "x\ty"}


@pytest.mark.parametrize(
    ("text", "line", "col", "key"),
    [
        ("a: 1\nb: 2\na: 3\n", 3, 1, "a"),
        ("m:\n  k: 1\n  j: 2\n  k: 3\n", 4, 3, "k"),
        ("m: {k: 1, k: 2}\n", 1, 11, "k"),
        ("'a': 1\na: 2\n", 2, 1, "a"),
    ],
)
def test_duplicate_keys(text: str, line: int, col: int, key: str) -> None:
    problem = refused(text)
    assert (problem.line, problem.col) == (line, col)
    assert problem.message == f"duplicate key {key!r}: each key may appear once in a mapping"


def test_same_key_in_different_mappings_is_fine() -> None:
    assert read("a: {k: 1}\nb: {k: 2}\n") == {"a": {"k": 1}, "b": {"k": 2}}


def test_anchor_and_alias() -> None:
    problem = refused("a: &x 1\nb: *x\n")
    assert (problem.line, problem.col) == (1, 4)
    assert "anchor '&x'" in problem.message
    assert "not allowed" in problem.message


def test_billion_laughs_is_refused_without_expanding() -> None:
    lines = ['lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        aliases = ", ".join([f"*lol{level - 1}"] * 10)
        lines.append(f"lol{level}: &lol{level} [{aliases}]")
    bomb = "\n".join(lines) + "\n"  # 10**10 strings if expanded
    started = time.perf_counter()
    problem = refused(bomb)
    assert time.perf_counter() - started < 30  # a generous bound: expanding would never finish
    assert (problem.line, problem.col) == (1, 7)
    assert "anchor '&lol0'" in problem.message


def test_alias_without_anchor() -> None:
    problem = refused("a: 1\nb: *nowhere\n")
    assert problem.line == 2


@pytest.mark.parametrize(
    ("text", "line", "col", "message"),
    [
        ("a: !!python/object:os.system x\n", 1, 4, "YAML tag '!!python/object:os.system' is not allowed"),
        ("a: !!python/object/apply:os.system ['echo hi']\n", 1, 4, "'!!python/object/apply:os.system' is not allowed"),
        ("a: !custom 1\n", 1, 4, "YAML tag '!custom' is not allowed"),
        ("a: ! 1\n", 1, 4, "YAML tag '!' is not allowed"),
        ("a: {b: !, c: 1}\n", 1, 8, "YAML tag '!"),  # ruamel reads the tag as '!,'; refused all the same
        ("a: !!timestamp 2024-01-01\n", 1, 4, "YAML tag '!!timestamp' is not allowed"),
        ("a: !!binary aGk=\n", 1, 4, "YAML tag '!!binary' is not allowed"),
        ("a: !!set {x}\n", 1, 4, "YAML tag '!!set' is not allowed"),
        ("%TAG !e! tag:example.com,2000:\n---\na: !e!x 1\n", 3, 4, "'tag:example.com,2000:x' is not allowed"),
        ("a: !!int abc\n", 1, 4, "'abc' is not a valid !!int"),
        ("a: !!float x\n", 1, 4, "'x' is not a valid !!float"),
        ("a: !!bool yes\n", 1, 4, "'yes' is not a valid !!bool"),
        ("a: !!bool maybe\n", 1, 4, "'maybe' is not a valid !!bool"),
        ("a: !!null x\n", 1, 4, "'x' is not a valid !!null"),
        ("a: !!map [1]\n", 1, 4, "'!!map' cannot be put on a list"),
        ("a: !!str {b: 1}\n", 1, 4, "'!!str' cannot be put on a mapping"),
    ],
)
def test_tags(text: str, line: int, col: int, message: str) -> None:
    problem = refused(text)
    assert (problem.line, problem.col) == (line, col)
    assert message in problem.message


def test_two_documents() -> None:
    problem = refused("a: 1\n---\nb: 2\n")
    assert (problem.line, problem.col) == (2, 1)
    assert "second YAML document" in problem.message


def test_a_trailing_empty_document_is_still_a_second_document() -> None:
    assert refused("a: 1\n---\n").line == 2


@pytest.mark.parametrize("version", ["1.1", "1.0", "2.0"])
def test_yaml_version_directive_other_than_1_2(version: str) -> None:
    problem = refused(f"%YAML {version}\n---\na: no\n")
    assert (problem.line, problem.col) == (1, 1)
    assert f"%YAML {version} directive" in problem.message
    assert "YAML 1.2" in problem.message


def test_yaml_1_2_directive_is_fine() -> None:
    assert read("%YAML 1.2\n---\na: no\n") == {"a": "no"}


def test_merge_key() -> None:
    problem = refused("base:\n  <<: {a: 1}\n  b: 2\n")
    assert (problem.line, problem.col) == (2, 3)
    assert "merge key '<<'" in problem.message


@pytest.mark.parametrize(
    ("text", "line", "col", "what"),
    [("? [a, b]\n: 1\n", 1, 3, "a list"), ("m:\n  {a: 1}: 2\n", 2, 3, "a mapping"), ("[x]: 1\n", 1, 1, "a list")],
)
def test_collection_as_key(text: str, line: int, col: int, what: str) -> None:
    problem = refused(text)
    assert (problem.line, problem.col) == (line, col)
    assert problem.message.startswith(f"{what} used as a mapping key")


def test_nesting_at_the_limit_is_read() -> None:
    text = "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"
    assert read(text) is not None


@pytest.mark.parametrize("depth", [MAX_DEPTH, 500, 5000, 100_000])
def test_too_deep_flow_nesting(depth: int) -> None:
    problem = refused("a: " + "[" * depth + "]" * depth + "\n")
    assert (problem.line, problem.col) == (1, 3 + MAX_DEPTH)
    assert f"nested more than {MAX_DEPTH} levels" in problem.message


def test_too_deep_block_nesting() -> None:
    text = "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 1)) + "  " * (MAX_DEPTH + 1) + "v\n"
    problem = refused(text)
    assert problem.line == MAX_DEPTH + 1
    assert f"nested more than {MAX_DEPTH} levels" in problem.message


def test_too_deep_nesting_on_the_careful_path_too() -> None:
    # An '&' sends the file to ruamel first, which must not recurse into the depth.
    problem = refused("a: R&D\nb: " + "[" * 3000 + "]" * 3000 + "\n")
    assert (problem.line, problem.col) == (2, 3 + MAX_DEPTH)


def test_a_list_at_the_top_is_data() -> None:
    # Not a reader error: the schema says "expected a mapping" (see test_bad_input).
    assert read("- a\n- b\n") == ["a", "b"]
