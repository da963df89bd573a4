"""What the benchmarks share: the machine's description, and their sections of bench/results.md."""
import os
import re


def machine():
    return "the CI machine, %d cores, %.0f GiB" % (
        os.cpu_count(), os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30)


def write_section(path, name, text):
    """Put `text` in `path` between this benchmark's markers, keeping the other benchmarks' sections."""
    start, end = "<!-- %s -->" % name, "<!-- /%s -->" % name
    block = "%s\n%s%s\n" % (start, text, end)
    old = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end) + "\n?", re.S)
    new = pattern.sub(lambda _m: block, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + block
    with open(path, "w") as out:
        out.write(new)
