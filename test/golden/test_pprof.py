#!/usr/bin/python3
"""`memray transform pprof` decoded by an independent reader: protoc with google/pprof's published
profile.proto (committed next to this file). Checks the sample types and the samples of the
golden Python capture (values announced by views_target.py).

usage: test_pprof.py MEMRAY CAPTURE PROFILE.PROTO
"""

import gzip
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import mrtest  # noqa: E402


def decode(proto, data):
    p = subprocess.run(["protoc", "--decode", "perftools.profiles.Profile",
                        "-I", os.path.dirname(proto), os.path.basename(proto)],
                       input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise SystemExit("protoc failed: " + p.stderr.decode())
    return p.stdout.decode()


def parse(text):
    """The decoded text format -> (strings, sample types, samples, locations, functions)."""
    strings = [s.encode("latin-1").decode("unicode_escape")
               for s in re.findall(r'^string_table: "(.*)"$', text, re.M)]
    # Tiny parser for protoc's text output: nested blocks "name {" ... "}".
    stack = [("root", {})]
    for line in text.splitlines():
        line = line.strip()
        if line.endswith("{"):
            node = {}
            stack[-1][1].setdefault(line[:-1].strip(), []).append(node)
            stack.append((line, node))
        elif line == "}":
            stack.pop()
        elif ":" in line:
            k, v = line.split(":", 1)
            stack[-1][1].setdefault(k.strip(), []).append(v.strip())
    return strings, stack[0][1]


def main():
    memray, capture, proto = sys.argv[1:4]
    if shutil.which("protoc") is None:
        mrtest.skip("protoc not installed (Debian package protobuf-compiler)")
    c = mrtest.Checker("pprof")
    work = mrtest.scratch_dir("pprof")
    results = {}
    for view, args in (("hwm", []), ("leaks", ["--leaks"]),
                       ("temporary", ["--temporary-allocation-threshold", "0"])):
        out = os.path.join(work, view + ".pb.gz")
        p = mrtest.run([memray, "transform", "pprof", "-o", out, *args, capture])
        c.equal(p.returncode, 0, "transform pprof %s exit code" % view)
        with open(out, "rb") as f:
            raw = f.read()
        c.check(raw[:2] == b"\x1f\x8b", "%s: gzip stream" % view)
        strings, root = parse(decode(proto, gzip.decompress(raw)))
        c.equal(strings[0] if strings else None, "", "%s: string_table[0] is empty" % view)
        types = [(strings[int(t["type"][0])], strings[int(t["unit"][0])])
                 for t in root.get("sample_type", [])]
        funcs = {f["id"][0]: strings[int(f["name"][0])] for f in root.get("function", [])}
        locs = {l["id"][0]: (funcs[l["line"][0]["function_id"][0]], int(l["line"][0]["line"][0]))
                for l in root.get("location", [])}
        samples = {}
        for s in root.get("sample", []):
            leaf = locs[s["location_id"][0]]
            count, size = (int(v) for v in s["value"])
            labels = {strings[int(l["key"][0])]: strings[int(l["str"][0])] for l in s["label"]}
            c.equal(labels.get("allocator"), "MALLOC", "%s: allocator label" % view)
            old = samples.get(leaf, (0, 0))
            samples[leaf] = (old[0] + count, old[1] + size)
        default = strings[int(root["default_sample_type"][0])]
        results[view] = (types, samples, default)

    inuse = [("inuse_objects", "count"), ("inuse_space", "bytes")]
    types, samples, default = results["hwm"]
    c.equal(types, inuse, "hwm: sample types")
    c.equal(default, "inuse_space", "hwm: default sample type")
    c.equal(samples, {("peak.<locals>.<listcomp>", 17): (3, 9000003), ("leak", 13): (2, 400002)},
            "hwm: samples by leaf frame")
    types, samples, _ = results["leaks"]
    c.equal(types, inuse, "leaks: sample types")
    c.equal(samples, {("leak", 13): (3, 500003)}, "leaks: samples")
    types, samples, default = results["temporary"]
    c.equal(types, [("alloc_objects", "count"), ("alloc_space", "bytes")],
            "temporary: sample types")
    c.equal(default, "alloc_space", "temporary: default sample type")
    c.equal(samples.get(("temporaries", 23)), (5, 250005), "temporary: temporaries")
    c.finish()


if __name__ == "__main__":
    main()
