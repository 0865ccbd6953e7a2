"""The settings reference (docs/settings.md), the notebook form lines and CLI help, generated from the field
table. Run ``python -m deforum.settings.docs`` to print docs/settings.md (``--write`` rewrites the file).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from deforum.settings.fields import DEFAULT_ANIMATION_PROMPTS, DEFAULT_PROMPTS, GROUP_TITLES, GROUPS, Field
from deforum.settings.resolve import describe

# -------------------------------------------------------------------------------------- form and docs


def form_line(f: Field) -> str:
    """The v0.6-style notebook line for a field, e.g. ``W = 512 #@param``."""
    line = f"{f.name} = {f.fresh_default()!r}"
    if f.name == "grad_inject_timing":
        line = f"{f.name} = list(range(1,10))"
    if f.widget is None:
        return line
    if f.widget == "raw":
        return line + " #@param"
    if f.widget == "dropdown":
        suffix = " {type:'string'}" if f.group == "anim_args" else ""
        return line + " #@param " + json.dumps(list(f.choices)) + suffix
    return line + ' #@param {type:"' + f.widget + '"}'


def cli_help(f: Field) -> str:
    """One help line for a command-line option: the help text, what is allowed and the default."""
    return f"{f.help} Allowed: {describe(f)}{' (or any other value)' if f.open_choices else ''}. " \
           f"Default: {json.dumps(f.fresh_default())}."


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_markdown() -> str:
    """The text of docs/settings.md: one table per group, generated from the field tables."""
    lines = [
        "# Settings reference",
        "",
        "Generated from `deforum/settings/fields.py` by `python -m deforum.settings.docs --write`; do not edit",
        "by hand.",
        "",
        "Names, defaults and choices are those of Deforum Stable Diffusion v0.6. Choice values are",
        "exact: v0.6 silently fell back on an unknown value (e.g. `'Iter'`, an unknown colour mode);",
        "here that is an error naming the allowed values. **new** marks a field this project adds; its",
        "default keeps the v0.6 behaviour. *hidden* fields are not in the notebook form but are saved in",
        "settings files. `outdir` and `timestring` are computed when a run starts (`outdir` from a",
        "settings file is not used).",
        "",
    ]
    for group, fields in GROUPS.items():
        lines += [f"## {GROUP_TITLES[group]}", "", "| name | type | default | allowed | form | help |",
                  "|---|---|---|---|---|---|"]
        for f in fields:
            allowed = describe(f)
            if f.open_choices:
                allowed += " (suggested: " + ", ".join(repr(c) for c in f.choices) + ")"
            form = f.widget or "*hidden*"
            name = f"`{f.name}`" + (" **new**" if f.new else "")
            lines.append("| " + " | ".join(_cell(c) for c in (
                name, f.type, f"`{json.dumps(f.fresh_default())}`", allowed, form, f.help)) + " |")
        lines.append("")
    lines += ["## Prompts", "",
              "`prompts` (None mode, a list) default: " + _cell(json.dumps(DEFAULT_PROMPTS)), "",
              "`animation_prompts` (frame -> prompt) default: "
              + _cell(json.dumps({str(k): v for k, v in DEFAULT_ANIMATION_PROMPTS.items()})), ""]
    return "\n".join(lines)


def _main(argv: Iterable[str] | None = None) -> int:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    text = settings_markdown()
    if "--write" in argv:
        target = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
