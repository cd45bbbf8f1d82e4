#!/usr/bin/python3
"""Generate src/saslprep_tables.h, the Unicode data behind src/saslprep.c.

Two sources, because SASLprep mixes two Unicode versions exactly as
PostgreSQL does:

  * The stringprep tables of RFC 3454 (B.1, C.1.2, C.2-C.9, A.1, D.1, D.2)
    are frozen at Unicode 3.2. They come from Python's standard `stringprep`
    module, which carries RFC 3454's tables and Unicode 3.2 character data
    (unicodedata.ucd_3_2_0).
  * NFKC (decompositions, canonical combining classes, compositions) comes
    from the Unicode Character Database in --ucd (Debian package
    unicode-data: /usr/share/unicode), UnicodeData.txt and
    CompositionExclusions.txt.

Usage: contrib/unicode/gen-saslprep-tables.py [--ucd DIR] [-o src/saslprep_tables.h]
The output is committed: building pgpulse does not need this script or the
unicode-data package, only regenerating the tables does.
"""

import argparse
import os
import re
import stringprep
import sys

MAX_CP = 0x10FFFF

# Hangul syllables are composed and decomposed by arithmetic (Unicode 3.12)
S_BASE, L_BASE, V_BASE, T_BASE = 0xAC00, 0x1100, 0x1161, 0x11A7
L_COUNT, V_COUNT, T_COUNT = 19, 21, 28
N_COUNT = V_COUNT * T_COUNT
S_COUNT = L_COUNT * N_COUNT


def ranges_of(pred):
    """Inclusive [lo, hi] ranges of the code points where pred holds."""
    out = []
    start = None
    for cp in range(MAX_CP + 2):
        inside = cp <= MAX_CP and pred(cp)
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            out.append((start, cp - 1))
            start = None
    return out


def ch(cp):
    # stringprep's predicates take one character; surrogates are fine in a str
    return chr(cp)


def stringprep_tables():
    """The RFC 3454 tables SASLprep (RFC 4013) uses, as range lists."""
    prohibited_tables = [
        stringprep.in_table_c12, stringprep.in_table_c21, stringprep.in_table_c22,
        stringprep.in_table_c3, stringprep.in_table_c4, stringprep.in_table_c5,
        stringprep.in_table_c6, stringprep.in_table_c7, stringprep.in_table_c8,
        stringprep.in_table_c9,
    ]
    return {
        "saslprep_non_ascii_space": ("C.1.2 non-ASCII space characters: mapped to SPACE",
                                     ranges_of(lambda cp: stringprep.in_table_c12(ch(cp)))),
        "saslprep_mapped_to_nothing": ("B.1 commonly mapped to nothing",
                                       ranges_of(lambda cp: stringprep.in_table_b1(ch(cp)))),
        "saslprep_prohibited": ("C.1.2, C.2.1, C.2.2, C.3, C.4, C.5, C.6, C.7, C.8, C.9: "
                                "prohibited output",
                                ranges_of(lambda cp: any(t(ch(cp)) for t in prohibited_tables))),
        "saslprep_unassigned": ("A.1 unassigned code points in Unicode 3.2",
                                ranges_of(lambda cp: stringprep.in_table_a1(ch(cp)))),
        "saslprep_randalcat": ("D.1 characters with bidirectional property R or AL",
                               ranges_of(lambda cp: stringprep.in_table_d1(ch(cp)))),
        "saslprep_lcat": ("D.2 characters with bidirectional property L",
                          ranges_of(lambda cp: stringprep.in_table_d2(ch(cp)))),
    }


def read_ucd(ucd):
    """ccc and one-level decomposition (canonical flag, code points) per code point."""
    ccc = {}
    decomp = {}
    with open(os.path.join(ucd, "UnicodeData.txt"), encoding="ascii") as f:
        for line in f:
            fields = line.rstrip("\n").split(";")
            cp = int(fields[0], 16)
            if int(fields[3]):
                ccc[cp] = int(fields[3])
            if fields[5]:
                parts = fields[5].split()
                canonical = not parts[0].startswith("<")
                if not canonical:
                    parts = parts[1:]
                decomp[cp] = (canonical, [int(p, 16) for p in parts])
    exclusions = set()
    with open(os.path.join(ucd, "CompositionExclusions.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line:
                exclusions.add(int(line, 16))
    return ccc, decomp, exclusions


def ucd_version(ucd):
    with open(os.path.join(ucd, "UnicodeData.txt"), encoding="ascii"):
        pass
    with open(os.path.join(ucd, "CompositionExclusions.txt"), encoding="utf-8") as f:
        m = re.search(r"CompositionExclusions-(\d+\.\d+\.\d+)\.txt", f.readline())
    if not m:
        sys.exit("cannot tell the Unicode version of %s" % ucd)
    return m.group(1)


def hangul_decompose(cp):
    s = cp - S_BASE
    out = [L_BASE + s // N_COUNT, V_BASE + (s % N_COUNT) // T_COUNT]
    if s % T_COUNT:
        out.append(T_BASE + s % T_COUNT)
    return out


def full_decomposition(cp, decomp):
    """The full compatibility decomposition of cp (NFKD, before reordering)."""
    if S_BASE <= cp < S_BASE + S_COUNT:
        return hangul_decompose(cp)
    if cp not in decomp:
        return [cp]
    out = []
    for c in decomp[cp][1]:
        out.extend(full_decomposition(c, decomp))
    return out


def compositions(ccc, decomp, exclusions):
    """(first, second, composite) for every primary composite (UAX #15)."""
    pairs = []
    for cp, (canonical, parts) in decomp.items():
        if not canonical or len(parts) != 2 or cp in exclusions:
            continue
        # non-starter decompositions are excluded from composition too
        if ccc.get(cp, 0) or ccc.get(parts[0], 0):
            continue
        pairs.append((parts[0], parts[1], cp))
    return sorted(pairs)


def emit_ranges(out, name, comment, ranges):
    out.append("/* %s */" % comment)
    out.append("static const struct saslprep_range %s[] = {" % name)
    for lo, hi in ranges:
        out.append("\t{ 0x%04X, 0x%04X }," % (lo, hi))
    out.append("};")
    out.append("")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ucd", default="/usr/share/unicode",
                    help="directory holding UnicodeData.txt and CompositionExclusions.txt")
    ap.add_argument("-o", "--output", default="src/saslprep_tables.h")
    args = ap.parse_args()

    version = ucd_version(args.ucd)
    ccc, decomp, exclusions = read_ucd(args.ucd)

    out = []
    out.append("/*")
    out.append(" * saslprep_tables: Unicode data for src/saslprep.c. GENERATED by")
    out.append(" * contrib/unicode/gen-saslprep-tables.py: edit that, not this file.")
    out.append(" *")
    out.append(" * Stringprep tables (RFC 3454, Unicode 3.2): from Python %d.%d's stringprep module."
               % sys.version_info[:2])
    out.append(" * NFKC data: Unicode %s (UnicodeData.txt, CompositionExclusions.txt)." % version)
    out.append(" * Every table is sorted for binary search; ranges are inclusive.")
    out.append(" */")
    out.append("#ifndef PGPULSE_SASLPREP_TABLES_H")
    out.append("#define PGPULSE_SASLPREP_TABLES_H")
    out.append("")
    out.append("#include <stdint.h>")
    out.append("")
    out.append('#define SASLPREP_UNICODE_VERSION "%s"' % version)
    out.append("")
    out.append("struct saslprep_range {")
    out.append("\tuint32_t lo, hi;")
    out.append("};")
    out.append("")
    for name, (comment, ranges) in stringprep_tables().items():
        emit_ranges(out, name, comment, ranges)

    # canonical combining classes, as runs of equal non-zero class
    runs = []
    for cp in sorted(ccc):
        if runs and runs[-1][1] == cp - 1 and runs[-1][2] == ccc[cp]:
            runs[-1][1] = cp
        else:
            runs.append([cp, cp, ccc[cp]])
    out.append("/* canonical combining class, where not 0 */")
    out.append("struct saslprep_ccc_run {")
    out.append("\tuint32_t lo, hi;")
    out.append("\tuint8_t ccc;")
    out.append("};")
    out.append("static const struct saslprep_ccc_run saslprep_ccc[] = {")
    for lo, hi, c in runs:
        out.append("\t{ 0x%04X, 0x%04X, %d }," % (lo, hi, c))
    out.append("};")
    out.append("")

    # full compatibility decompositions, flattened into one array
    flat = []
    entries = []
    longest = 1
    for cp in sorted(decomp):
        full = full_decomposition(cp, decomp)
        entries.append((cp, len(flat), len(full)))
        flat.extend(full)
        longest = max(longest, len(full))
    if len(flat) > 0xFFFF:
        sys.exit("decomposition array too long for 16-bit offsets")
    out.append("/* the longest full compatibility decomposition of one code point */")
    out.append("#define SASLPREP_MAX_DECOMPOSITION %d" % max(longest, 3))
    out.append("")
    out.append("/* full compatibility decomposition (NFKD) of cp: saslprep_decomposed[offset..+len) */")
    out.append("struct saslprep_decomposition {")
    out.append("\tuint32_t cp;")
    out.append("\tuint16_t offset;")
    out.append("\tuint8_t len;")
    out.append("};")
    out.append("static const struct saslprep_decomposition saslprep_decompositions[] = {")
    for cp, off, n in entries:
        out.append("\t{ 0x%04X, %d, %d }," % (cp, off, n))
    out.append("};")
    out.append("static const uint32_t saslprep_decomposed[] = {")
    for i in range(0, len(flat), 8):
        out.append("\t" + " ".join("0x%04X," % c for c in flat[i:i + 8]))
    out.append("};")
    out.append("")

    out.append("/* canonical composition: first + second -> composite (Hangul excepted) */")
    out.append("struct saslprep_composition {")
    out.append("\tuint32_t first, second, composite;")
    out.append("};")
    out.append("static const struct saslprep_composition saslprep_compositions[] = {")
    for a, b, c in compositions(ccc, decomp, exclusions):
        out.append("\t{ 0x%04X, 0x%04X, 0x%04X }," % (a, b, c))
    out.append("};")
    out.append("")
    out.append("#endif")

    with open(args.output, "w", encoding="ascii") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
