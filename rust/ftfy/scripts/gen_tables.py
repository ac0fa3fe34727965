"""Generate rust/ftfy/src/tables.rs from Python's ftfy 6.3.1 and Python's own Unicode database.

Run from the repository root with the Python that has ftfy 6.3.1 installed:

    .venv/bin/python rust/ftfy/scripts/gen_tables.py > rust/ftfy/src/tables.rs

Everything the Rust port needs that is data rather than logic comes from here, read from ftfy's own
modules (so it cannot drift from them) and from `unicodedata` (Unicode 14.0.0 in Python 3.11):

- the single-byte codecs ftfy tries (latin-1, the sloppy Windows code pages, iso-8859-2, macroman,
  cp437) and strict windows-1252, as byte -> char tables;
- ftfy's regular expressions (BADNESS_RE, UTF8_DETECTOR_RE, ANSI_RE, ALTERED_UTF8_RE, LOSSY_UTF8_RE),
  translated from Python's own parse tree (`re._parser`) into `regex`-crate syntax in which every
  character class is spelled out as explicit code point ranges, computed by Python's `re` itself
  (so `\\s`, `\\w`, `\\d` mean exactly what they mean in Python 3.11, whatever Unicode version the
  Rust side was built with);
- HTML_ENTITIES, `html`'s numeric-reference tables, LIGATURES, WIDTH_MAP, CONTROL_CHARS;
- the Unicode 14.0.0 data for NFC: canonical combining classes, full canonical decompositions, the
  primary composites, and the set of characters that can change under NFC (for a quick check).
"""

import html
import re
import sys
import unicodedata

import ftfy
from ftfy import badness, chardata, fixes

assert ftfy.__version__ == "6.3.1", ftfy.__version__
assert unicodedata.unidata_version == "14.0.0", unicodedata.unidata_version

MAXCP = 0x110000
ALL_CHARS = "".join(chr(c) for c in range(MAXCP) if not 0xD800 <= c <= 0xDFFF)
ALL_BYTES = bytes(range(256))

_parser = re._parser  # Python 3.11
_c = re._constants

out = []


def emit(line=""):
    out.append(line)


def rust_str(s):
    return '"' + "".join(rust_char_escape(ch) for ch in s) + '"'


def rust_char_escape(ch):
    c = ord(ch)
    if ch == '"':
        return '\\"'
    if ch == "\\":
        return "\\\\"
    if 0x20 <= c < 0x7F:
        return ch
    return "\\u{%X}" % c


def rust_char(ch):
    c = ord(ch)
    if ch == "'":
        return "'\\''"
    if ch == "\\":
        return "'\\\\'"
    if 0x20 <= c < 0x7F:
        return "'" + ch + "'"
    return "'\\u{%X}'" % c


def ranges_of(codepoints):
    cps = sorted(set(codepoints))
    rs = []
    for c in cps:
        if rs and rs[-1][1] == c - 1:
            rs[-1][1] = c
        elif rs and rs[-1][1] == 0xD7FF and c == 0xE000:
            rs[-1][1] = c  # surrogates never occur in Rust strings: bridge the gap
        else:
            rs.append([c, c])
    return rs


# ---------------------------------------------------------------- regex translation


def class_set(items, is_bytes):
    """The set of code points (or byte values) matched by a parsed character class."""
    negate = False
    members = set()
    for op, av in items:
        if op is _c.NEGATE:
            negate = True
        elif op is _c.LITERAL:
            members.add(av)
        elif op is _c.RANGE:
            members.update(range(av[0], av[1] + 1))
        elif op is _c.CATEGORY:
            members.update(category_set(av, is_bytes))
        else:
            raise ValueError(f"unsupported class item {op} {av}")
    universe = range(256) if is_bytes else [ord(ch) for ch in ALL_CHARS]
    if negate:
        return {c for c in universe if c not in members}
    return members


_category_cache = {}


def category_set(cat, is_bytes):
    key = (cat, is_bytes)
    if key not in _category_cache:
        src = {
            _c.CATEGORY_DIGIT: r"\d",
            _c.CATEGORY_NOT_DIGIT: r"\D",
            _c.CATEGORY_SPACE: r"\s",
            _c.CATEGORY_NOT_SPACE: r"\S",
            _c.CATEGORY_WORD: r"\w",
            _c.CATEGORY_NOT_WORD: r"\W",
        }[cat]
        if is_bytes:
            rx = re.compile(src.encode())
            _category_cache[key] = {b for b in range(256) if rx.fullmatch(bytes([b]))}
        else:
            rx = re.compile(src)
            _category_cache[key] = {ord(ch) for ch in rx.findall(ALL_CHARS)}
    return _category_cache[key]


def set_to_rust(cps, is_bytes):
    parts = []
    for a, b in ranges_of(cps):
        if is_bytes:
            ea, eb = "\\x%02X" % a, "\\x%02X" % b
        else:
            ea, eb = "\\x{%X}" % a, "\\x{%X}" % b
        parts.append(ea if a == b else f"{ea}-{eb}")
    return "[" + "".join(parts) + "]"


def lit_to_rust(c, is_bytes):
    if is_bytes:
        return "\\x%02X" % c
    return "\\x{%X}" % c


def translate(tree, is_bytes):
    """Translate a parsed Python pattern (a SubPattern or list of nodes) into regex-crate syntax."""
    parts = []
    for op, av in tree:
        if op is _c.LITERAL:
            parts.append(lit_to_rust(av, is_bytes))
        elif op is _c.NOT_LITERAL:
            parts.append(set_to_rust(class_set([(_c.NEGATE, None), (_c.LITERAL, av)], is_bytes), is_bytes))
        elif op is _c.IN:
            parts.append(set_to_rust(class_set(av, is_bytes), is_bytes))
        elif op is _c.CATEGORY:
            parts.append(set_to_rust(category_set(av, is_bytes), is_bytes))
        elif op is _c.ANY:
            # Python's `.` without DOTALL: anything but a newline
            parts.append("[^\\n]" if not is_bytes else "[^\\x0A]")
        elif op is _c.BRANCH:
            _, alternatives = av
            parts.append("(?:" + "|".join(translate(alt, is_bytes) for alt in alternatives) + ")")
        elif op is _c.SUBPATTERN:
            group, add_flags, del_flags, sub = av
            assert add_flags in (0, re.VERBOSE, re.UNICODE, re.VERBOSE | re.UNICODE) and del_flags == 0, av
            parts.append("(?:" + translate(sub, is_bytes) + ")")
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            lo, hi, sub = av
            body = "(?:" + translate(sub, is_bytes) + ")"
            if hi is _c.MAXREPEAT:
                q = "{%d,}" % lo
            elif lo == hi:
                q = "{%d}" % lo
            else:
                q = "{%d,%d}" % (lo, hi)
            parts.append(body + q + ("?" if op is _c.MIN_REPEAT else ""))
        elif op is _c.AT:
            if av is _c.AT_BEGINNING or av is _c.AT_BEGINNING_STRING:
                parts.append("^" if av is _c.AT_BEGINNING else "\\A")
            else:
                raise ValueError(f"unsupported anchor {av}")
        else:
            raise ValueError(f"unsupported node {op} {av}")
    return "".join(parts)


def translate_pattern(rx):
    is_bytes = isinstance(rx.pattern, bytes)
    tree = _parser.parse(rx.pattern, rx.flags)
    nodes = list(tree)
    lookbehind = None
    if nodes and nodes[0][0] is _c.ASSERT_NOT:
        direction, sub = nodes[0][1]
        assert direction == -1
        sub = list(sub)
        assert len(sub) == 1 and sub[0][0] in (_c.IN, _c.LITERAL), sub
        if sub[0][0] is _c.IN:
            lookbehind = class_set(sub[0][1], is_bytes)
        else:
            lookbehind = {sub[0][1]}
        nodes = nodes[1:]
    for op, _ in nodes:
        if op in (_c.ASSERT, _c.ASSERT_NOT):
            raise ValueError("look-around other than a leading negative look-behind")
    pat = translate(nodes, is_bytes)
    if is_bytes:
        pat = "(?s-u)" + pat
    return pat, lookbehind


def emit_regex(name, rx, doc):
    pat, lookbehind = translate_pattern(rx)
    emit(f"/// {doc}")
    emit(f"pub(crate) const {name}: &str = {rust_str(pat)};")
    return lookbehind


def emit_ranges(name, cps, doc, ty="char"):
    rs = ranges_of(cps)
    emit(f"/// {doc}")
    emit(f"pub(crate) static {name}: [(u32, u32); {len(rs)}] = [")
    line = []
    for a, b in rs:
        line.append("(0x%X, 0x%X)," % (a, b))
        if len(line) == 8:
            emit("    " + " ".join(line))
            line = []
    if line:
        emit("    " + " ".join(line))
    emit("];")


# ---------------------------------------------------------------- header

emit("// @generated by rust/ftfy/scripts/gen_tables.py from Python %s, ftfy %s, Unicode %s. Do not edit."
     % (sys.version.split()[0], ftfy.__version__, unicodedata.unidata_version))
emit("// Derived from ftfy 6.3.1 (Apache-2.0, see LICENSE-ftfy): chardata.py, badness.py, fixes.py,")
emit("// bad_codecs/sloppy.py; and from Python's html and unicodedata modules.")
emit("#![allow(clippy::all)]")
emit()

# ---------------------------------------------------------------- codecs

encodings = list(chardata.CHARMAP_ENCODINGS)
emit("/// ftfy's CHARMAP_ENCODINGS, in the order they are tried.")
emit(f"pub(crate) const CHARMAP_ENCODINGS: [&str; {len(encodings)}] = [" + ", ".join(rust_str(e) for e in encodings) + "];")
emit()

decode_tables = {}
for enc in encodings:
    table = ALL_BYTES.decode(enc)
    assert len(table) == 256
    # ASCII decodes to itself, except byte 0x1A in the sloppy codecs (U+FFFD)
    for b in range(0x80):
        if enc.startswith("sloppy") and b == 0x1A:
            assert table[b] == "\ufffd"
        else:
            assert table[b] == chr(b), (enc, b)
    assert len(set(table)) == 256, enc  # a bijection: encoding is the inverse table
    decode_tables[enc] = table

emit("/// byte -> char of each of CHARMAP_ENCODINGS (Python's codecs and ftfy's sloppy codecs).")
emit(f"pub(crate) static DECODE: [[char; 256]; {len(encodings)}] = [")
for enc in encodings:
    emit(f"    // {enc}")
    emit("    [")
    t = decode_tables[enc]
    for row in range(0, 256, 16):
        emit("        " + " ".join(rust_char(ch) + "," for ch in t[row:row + 16]))
    emit("    ],")
emit("];")
emit()

# the characters possible_encoding accepts, per encoding, as a bit mask; and the byte each encodes to
charmask = {}
for i, enc in enumerate(encodings):
    rx = chardata.ENCODING_REGEXES[enc]
    accepted = set()
    for ch in decode_tables[enc]:
        if rx.match(ch):
            accepted.add(ch)
    # every char the regex accepts must be in the table (the class is built from it)
    for ch in ALL_CHARS[:0x3000]:
        if rx.match(ch):
            assert ch in accepted, (enc, ch)
    for ch in accepted:
        assert ch.encode(enc) == bytes([decode_tables[enc].index(ch)]), (enc, ch)
        charmask.setdefault(ord(ch), 0)
        charmask[ord(ch)] |= 1 << i
# sanity: the ascii regex
assert chardata.ENCODING_REGEXES["ascii"].match("\x00\x7f") and not chardata.ENCODING_REGEXES["ascii"].match("\x80")
allmask = (1 << len(encodings)) - 1
for c in range(0x80):
    if c != 0x1A:
        assert charmask[c] == allmask, c
emit("/// possible_encoding: for every non-ASCII char (and U+001A) that some encoding can encode, the bit")
emit("/// mask of CHARMAP_ENCODINGS that can (bit i = CHARMAP_ENCODINGS[i]), and its byte in each.")
nonascii = sorted(c for c in charmask if c >= 0x80 or c == 0x1A)
emit(f"pub(crate) static ENCODABLE: [(char, u16, [u8; {len(encodings)}]); {len(nonascii)}] = [")
for c in nonascii:
    bs = []
    for i, enc in enumerate(encodings):
        if charmask[c] >> i & 1:
            bs.append(decode_tables[enc].index(chr(c)))
        else:
            bs.append(0)
    emit(f"    ({rust_char(chr(c))}, 0x{charmask[c]:03X}, [" + ", ".join("0x%02X" % b for b in bs) + "]),")
emit("];")
emit()

# strict windows-1252 (for the latin-1 -> windows-1252 step)
w1252 = []
for b in range(256):
    try:
        w1252.append(bytes([b]).decode("windows-1252"))
    except UnicodeDecodeError:
        w1252.append(None)
emit("/// Python's strict windows-1252 decoder for bytes 0x80-0x9F ('\\0' where it raises).")
emit("pub(crate) static WINDOWS_1252_C1: [char; 32] = [")
emit("    " + " ".join((rust_char(ch) if ch is not None else "'\\0'") + "," for ch in w1252[0x80:0xA0]))
emit("];")
for b in range(0xA0, 0x100):
    assert w1252[b] == chr(b)
for b in range(0x80):
    assert w1252[b] == chr(b)
emit()

# ---------------------------------------------------------------- regexes

emit_regex("BADNESS_RE", badness.BADNESS_RE, "ftfy.badness.BADNESS_RE")
emit()
# UTF8_DETECTOR_RE starts with a look-behind, `(?<! [utf8_continuation_strict])`, which the regex
# crate lacks. Its matches are those of `^(?:BODY)` at the start of the text, and elsewhere the BODY
# part of the matches of `[^utf8_continuation_strict](?:BODY)` (the one character before the match
# consumed instead of looked at), which keeps the search linear.
body, lb = translate_pattern(chardata.UTF8_DETECTOR_RE)
assert lb is not None
not_lb = {ord(ch) for ch in ALL_CHARS} - lb
emit("/// ftfy.chardata.UTF8_DETECTOR_RE where a match starts the text.")
emit(f"pub(crate) const UTF8_DETECTOR_AT_START_RE: &str = {rust_str('^(?:' + body + ')')};")
emit("/// ftfy.chardata.UTF8_DETECTOR_RE elsewhere: its look-behind `(?<! [utf8_continuation_strict])` as one")
emit("/// consumed character outside that class, followed by the match itself.")
emit(f"pub(crate) const UTF8_DETECTOR_AFTER_RE: &str = {rust_str(set_to_rust(not_lb, False) + '(?:' + body + ')')};")
emit()
emit_regex("ANSI_RE", fixes.ANSI_RE, "ftfy.fixes.ANSI_RE")
emit_regex("ALTERED_UTF8_RE", chardata.ALTERED_UTF8_RE, "ftfy.chardata.ALTERED_UTF8_RE (bytes)")
emit_regex("LOSSY_UTF8_RE", chardata.LOSSY_UTF8_RE, "ftfy.chardata.LOSSY_UTF8_RE (bytes)")
emit_regex("HTML_ENTITY_RE", chardata.HTML_ENTITY_RE, "ftfy.chardata.HTML_ENTITY_RE")
emit_regex("C1_CONTROL_RE", chardata.C1_CONTROL_RE, "ftfy.chardata.C1_CONTROL_RE")
emit_regex("SINGLE_QUOTE_RE", chardata.SINGLE_QUOTE_RE, "ftfy.chardata.SINGLE_QUOTE_RE")
emit_regex("DOUBLE_QUOTE_RE", chardata.DOUBLE_QUOTE_RE, "ftfy.chardata.DOUBLE_QUOTE_RE")
# A_GRAVE_WORD_RE has a look-ahead: fixes.rs implements it by hand; check it is what we think it is
assert fixes.A_GRAVE_WORD_RE.pattern == b"\xc3 (?! |quele|quela|quilo|s )", fixes.A_GRAVE_WORD_RE.pattern
emit()

# ---------------------------------------------------------------- HTML

ents = sorted(chardata.HTML_ENTITIES.items(), key=lambda kv: kv[0].encode())
emit("/// ftfy.chardata.HTML_ENTITIES (`&name;` -> text), sorted by name (bytes) for a binary search.")
emit(f"pub(crate) static HTML_ENTITIES: [(&str, &str); {len(ents)}] = [")
for k, v in ents:
    emit(f"    ({rust_str(k)}, {rust_str(v)}),")
emit("];")
emit()
icr = sorted(html._invalid_charrefs.items())
emit("/// html._invalid_charrefs")
emit(f"pub(crate) static INVALID_CHARREFS: [(u32, char); {len(icr)}] = [")
for k, v in icr:
    emit(f"    (0x{k:X}, {rust_char(v)}),")
emit("];")
icp = sorted(html._invalid_codepoints)
emit("/// html._invalid_codepoints")
emit(f"pub(crate) static INVALID_CODEPOINTS: [u32; {len(icp)}] = [")
for i in range(0, len(icp), 10):
    emit("    " + " ".join("0x%X," % c for c in icp[i:i + 10]))
emit("];")
emit()

# ---------------------------------------------------------------- translate tables


def emit_translate(name, mapping, doc):
    items = sorted(mapping.items())
    emit(f"/// {doc}")
    emit(f"pub(crate) static {name}: [(char, &str); {len(items)}] = [")
    for k, v in items:
        emit(f"    ({rust_char(chr(k))}, {rust_str(v)}),")
    emit("];")


emit_translate("LIGATURES", chardata.LIGATURES, "ftfy.chardata.LIGATURES")
emit_translate("WIDTH_MAP", chardata.WIDTH_MAP, "ftfy.chardata.WIDTH_MAP (NFKC of U+3000 and U+FF01-U+FFEF, Unicode 14)")
assert all(v is None for v in chardata.CONTROL_CHARS.values())
emit_ranges("CONTROL_CHARS", list(chardata.CONTROL_CHARS), "ftfy.chardata.CONTROL_CHARS (removed)")
emit()

# ---------------------------------------------------------------- NFC (Unicode 14.0.0)

ccc = {}
nfd = {}
composites = []
nfc_maybe_changes = set()
seconds = set()
for ch in ALL_CHARS:
    c = ord(ch)
    k = unicodedata.combining(ch)
    if k:
        ccc[c] = k
    if 0xAC00 <= c <= 0xD7A3:
        continue  # Hangul syllables: algorithmic
    d = unicodedata.normalize("NFD", ch)
    if d != ch:
        nfd[c] = d
        dec = unicodedata.decomposition(ch)
        parts = dec.split()
        if parts and not parts[0].startswith("<") and len(parts) == 2:
            if unicodedata.normalize("NFC", ch) == ch:
                composites.append((int(parts[0], 16), int(parts[1], 16), c))
                seconds.add(int(parts[1], 16))
    if unicodedata.normalize("NFC", ch) != ch:
        nfc_maybe_changes.add(c)
nfc_maybe_changes |= set(ccc)
nfc_maybe_changes |= seconds
nfc_maybe_changes |= set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))  # Hangul V and T jamo
assert min(nfc_maybe_changes) >= 0x300

emit_ranges("NFC_QUICK_CHECK_NOT_YES", nfc_maybe_changes,
            "Characters whose presence means NFC may change the text (ccc != 0, NFC_QC = No or Maybe).")
ccc_items = sorted(ccc.items())
# compress into ranges of equal class
cr = []
for c, k in ccc_items:
    if cr and cr[-1][1] == c - 1 and cr[-1][2] == k:
        cr[-1][1] = c
    else:
        cr.append([c, c, k])
emit("/// Canonical combining classes (non-zero), as (first, last, class) ranges.")
emit(f"pub(crate) static CCC: [(u32, u32, u8); {len(cr)}] = [")
for a, b, k in cr:
    emit(f"    (0x{a:X}, 0x{b:X}, {k}),")
emit("];")
emit("/// Full canonical decompositions (NFD of one character), Hangul syllables excepted.")
emit(f"pub(crate) static NFD: [(char, &str); {len(nfd)}] = [")
for c in sorted(nfd):
    emit(f"    ({rust_char(chr(c))}, {rust_str(nfd[c])}),")
emit("];")
composites.sort()
emit("/// Primary composites: (first, second) -> composed, sorted by (first, second).")
emit(f"pub(crate) static COMPOSE: [(char, char, char); {len(composites)}] = [")
for a, b, c in composites:
    emit(f"    ({rust_char(chr(a))}, {rust_char(chr(b))}, {rust_char(chr(c))}),")
emit("];")

print("\n".join(out))
