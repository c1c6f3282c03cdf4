"""MkDocs hook: docstrings are written for Sphinx-style readers (``:func:`run```,
``text::``); on these pages the roles become plain code and ``::`` a colon."""

import re

ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj):(?=<code>)")
LITERAL_COLONS = re.compile(r"::(</p>)")


def on_page_content(html, **kwargs):
    return LITERAL_COLONS.sub(r":\1", ROLE.sub("", html))
