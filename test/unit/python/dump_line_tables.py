"""Dumps, for many real code objects, the raw line table and the line CPython itself gives for
every instruction offset, so that memray's own decoder can be checked against the interpreter.

Output, one record per code object:
    code <qualified name>
    first <co_firstlineno>
    table <line table as hex>
    line <offset> <line from co_lines/findlinestarts or -1> <line from PyCode_Addr2Line>
    end
"""
import ctypes
import dis
import sys
import types

addr2line = ctypes.pythonapi.PyCode_Addr2Line
addr2line.argtypes = [ctypes.py_object, ctypes.c_int]
addr2line.restype = ctypes.c_int


def sample_loops(n):
    total = 0
    for i in range(n):
        if i % 3 == 0:
            continue
        while total < i:
            total += 1
    else:
        total -= 1
    return total


def sample_try(x):
    try:
        y = 1 / x
    except ZeroDivisionError as exc:
        y = str(exc)
    except (TypeError,
            ValueError):
        y = None
    else:
        y = y * 2
    finally:
        x = 0
    with open(__file__) as f:
        f.read(1)
    return y


def sample_comprehensions(items):
    squares = [i * i for i in items if i]
    table = {k: [v for v in range(k)]
             for k in items}
    gen = (x
           for x in squares)
    lam = lambda a, b=2: (a +
                          b)
    return squares, table, list(gen), lam(1)


def sample_multiline(a, b, c):
    result = max(
        a,
        b,
        c,
    ) + min(a,
            b) * (
        c
        - a
    )
    data = {
        "a": a,
        "b": [b,
              c],
    }
    return result, data


class Sample:
    def method(self, x):
        def inner(y):
            return x + y
        return inner(self.__class__.__name__ and 1)

    async def coroutine(self):
        return await self.other()

    def generator(self):
        yield 1
        yield from range(3)


def make_generated_sources():
    """Functions with line jumps > 127 in both directions and offsets well past 255 and 65535."""
    parts = ["def big_jumps(a):\n", "    x = a\n"]
    parts += ["\n"] * 300
    parts.append("    y = x + 1\n")
    parts += ["\n"] * 1000
    parts.append("    return f(x,\n")
    parts += ["\n"] * 200
    parts.append("             y)\n")
    parts.append("def long_body(a):\n")
    for i in range(3500):
        parts.append("    a = a + %d * a - (a // 3)\n" % i)
    parts.append("    return a\n")
    return "".join(parts)


def all_code(code):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from all_code(const)


def line_map(code):
    """offset -> line as Python's own line iterator reports it (None -> -1)."""
    lines = {}
    if hasattr(code, "co_lines"):
        for start, end, line in code.co_lines():
            for off in range(start, end, 2):
                lines[off] = -1 if line is None else line
    else:
        starts = list(dis.findlinestarts(code))
        for idx, (start, line) in enumerate(starts):
            end = starts[idx + 1][0] if idx + 1 < len(starts) else len(code.co_code)
            for off in range(start, end, 2):
                lines[off] = line
    return lines


def dump(code, out):
    table = code.co_linetable if sys.version_info >= (3, 10) else code.co_lnotab
    name = getattr(code, "co_qualname", code.co_name)
    out.write("code %s\nfirst %d\ntable %s\n" % (name, code.co_firstlineno, table.hex()))
    lines = line_map(code)
    # Both CPython's lookup and ours scan the table from the start, so check every offset of
    # ordinary functions but only a sample of the huge generated one (every range boundary
    # and every 26th byte), which still covers offsets past 65535.
    size = len(code.co_code)
    boundaries = set()
    previous = None
    for off in range(0, size, 2):
        if lines.get(off) != previous:
            boundaries.update((off - 2, off))
            previous = lines.get(off)
    for off in range(0, size, 2):
        if size > 8000 and off % 26 != 0 and off not in boundaries:
            continue
        out.write("line %d %d %d\n" % (off, lines.get(off, -1), addr2line(code, off)))
    out.write("end\n")


def main():
    roots = [sample_loops, sample_try, sample_comprehensions, sample_multiline,
             Sample.method, Sample.coroutine, Sample.generator]
    codes = [f.__code__ for f in roots]
    codes.append(compile(make_generated_sources(), "<generated>", "exec"))
    # Real-world code: every function of a few sizeable stdlib modules.
    import argparse, json.decoder, tokenize
    for module in (argparse, json.decoder, tokenize):
        with open(module.__file__, encoding="utf-8") as f:
            codes.append(compile(f.read(), module.__file__, "exec"))
    out = sys.stdout
    out.write("version %d.%d\n" % sys.version_info[:2])
    count = 0
    for root in codes:
        for code in all_code(root):
            dump(code, out)
            count += 1
    out.write("total %d\n" % count)


main()
