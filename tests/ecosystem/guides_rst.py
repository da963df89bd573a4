"""The guides (docs/*.md, what GitHub and the README link to) as the collection docsite's extra docs.

antsibull-docs takes extra docs only as reStructuredText under docs/docsite/rst/, listed in
docs/docsite/extra-docs.yml. This writes docs/docsite/rst/<guide>.rst from each docs/<guide>.md with pandoc
(from the pypandoc-binary package), gives each page the label antsibull-docs expects
(ansible_collections.llmops.ollama.docsite.<guide>) and turns links into what works on the docsite: another guide
becomes a :ref:, a heading of the page a section reference, a file of the repository its address on GitHub.

    python3 tests/ecosystem/guides_rst.py           # write the pages
    python3 tests/ecosystem/guides_rst.py --check   # exit 1 if a page is missing or differs from its guide
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import pypandoc
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
RST = DOCS / "docsite" / "rst"
LABEL = "ansible_collections.llmops.ollama.docsite.%s"


def slug(heading):
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def headings(markdown):
    out, fenced = {}, False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            title = line.lstrip("#").strip()
            out[slug(title)] = title.replace("`", "")
    return out


def pandoc(args, text):
    return subprocess.run([pypandoc.get_pandoc_path()] + args, input=text, capture_output=True, text=True,
                          check=True).stdout


def convert(path, guides, repository):
    """The page for one guide: pandoc's tree of the Markdown, links rewritten in it, written as RST."""
    markdown = path.read_text()
    anchors = headings(markdown)

    def target(url):
        page, _sep, anchor = url.partition("#")
        if re.match(r"^[a-z][a-z0-9+.-]*:", url):
            return None
        if not page:
            if anchor not in anchors:
                raise SystemExit("docs/%s: no heading for the link #%s" % (path.name, anchor))
            return "`%s <%s_>`__", anchors[anchor]
        if page.endswith(".md") and "/" not in page and page[:-3] in guides:
            return ":ref:`%s <%s>`", LABEL % page[:-3]
        return "`%s <%s>`__", "%s/blob/main/%s" % (repository, (path.parent / page).resolve().relative_to(REPO))

    def walk(node):
        if isinstance(node, list):
            return [walk(n) for n in node]
        if not isinstance(node, dict):
            return node
        if node.get("t") == "Link":
            _attr, inlines, (url, _title) = node["c"]
            rewritten = target(url)
            if rewritten:
                text = pandoc(["-f", "json", "-t", "plain"], json.dumps(dict(doc, blocks=[
                    {"t": "Plain", "c": inlines}]))).strip()
                return {"t": "RawInline", "c": ["rst", rewritten[0] % (text, rewritten[1])]}
        if node.get("t") == "CodeBlock":
            (ident, classes, attrs), code = node["c"]
            if classes == ["json"]:
                try:
                    json.loads(code)
                except ValueError:  # a fragment of a document: shown as is, not checked as JSON
                    node["c"][0] = [ident, ["text"], attrs]
        return {k: walk(v) for k, v in node.items()}

    doc = json.loads(pandoc(["-f", "gfm-gfm_auto_identifiers", "-t", "json"], markdown))
    doc["blocks"] = walk(doc["blocks"])
    rst = pandoc(["-f", "json", "-t", "rst", "--wrap=preserve"], json.dumps(doc))
    head = (".. Made from docs/%s by tests/ecosystem/guides_rst.py: edit the Markdown, then run `make docs`.\n\n"
            ".. _%s:\n\n" % (path.name, LABEL % path.stem))
    return head + rst


def main(argv):
    check = "--check" in argv
    guides = sorted(p.stem for p in DOCS.glob("*.md"))
    repository = yaml.safe_load((REPO / "galaxy.yml").read_text())["repository"].rstrip("/")
    wanted = {RST / ("%s.rst" % g): convert(DOCS / ("%s.md" % g), guides, repository) for g in guides}
    stale = [p for p in RST.glob("*.rst") if p not in wanted]
    differ = [p for p, text in wanted.items() if not p.is_file() or p.read_text() != text]
    if check:
        for p in differ + stale:
            print("%s is not made from its guide: run `make docs`" % p.relative_to(REPO))
        return 1 if differ or stale else 0
    RST.mkdir(parents=True, exist_ok=True)
    for p in differ:
        p.write_text(wanted[p])
    for p in stale:
        p.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
