"""MkDocs hook: the config reference (docs/config.md) generated from the config schema.

``<!-- config-reference -->`` in ``config.md`` is replaced by one table per key group, built
from :func:`dm_ssl.config.describe_keys` at every ``mkdocs build``, so the page cannot drift
from the keys :func:`dm_ssl.config.validate` accepts.
"""

from __future__ import annotations

import json
from typing import Any

MARKER = "<!-- config-reference -->"
#: the algorithms the reference covers: the hosts, their DM variants, Self-Tuning, supervised
ALGORITHMS = ("fixmatch", "fixmatch_dm", "flexmatch", "flexmatch_dm", "freematch",
              "freematch_dm", "softmatch", "softmatch_dm", "selftuning", "selftuning_dm",
              "supervised_mixup", "fullysupervised")
GROUP_ORDER = ("run", "inputs and nets", "semilearn (USB)", "algorithm",
               "fine-grained transfer (spec §6.2)", "supervised recipes (spec §6.3, §7)",
               "evaluation and records", "training health")


def _cell(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else (f'"{value}"' if value == ""
                                                                 else value)
    return text.replace("|", "\\|")


def render() -> str:
    """The reference as markdown tables, one per group."""
    import warnings

    from dm_ssl.config import describe_keys

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = describe_keys(ALGORITHMS)
    groups: dict = {}
    for row in rows:
        groups.setdefault(row.group, []).append(row)
    out = [f"{len(rows)} keys for {', '.join(ALGORITHMS)}. *Allowed* is what `validate` "
           "accepts; a key outside its range or of another type stops the run with one line "
           "naming it. *On resume*: a change of an *identity* key is refused, a *schedule* "
           "key extends (or shortens) the run from its checkpoint, an *operational* key may "
           "change (run.json records it).\n"]
    for group in sorted(groups, key=lambda g: GROUP_ORDER.index(g) if g in GROUP_ORDER else 99):
        out += [f"## {group[0].upper()}{group[1:]}\n",
                "| key | default | allowed | what it changes | algorithms | on resume |",
                "|---|---|---|---|---|---|"]
        for r in sorted(groups[group], key=lambda r: r.name):
            algs = ", ".join(r.algorithms) if r.algorithms else "all"
            out.append(f"| `{r.name}` | `{_cell(r.default)}` | {r.allowed} | "
                       f"{r.help.replace('|', '/') or '—'} | {algs} | {r.resume} |")
        out.append("")
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if page.file.src_uri == "config.md" and MARKER in markdown:
        return markdown.replace(MARKER, render())
    return markdown
